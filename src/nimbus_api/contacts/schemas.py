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

from pydantic import AfterValidator, BaseModel, BeforeValidator, Field, field_validator

from nimbus_api.kit.validators import EmailAddress, StrictModel

MAX_FIELDS = 50
MAX_IMPORT_ROWS = 10_000
FIELD_KEY_PATTERN = r"^[a-z][a-z0-9_]{0,63}$"
NOT_AN_OBJECT = "__not_an_object__"


def _no_line_breaks(value: str) -> str:
    if any(ch in value for ch in "\r\n\x00"):
        raise ValueError("must not contain CR, LF or NUL characters")
    return value


def _blank_is_none(value: Any) -> Any:
    if isinstance(value, str) and not value.strip():
        return None
    return value


FieldKey = Annotated[str, Field(pattern=FIELD_KEY_PATTERN)]
FieldValue = Annotated[str, Field(max_length=1000), AfterValidator(_no_line_breaks)]
PersonText = Annotated[
    Annotated[str, Field(max_length=200), AfterValidator(_no_line_breaks)] | None, BeforeValidator(_blank_is_none)
]


class ContactCreate(StrictModel):
    email: EmailAddress
    first_name: PersonText = None
    last_name: PersonText = None
    company: PersonText = None
    fields: Annotated[dict[FieldKey, FieldValue], Field(max_length=MAX_FIELDS)] = Field(
        default_factory=dict, description='Custom fields, e.g. `{"city": "Berlin"}`: `contact.fields.city`.'
    )


class ContactUpdate(StrictModel):
    """Partial update. ``fields`` is merged into the stored ones; a field set to null is removed."""

    email: EmailAddress | None = None
    first_name: PersonText = None
    last_name: PersonText = None
    company: PersonText = None
    fields: Annotated[dict[FieldKey, FieldValue | None], Field(max_length=MAX_FIELDS)] | None = None


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
    contacts: Annotated[list[dict[str, Any]], Field(min_length=1, max_length=MAX_IMPORT_ROWS)] = Field(
        description="Up to 10,000 contacts, each as in `ContactCreate`. Rows are validated one by one: a bad "
        "row is reported in `rejected` and the others are imported."
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
    reason: str = Field(description="Why the address is suppressed: `unsubscribed`, `hard_bounce`, ...")


class ImportReport(BaseModel):
    created: int
    updated: int = Field(description="Existing contacts that got new values (given values win, fields merge).")
    unchanged: int
    duplicates: int = Field(description="Rows merged into an earlier row of this import with the same address.")
    rejected: list[ImportRejection]
    suppressed: list[ImportSuppressed] = Field(
        description="Imported, but on the suppression list: campaigns will not send to them."
    )
