"""Reading an import file: CSV or JSON in, one create payload (or one row error) per mailbox out.

Columns are matched by name, case and punctuation ignored (``SMTP Host`` = ``smtp_host``), with the aliases
the usual tools export (Instantly, Smartlead, lemlist, spreadsheets): see ``ALIASES`` and the README table.
The canonical names are the ones ``nimbus accounts export`` writes, so an export reads back as it was.

Rules per row, in order, each failure reported on that row only (``RowError``):

* ``email`` is required; ``from_name`` is ``from_name`` or ``first_name`` + ``last_name``;
* ``smtp_host``/``smtp_port`` are required; ``smtp_mode`` defaults from the port (465: ``ssl``, else
  ``starttls``); ``smtp_username`` defaults to the address;
* IMAP is optional: given a host, ``imap_port`` defaults to 993, ``imap_mode`` from the port (993: ``ssl``,
  else ``starttls``), ``imap_username`` to the SMTP user, ``imap_password`` to the SMTP password;
* ``daily_limit`` is the ceiling of sends a day; ``warmup_enabled`` takes true/false, yes/no, 1/0, on/off;
* then the whole row is validated as ``POST /v1/email-accounts`` validates a body.

A file is refused as a whole (422 naming ``file``) only when it cannot be read: not UTF-8/UTF-16 text, no
header, no email column, repeated columns, more rows than the limit. Cells that a spreadsheet would run
as a formula (``=``, ``+``, ``-``, ``@`` first) are data here; the export prefixes them with ``'`` and the
import takes that prefix off again.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from nimbus_api.accounts.schemas import EmailAccountCreate
from nimbus_api.kit.problems import FieldError, MalformedRequest, ValidationProblem

# canonical column -> its aliases (normalized: lower case, runs of other characters as one ``_``)
ALIASES: dict[str, tuple[str, ...]] = {
    "email": ("email", "email_address", "e_mail", "from_email", "sender_email", "account", "mailbox"),
    "from_name": ("from_name", "sender_name", "display_name", "name"),
    "first_name": ("first_name", "firstname"),
    "last_name": ("last_name", "lastname", "surname"),
    "smtp_host": ("smtp_host", "smtp_server", "smtp_hostname", "smtp_address"),
    "smtp_port": ("smtp_port",),
    "smtp_mode": ("smtp_mode", "smtp_security", "smtp_encryption"),
    "smtp_username": ("smtp_username", "smtp_user", "smtp_login", "smtp_user_name"),
    "smtp_password": ("smtp_password", "smtp_pass", "smtp_pwd", "password"),
    "imap_host": ("imap_host", "imap_server", "imap_hostname", "imap_address"),
    "imap_port": ("imap_port",),
    "imap_mode": ("imap_mode", "imap_security", "imap_encryption"),
    "imap_username": ("imap_username", "imap_user", "imap_login", "imap_user_name"),
    "imap_password": ("imap_password", "imap_pass", "imap_pwd"),
    "imap_folder": ("imap_folder",),
    "daily_limit": (
        "daily_limit",
        "max_email_per_day",
        "daily_send_limit",
        "emails_per_day",
        "message_per_day",
        "sending_limit",
    ),
    "warmup_enabled": ("warmup_enabled", "warmup", "warmup_enable", "warm_up", "warmup_status"),
    "dkim_selector": ("dkim_selector",),
    "label": ("label", "tag"),
    "provider": ("provider",),
}
_BY_ALIAS = {alias: name for name, aliases in ALIASES.items() for alias in aliases}
# the columns ``nimbus accounts export`` writes, in this order
EXPORT_COLUMNS = (
    "email",
    "from_name",
    "smtp_host",
    "smtp_port",
    "smtp_mode",
    "smtp_username",
    "smtp_password",
    "imap_host",
    "imap_port",
    "imap_mode",
    "imap_username",
    "imap_password",
    "imap_folder",
    "daily_limit",
    "warmup_enabled",
    "dkim_selector",
    "label",
    "provider",
)
_NOT_WORD = re.compile(r"[^a-z0-9]+")
_TRUE = {"true", "yes", "y", "1", "on", "enabled", "active"}
_FALSE = {"false", "no", "n", "0", "off", "disabled", "inactive", ""}
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_MAX_CELL = 4096


@dataclass(frozen=True)
class RowError:
    field: str | None
    message: str


@dataclass(frozen=True)
class ParsedRow:
    """One mailbox of the file: its line (header = 1) or list position (first = 1), the address as given
    (for the report), and either a valid create payload or the reason it is not one."""

    number: int
    email: str | None
    payload: EmailAccountCreate | None
    error: RowError | None


@dataclass(frozen=True)
class ParsedFile:
    rows: list[ParsedRow]
    ignored_columns: list[str]


def column_name(header: str) -> str:
    """``"SMTP Host"`` -> ``smtp_host``; unknown names come back normalized and are ignored."""
    name = _NOT_WORD.sub("_", header.strip().lower()).strip("_")
    return _BY_ALIAS.get(name, name)


def _file_problem(message: str) -> ValidationProblem:
    return ValidationProblem([FieldError(field="file", message=message, type="value_error")])


def unformula(value: str) -> str:
    """Undo the export's guard: ``'=x`` -> ``=x`` (a leading apostrophe before a formula character)."""
    if len(value) > 1 and value[0] == "'" and value[1] in FORMULA_START:
        return value[1:]
    return value


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)
    if isinstance(value, str):
        if "\x00" in value:
            raise ValueError("must not contain NUL characters")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise ValueError("is not valid Unicode text (a lone surrogate)") from exc
        value = unformula(value.strip())
        return value or None
    raise ValueError("must be a string, a number or a boolean")


def _port(value: str | None, name: str) -> int | None:
    if value is None:
        return None
    if not value.isdigit():
        raise _RowProblem(name, "must be a port number")
    return int(value)


class _RowProblem(Exception):
    def __init__(self, field: str | None, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


def _mode(value: str | None, port: int | None, implicit: int, name: str) -> str:
    if value is None:
        return "ssl" if port == implicit else "starttls"
    mode = value.lower()
    mode = {"tls": "ssl", "ssl/tls": "ssl", "starttls": "starttls", "plain": "none", "": "none"}.get(mode, mode)
    if mode not in ("ssl", "starttls", "none"):
        raise _RowProblem(name, "must be ssl, starttls or none")
    return mode


def _flag(value: str | None) -> bool:
    if value is None:
        return False
    flag = value.lower()
    if flag in _TRUE:
        return True
    if flag in _FALSE:
        return False
    raise _RowProblem("warmup_enabled", "must be true or false (yes/no, 1/0, on/off)")


def build_payload(cells: Mapping[str, Any]) -> EmailAccountCreate:
    """One row's cells (canonical names) -> a create payload; ``_RowProblem`` / ``ValidationError`` else."""
    values: dict[str, str | None] = {}
    for name, raw in cells.items():
        try:
            values[name] = _text(raw)
        except ValueError as exc:
            raise _RowProblem(name, str(exc)) from exc
        text = values[name]
        if text is not None and len(text) > _MAX_CELL:
            raise _RowProblem(name, f"longer than {_MAX_CELL} characters")
    email = values.get("email")
    if email is None:
        raise _RowProblem("email", "required")
    from_name = values.get("from_name")
    if from_name is None:
        parts = [values.get("first_name"), values.get("last_name")]
        from_name = " ".join(p for p in parts if p) or None
    smtp_port = _port(values.get("smtp_port"), "smtp_port")
    if values.get("smtp_host") is None:
        raise _RowProblem("smtp_host", "required")
    if smtp_port is None:
        raise _RowProblem("smtp_port", "required")
    smtp_user = values.get("smtp_username") or email
    smtp: dict[str, Any] = {
        "host": values["smtp_host"],
        "port": smtp_port,
        "mode": _mode(values.get("smtp_mode"), smtp_port, 465, "smtp_mode"),
        "username": smtp_user,
        "password": values.get("smtp_password"),
    }
    body: dict[str, Any] = {"email": email, "smtp": smtp, "from_name": from_name}
    if values.get("imap_host") is not None:
        imap_port = _port(values.get("imap_port"), "imap_port") or 993
        body["imap"] = {
            "host": values["imap_host"],
            "port": imap_port,
            "mode": _mode(values.get("imap_mode"), imap_port, 993, "imap_mode"),
            "username": values.get("imap_username") or smtp_user,
            "password": values.get("imap_password") or values.get("smtp_password"),
            "folder": values.get("imap_folder") or "INBOX",
        }
    limit = values.get("daily_limit")
    if limit is not None:
        if not limit.isdigit():
            raise _RowProblem("daily_limit", "must be a whole number")
        body["daily_send_limit"] = int(limit)
    body["warmup_enabled"] = _flag(values.get("warmup_enabled"))
    for name in ("dkim_selector", "label", "provider"):
        if values.get(name) is not None:
            body[name] = values[name]
    return EmailAccountCreate.model_validate(body)


def _error_field(loc: tuple[Any, ...]) -> str:
    dotted = ".".join(str(part) for part in loc)
    if dotted.startswith(("smtp.", "imap.")) and len(loc) >= 2:
        return f"{loc[0]}_{loc[1]}"
    return {"daily_send_limit": "daily_limit"}.get(dotted, dotted or "row")


def parse_row(number: int, cells: Mapping[str, Any]) -> ParsedRow:
    raw_email = cells.get("email")
    email = raw_email.strip()[:320] if isinstance(raw_email, str) and raw_email.strip() else None
    try:
        payload = build_payload(cells)
    except _RowProblem as exc:
        return ParsedRow(number, email, None, RowError(exc.field, exc.message))
    except ValidationError as exc:
        first = exc.errors()[0]
        message = str(first.get("msg", "invalid")).removeprefix("Value error, ")
        return ParsedRow(number, email, None, RowError(_error_field(tuple(first.get("loc", ()))), message))
    return ParsedRow(number, payload.email, payload, None)


# --- CSV -------------------------------------------------------------------------------------------


def decode(data: bytes) -> str:
    """UTF-8 (a BOM is fine) or UTF-16 with its BOM (what spreadsheets write as "Unicode text")."""
    try:
        if data.startswith((b"\xff\xfe", b"\xfe\xff")):
            return data.decode("utf-16")
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise _file_problem("the file is not UTF-8 (or UTF-16) text: save it as CSV UTF-8") from exc


def _delimiter(header_line: str) -> str:
    counts = {d: header_line.count(d) for d in (",", ";", "\t")}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] else ","


def parse_csv(data: bytes, *, max_rows: int) -> ParsedFile:
    content = decode(data)
    if "\x00" in content:
        raise _file_problem("the file contains NUL characters: it is not a CSV text file")
    first_line = content.split("\n", 1)[0]
    reader = csv.reader(io.StringIO(content, newline=""), delimiter=_delimiter(first_line), strict=True)
    try:
        header = next(reader, None)
        if not header or not any(cell.strip() for cell in header):
            raise _file_problem("the file has no header row")
        columns = [column_name(cell) for cell in header]
        known = [c for c in columns if c in ALIASES]
        repeated = sorted({c for c in known if known.count(c) > 1})
        if repeated:
            raise _file_problem(f"columns repeat: {', '.join(repeated)}")
        if "email" not in columns:
            raise _file_problem("the header has no email column")
        ignored = [header[i].strip()[:100] for i, c in enumerate(columns) if c not in ALIASES and c]
        rows: list[ParsedRow] = []
        for number, cells in enumerate(reader, start=2):
            if not any(cell.strip() for cell in cells):
                continue
            if len(rows) >= max_rows:
                raise _file_problem(f"more than {max_rows} mailboxes: split the file")
            if len(cells) > len(columns):
                email = cells[columns.index("email")].strip()[:320] or None
                rows.append(ParsedRow(number, email, None, RowError(None, "the row has more cells than the header")))
                continue
            values = {name: cell for name, cell in zip(columns, cells, strict=False) if name in ALIASES}
            rows.append(parse_row(number, values))
    except csv.Error as exc:
        raise _file_problem(f"line {reader.line_num}: not valid CSV ({exc})") from exc
    return ParsedFile(rows=rows, ignored_columns=ignored)


# --- JSON ------------------------------------------------------------------------------------------


def load_json(data: bytes) -> Any:
    """The body as JSON (400 ``request.malformed`` when it is not), as the JSON operations answer."""
    if not data.strip():
        raise MalformedRequest("this operation takes a JSON object as its body; none (or `null`) was sent")
    try:
        document = json.loads(data)
    except UnicodeDecodeError as exc:
        raise MalformedRequest(f"the body is not valid UTF-8 (invalid byte at offset {exc.start})") from exc
    except RecursionError as exc:
        raise MalformedRequest("the body is nested too deeply to be parsed") from exc
    except ValueError as exc:
        raise MalformedRequest("the body is not valid JSON") from exc
    if document is None:
        raise MalformedRequest("this operation takes a JSON object as its body; none (or `null`) was sent")
    if not isinstance(document, dict):
        raise MalformedRequest("the body must be a JSON object")
    return document


def parse_json(document: dict[str, Any], *, max_rows: int) -> ParsedFile:
    """``{"accounts": [{column: value, ...}, ...]}``; any other shape is a 422 naming what is wrong."""
    extra = sorted(k for k in document if k != "accounts")
    if extra:
        errors = [
            FieldError(field=name[:100], message="Extra inputs are not permitted", type="extra_forbidden")
            for name in extra
        ]
        if "accounts" not in document:
            errors.append(FieldError(field="accounts", message="Field required", type="missing"))
        raise ValidationProblem(errors)
    accounts = document.get("accounts")
    if not isinstance(accounts, list):
        kind = "missing" if accounts is None else "list_type"
        raise ValidationProblem([FieldError(field="accounts", message="must be a list of objects", type=kind)])
    if len(accounts) > max_rows:
        raise ValidationProblem(
            [FieldError(field="accounts", message=f"more than {max_rows} mailboxes: split the upload", type="too_long")]
        )
    rows: list[ParsedRow] = []
    ignored: set[str] = set()
    for number, item in enumerate(accounts, start=1):
        if not isinstance(item, dict):
            rows.append(ParsedRow(number, None, None, RowError(None, "not a JSON object")))
            continue
        values: dict[str, Any] = {}
        for key, value in item.items():
            name = column_name(key)
            if name in ALIASES:
                values[name] = value
            else:
                ignored.add(key[:100])
        rows.append(parse_row(number, values))
    return ParsedFile(rows=rows, ignored_columns=sorted(ignored))
