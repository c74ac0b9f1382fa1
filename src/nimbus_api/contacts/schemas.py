"""Contact input and output models.

Everything a contact holds can reach a template, and a template's output can reach a header (the
subject), so CR, LF and NUL are refused in every value, custom fields included. Custom field names are
``^[a-z][a-z0-9_]{0,63}$`` (what ``contact.fields.<name>`` can name), at most 50, values at most 1,000
characters. Empty strings in the name fields count as "not given".
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, Field, field_validator

from nimbus_api.kit.schemas import ANY_LINE_PATTERN, PatchModel, StrictModel, as_sent, names_by_pattern, not_null
from nimbus_api.kit.validators import EmailAddress
from nimbus_api.suppressions.schemas import SuppressionReason

MAX_FIELDS = 50
MAX_IMPORT_ROWS = 10_000
FIELD_KEY_PATTERN = r"^[a-z][a-z0-9_]{0,63}$"
NOT_AN_OBJECT = "__not_an_object__"


def _blank_is_none(value: Any) -> Any:
    if isinstance(value, str) and not value.strip():
        return None
    return value


FieldKey = Annotated[str, Field(pattern=FIELD_KEY_PATTERN)]
FieldValue = Annotated[str, Field(max_length=1000, pattern=ANY_LINE_PATTERN), as_sent(1000)]
PersonText = Annotated[
    Annotated[str, Field(max_length=200, pattern=ANY_LINE_PATTERN), as_sent(200)] | None,
    BeforeValidator(_blank_is_none),
    Field(description="Empty or blank: not given."),
]


class ContactCreate(StrictModel):
    email: EmailAddress
    first_name: PersonText = None
    last_name: PersonText = None
    company: PersonText = None
    fields: Annotated[dict[FieldKey, FieldValue], Field(max_length=MAX_FIELDS)] = Field(
        default_factory=dict,
        json_schema_extra=names_by_pattern,
        description='Custom fields, e.g. `{"city": "Berlin"}`: `contact.fields.city`.',
    )


class ContactUpdate(PatchModel):
    """Partial update. ``fields`` is merged into the stored ones; a field set to null is removed."""

    email: EmailAddress | None = not_null()
    first_name: PersonText = None
    last_name: PersonText = None
    company: PersonText = None
    fields: (
        Annotated[dict[FieldKey, FieldValue | None], Field(max_length=MAX_FIELDS, json_schema_extra=names_by_pattern)]
        | None
    ) = Field(default=None, description="Merged into the stored fields; a field set to null is removed.")


class ContactRead(BaseModel):
    id: uuid.UUID
    email: str
    first_name: str | None
    last_name: str | None
    company: str | None
    fields: dict[str, str]
    suppressed: bool = Field(description="The address is on the workspace's suppression list.")
    created_at: datetime
    updated_at: datetime


class ContactPage(BaseModel):
    data: list[ContactRead]
    next_cursor: str | None


class ContactImport(StrictModel):
    contacts: Annotated[list[Any], Field(min_length=1, max_length=MAX_IMPORT_ROWS)] = Field(
        description="Up to 10,000 contacts, each as in `ContactCreate`. Rows are validated one by one: a bad "
        "row (one that is not a `ContactCreate`, or not an object) is reported in `rejected` and the others "
        "are imported, so any JSON value is accepted as a row."
    )

    @field_validator("contacts", mode="before")
    @classmethod
    def _rows_are_any(cls, value: Any) -> Any:
        # a row that is not an object is reported per row, not a 422 for the whole import
        if isinstance(value, list):
            return [row if isinstance(row, dict) else {NOT_AN_OBJECT: row} for row in value]
        return value


class ImportRejection(BaseModel):
    row: int = Field(description="JSON: index in `contacts` (from 0). CSV: line in the file (the header is 1).")
    email: str | None = Field(description="The address as given, if any.")
    field: str | None = Field(description="The offending field, e.g. `first_name`, `fields.city`.")
    reason: str


class ImportSuppressed(BaseModel):
    row: int
    email: str
    reason: SuppressionReason = Field(description="Why the address is suppressed.")


class ImportReport(BaseModel):
    created: int
    updated: int = Field(description="Existing contacts that got new values (given values win, fields merge).")
    unchanged: int
    duplicates: int = Field(description="Rows merged into an earlier row of this import with the same address.")
    rejected: list[ImportRejection]
    suppressed: list[ImportSuppressed] = Field(
        description="Imported, but on the suppression list: campaigns will not send to them."
    )
