"""Bulk import: many contacts in one request, validated row by row, written in one statement.

1. Every row is validated like ``POST /v1/contacts`` (address syntax and normalization, CR/LF refused
   everywhere, custom field names and sizes); a bad row goes to ``rejected`` with its row, the field
   and the reason, and the others go on.
2. Rows with the same address (any case) are merged in order: a later row's given values win, custom
   fields are merged; each merged row counts in ``duplicates``.
3. One ``INSERT ... SELECT FROM unnest(...) ON CONFLICT (workspace_id, lower(email)) DO UPDATE`` writes
   them all: a new address is created; an existing contact takes the values the import gives (blank
   ones keep what is stored) and custom fields are merged into its own; the ``WHERE`` of the update
   skips contacts the import would not change, so they count as ``unchanged``. Rows are sorted by
   address so that two concurrent imports lock contacts in the same order.
4. Suppressed addresses are imported like the others and listed in ``suppressed``.

CSV (``import_csv``): UTF-8 (a BOM is fine), comma-separated, one header row. Columns ``email``,
``first_name``, ``last_name``, ``company`` (also ``e-mail``, ``email address``, ``First Name``,
``surname``, ``organization``...) map to the contact; every other column is a custom field named by its
header, lower-cased with spaces and punctuation turned into ``_`` (``Job Title`` -> ``job_title``). An
empty cell is "not given". Rows are numbered as a spreadsheet shows them: the header is row 1.
"""

from __future__ import annotations

import csv
import io
import json
import re
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import TypeAdapter, ValidationError
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from nimbus_api.contacts.schemas import (
    FIELD_KEY_PATTERN,
    MAX_FIELDS,
    MAX_IMPORT_ROWS,
    NOT_AN_OBJECT,
    ContactCreate,
    ImportRejection,
    ImportReport,
    ImportSuppressed,
)
from nimbus_api.kit.db import utcnow
from nimbus_api.kit.ids import new_id
from nimbus_api.kit.problems import FieldError, ValidationProblem
from nimbus_api.suppressions import service as suppressions

MAX_CSV_BYTES = 20 * 1024 * 1024
_TOO_MANY_CELLS = "__too_many_cells__"
_CONTACT = TypeAdapter(ContactCreate)
_FIELD_KEY = re.compile(FIELD_KEY_PATTERN)
_NOT_WORD = re.compile(r"[^a-z0-9]+")
_COLUMN_ALIASES = {
    "email": "email",
    "e_mail": "email",
    "email_address": "email",
    "e_mail_address": "email",
    "first_name": "first_name",
    "firstname": "first_name",
    "given_name": "first_name",
    "last_name": "last_name",
    "lastname": "last_name",
    "surname": "last_name",
    "family_name": "last_name",
    "company": "company",
    "company_name": "company",
    "organization": "company",
    "organisation": "company",
}

UPSERT = text(
    """
INSERT INTO contacts AS c (id, workspace_id, email, first_name, last_name, company, fields, created_at, updated_at)
SELECT t.id, CAST(:workspace_id AS uuid), t.email, t.first_name, t.last_name, t.company, CAST(t.fields AS jsonb),
       CAST(:now AS timestamptz), CAST(:now AS timestamptz)
FROM unnest(CAST(:ids AS uuid[]), CAST(:emails AS text[]), CAST(:first_names AS text[]),
            CAST(:last_names AS text[]), CAST(:companies AS text[]), CAST(:fields AS text[]))
     AS t(id, email, first_name, last_name, company, fields)
ORDER BY lower(t.email)
ON CONFLICT (workspace_id, lower(email)) DO UPDATE SET
    first_name = COALESCE(EXCLUDED.first_name, c.first_name),
    last_name = COALESCE(EXCLUDED.last_name, c.last_name),
    company = COALESCE(EXCLUDED.company, c.company),
    fields = c.fields || EXCLUDED.fields,
    updated_at = EXCLUDED.updated_at
WHERE (EXCLUDED.first_name IS NOT NULL AND EXCLUDED.first_name IS DISTINCT FROM c.first_name)
   OR (EXCLUDED.last_name IS NOT NULL AND EXCLUDED.last_name IS DISTINCT FROM c.last_name)
   OR (EXCLUDED.company IS NOT NULL AND EXCLUDED.company IS DISTINCT FROM c.company)
   OR NOT (c.fields @> EXCLUDED.fields)
RETURNING (c.xmax = 0) AS created, (SELECT count(*) FROM jsonb_object_keys(c.fields)) AS field_count
"""
)


@dataclass
class _Merged:
    row: int
    contact: ContactCreate
    fields: dict[str, str] = field(default_factory=dict)


def _rejection(row: int, raw: Mapping[str, Any], exc: ValidationError) -> ImportRejection:
    error = exc.errors()[0]
    loc = [str(part) for part in error.get("loc", ())]
    email = raw.get("email")
    return ImportRejection(
        row=row,
        email=email[:320] if isinstance(email, str) else None,
        field=".".join(loc) or None,
        reason=str(error.get("msg", "invalid")).removeprefix("Value error, "),
    )


def _validate(rows: Iterable[tuple[int, Mapping[str, Any]]]) -> tuple[list[_Merged], int, list[ImportRejection]]:
    merged: dict[str, _Merged] = {}
    rejected: list[ImportRejection] = []
    duplicates = 0
    for row, raw in rows:
        if NOT_AN_OBJECT in raw:
            rejected.append(ImportRejection(row=row, email=None, field=None, reason="not a JSON object"))
            continue
        if _TOO_MANY_CELLS in raw:
            email = raw.get("email")
            rejected.append(
                ImportRejection(
                    row=row,
                    email=email if isinstance(email, str) else None,
                    field=None,
                    reason="the row has more values than the header has columns",
                )
            )
            continue
        try:
            contact = _CONTACT.validate_python(raw)
        except ValidationError as exc:
            rejected.append(_rejection(row, raw, exc))
            continue
        key = contact.email.lower()
        earlier = merged.get(key)
        if earlier is None:
            merged[key] = _Merged(row=row, contact=contact, fields=dict(contact.fields))
            continue
        duplicates += 1
        given = {name: getattr(contact, name) for name in ("first_name", "last_name", "company")}
        earlier.contact = earlier.contact.model_copy(update={k: v for k, v in given.items() if v is not None})
        combined = {**earlier.fields, **contact.fields}
        if len(combined) > MAX_FIELDS:
            rejected.append(
                ImportRejection(
                    row=row,
                    email=contact.email,
                    field="fields",
                    reason=f"merged with row {earlier.row}, the contact would have more than {MAX_FIELDS} fields",
                )
            )
            duplicates -= 1
            continue
        earlier.fields = combined
    return list(merged.values()), duplicates, rejected


async def import_rows(
    session: AsyncSession, workspace_id: uuid.UUID, rows: Iterable[tuple[int, Mapping[str, Any]]]
) -> ImportReport:
    """Validate, merge and upsert ``(row number, raw contact)`` pairs; the report says what happened."""
    contacts, duplicates, rejected = _validate(rows)
    created = updated = 0
    if contacts:
        result = await session.execute(
            UPSERT,
            {
                "workspace_id": workspace_id,
                "now": utcnow(),
                "ids": [new_id() for _ in contacts],
                "emails": [m.contact.email for m in contacts],
                "first_names": [m.contact.first_name for m in contacts],
                "last_names": [m.contact.last_name for m in contacts],
                "companies": [m.contact.company for m in contacts],
                "fields": [json.dumps(m.fields) for m in contacts],
            },
        )
        written = result.all()
        if any(count > MAX_FIELDS for _, count in written):
            # the stored fields and the imported ones together exceed the limit: refuse the whole import
            raise ValidationProblem(
                [
                    FieldError(
                        field="contacts",
                        message=f"merging would give a contact more than {MAX_FIELDS} custom fields",
                        type="value_error",
                    )
                ]
            )
        created = sum(1 for is_new, _ in written if is_new)
        updated = len(written) - created
    suppressed = await suppressions.reasons_for(session, workspace_id, [m.contact.email for m in contacts])
    return ImportReport(
        created=created,
        updated=updated,
        unchanged=len(contacts) - created - updated,
        duplicates=duplicates,
        rejected=sorted(rejected, key=lambda r: r.row),
        suppressed=[
            ImportSuppressed(row=m.row, email=m.contact.email, reason=suppressed[m.contact.email.lower()])
            for m in contacts
            if m.contact.email.lower() in suppressed
        ],
    )


# --- CSV -----------------------------------------------------------------------------------------------


def _file_problem(message: str) -> ValidationProblem:
    return ValidationProblem([FieldError(field="file", message=message, type="value_error")])


def column_name(header: str) -> str:
    """``"First Name"`` -> ``first_name``; ``"Job Title"`` -> ``job_title`` (a custom field)."""
    name = _NOT_WORD.sub("_", header.strip().lower()).strip("_")
    return _COLUMN_ALIASES.get(name, name)


def parse_csv(data: bytes) -> list[tuple[int, dict[str, Any]]]:
    """Rows of a CSV file as raw contacts; a file that cannot be read as contacts is a 422 (``file``)."""
    if len(data) > MAX_CSV_BYTES:
        raise _file_problem(f"the file is larger than {MAX_CSV_BYTES // (1024 * 1024)} MB")
    try:
        content = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise _file_problem("the file is not UTF-8 text") from exc
    reader = csv.reader(io.StringIO(content, newline=""), strict=True)
    try:
        header = next(reader, None)
        if not header or not any(cell.strip() for cell in header):
            raise _file_problem("the file has no header row")
        columns = [column_name(cell) for cell in header]
        for index, name in enumerate(columns):
            if not name:
                raise _file_problem(f"column {index + 1} has no name")
            if name not in {"email", "first_name", "last_name", "company"} and not _FIELD_KEY.match(name):
                raise _file_problem(
                    f"column {header[index].strip()!r} cannot be a custom field name (letters, digits and _, "
                    "starting with a letter, at most 64)"
                )
        duplicated = sorted({name for name in columns if columns.count(name) > 1})
        if duplicated:
            raise _file_problem(f"columns repeat: {', '.join(duplicated)}")
        if "email" not in columns:
            raise _file_problem("the header has no email column")
        custom = [name for name in columns if name not in _COLUMN_ALIASES.values()]
        if len(custom) > MAX_FIELDS:
            raise _file_problem(f"more than {MAX_FIELDS} custom field columns")
        rows: list[tuple[int, dict[str, Any]]] = []
        for number, cells in enumerate(reader, start=2):
            if not any(cell.strip() for cell in cells):
                continue
            if len(rows) >= MAX_IMPORT_ROWS:
                raise _file_problem(f"more than {MAX_IMPORT_ROWS} rows: split the file")
            if len(cells) > len(columns):
                rows.append((number, {_TOO_MANY_CELLS: True, "email": cells[columns.index("email")]}))
                continue
            raw: dict[str, Any] = {"fields": {}}
            for name, cell in zip(columns, cells, strict=False):
                value = cell.strip()
                if not value:
                    continue
                if name in custom:
                    raw["fields"][name] = value
                else:
                    raw[name] = value
            raw.setdefault("email", "")
            rows.append((number, raw))
    except csv.Error as exc:
        raise _file_problem(f"line {reader.line_num}: not valid CSV ({exc})") from exc
    return rows
