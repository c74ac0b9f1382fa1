"""Account-import output models (the input is a file, read by ``columns``)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field
from typing_extensions import TypeAliasType

ImportRowState = TypeAliasType("ImportRowState", Literal["pending", "verifying", "connected", "failed", "duplicate"])
ImportStatus = TypeAliasType("ImportStatus", Literal["running", "completed"])
ImportSource = TypeAliasType("ImportSource", Literal["csv", "json"])
ROW_STATES: tuple[str, ...] = ("pending", "verifying", "connected", "failed", "duplicate")
FINAL_STATES = frozenset({"connected", "failed", "duplicate"})


class ImportCounts(BaseModel):
    pending: int
    verifying: int
    connected: int
    failed: int
    duplicate: int


class ImportRowRead(BaseModel):
    id: uuid.UUID
    row: int = Field(description="The line of the file (the header is line 1), or the position in `accounts` (from 1).")
    email: str | None = Field(description="The address as given (null when the row has none).")
    state: ImportRowState = Field(
        description="`pending`: waiting for its turn; `verifying`: the checks run; `connected`: the account "
        "exists (`account_id`); `failed`: the row is invalid (`code` `account_import.invalid_row`, `field`) or a "
        "check failed (`code` of the check, e.g. `smtp.auth_failed`, and its `hint`); `duplicate`: the address is "
        "already connected in the workspace or appears earlier in the file."
    )
    account_id: uuid.UUID | None
    code: str | None
    field: str | None = Field(description="The column an invalid row is refused for.")
    detail: str | None
    hint: str | None
    attempts: int = Field(description="How many times the row's verification was started (more than 1 after a resume).")
    updated_at: datetime


class AccountImportRead(BaseModel):
    id: uuid.UUID
    status: ImportStatus = Field(description="`completed` when every row is connected, failed or duplicate.")
    source: ImportSource
    filename: str | None
    total: int
    counts: ImportCounts
    ignored_columns: list[str] = Field(
        default_factory=list, description="Columns of the upload that are not import columns (only in the 202)."
    )
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None


class AccountImportDetail(AccountImportRead):
    rows: list[ImportRowRead] = Field(description="One page of rows in file order (`cursor`, `limit`).")
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page of rows; null at the end.")


class AccountImportPage(BaseModel):
    data: list[AccountImportRead]
    next_cursor: str | None
