"""Account imports: record an upload, and read its progress. Flushes, never commits.

``create`` takes the parsed file (``columns``) and writes the import with one row per mailbox, in one
transaction, before anything is verified:

* an invalid row is ``failed`` at once (``account_import.invalid_row``, the column and the reason);
* an address already connected in the workspace, or seen earlier in the file, is ``duplicate``;
* every other row is ``pending``: its settings without secrets in ``settings``, its passwords sealed
  through the Vault under the workspace's data key. The plain passwords live only in this request.

The caller commits, then enqueues the runner with the import id only (``runner``).
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from nimbus_api.account_imports.columns import ParsedFile
from nimbus_api.account_imports.errors import AccountImportNotFound
from nimbus_api.account_imports.schemas import (
    ROW_STATES,
    AccountImportDetail,
    AccountImportRead,
    ImportCounts,
    ImportRowRead,
)
from nimbus_api.credentials.vault import Vault
from nimbus_api.kit.crypto import Secret
from nimbus_api.kit.db import utcnow
from nimbus_api.kit.ids import new_id
from nimbus_api.kit.pagination import decode_cursor, page_of, paginate
from nimbus_api.models import AccountImport, AccountImportRow, EmailAccount

INVALID_ROW = "account_import.invalid_row"


async def create(
    session: AsyncSession,
    vault: Vault,
    workspace_id: uuid.UUID,
    parsed: ParsedFile,
    *,
    source: str,
    filename: str | None,
    created_by: str,
) -> AccountImport:
    record = AccountImport(
        id=new_id(),
        workspace_id=workspace_id,
        status="running",
        source=source,
        filename=filename,
        total_rows=len(parsed.rows),
        created_by=created_by,
    )
    session.add(record)
    wanted = {r.payload.email.lower() for r in parsed.rows if r.payload is not None}
    existing: set[str] = set()
    if wanted:
        found = await session.scalars(
            select(func.lower(EmailAccount.email)).where(
                EmailAccount.workspace_id == workspace_id, func.lower(EmailAccount.email).in_(wanted)
            )
        )
        existing = set(found)
    seen: dict[str, int] = {}
    to_seal: list[Secret | None] = []
    pending: list[AccountImportRow] = []
    rows: list[AccountImportRow] = []
    for parsed_row in parsed.rows:
        row = AccountImportRow(
            id=new_id(),
            import_id=record.id,
            workspace_id=workspace_id,
            row_number=parsed_row.number,
            email=parsed_row.email,
            attempts=0,
        )
        rows.append(row)
        payload = parsed_row.payload
        if payload is None:
            error = parsed_row.error
            row.state = "failed"
            row.code = INVALID_ROW
            row.field = error.field if error else None
            row.detail = error.message if error else "invalid row"
            continue
        key = payload.email.lower()
        if key in existing:
            row.state, row.detail = "duplicate", "this address is already connected in this workspace"
            continue
        if key in seen:
            row.state, row.detail = "duplicate", f"the same address as row {seen[key]}"
            continue
        seen[key] = parsed_row.number
        row.state = "pending"
        row.smtp_host = payload.smtp.host
        row.imap_host = payload.imap.host if payload.imap else None
        # the settings without their secrets (``SecretStr`` dumps masked; the passwords are left out)
        row.settings = payload.model_dump(
            mode="json", exclude={"smtp": {"password"}, "imap": {"password"}}, exclude_unset=False
        )
        smtp_pw = payload.smtp.password
        to_seal.append(Secret(smtp_pw.get_secret_value()) if smtp_pw is not None else None)
        to_seal.append(Secret(payload.imap.password.get_secret_value()) if payload.imap else None)
        pending.append(row)
    if pending:
        key_id, sealed = await vault.seal_many(session, workspace_id, to_seal)
        for i, row in enumerate(pending):
            row.data_key_id = key_id
            row.smtp_ciphertext, row.imap_ciphertext = sealed[2 * i], sealed[2 * i + 1]
    if not pending:
        record.status, record.finished_at = "completed", utcnow()
    session.add_all(rows)
    await session.flush()
    return record


async def get(session: AsyncSession, workspace_id: uuid.UUID, import_id: uuid.UUID) -> AccountImport:
    record = await session.scalar(
        select(AccountImport).where(AccountImport.id == import_id, AccountImport.workspace_id == workspace_id)
    )
    if record is None:
        raise AccountImportNotFound()
    return record


async def counts(session: AsyncSession, import_ids: list[uuid.UUID]) -> dict[uuid.UUID, ImportCounts]:
    result: dict[uuid.UUID, dict[str, int]] = {i: dict.fromkeys(ROW_STATES, 0) for i in import_ids}
    if import_ids:
        rows = await session.execute(
            select(AccountImportRow.import_id, AccountImportRow.state, func.count())
            .where(AccountImportRow.import_id.in_(import_ids))
            .group_by(AccountImportRow.import_id, AccountImportRow.state)
        )
        for import_id, state, count in rows:
            result[import_id][state] = count
    return {i: ImportCounts(**c) for i, c in result.items()}


def to_read(record: AccountImport, count: ImportCounts, ignored: list[str] | None = None) -> AccountImportRead:
    return AccountImportRead(
        id=record.id,
        status=record.status,
        source=record.source,
        filename=record.filename,
        total=record.total_rows,
        counts=count,
        ignored_columns=ignored or [],
        created_at=record.created_at,
        updated_at=record.updated_at,
        finished_at=record.finished_at,
    )


def row_read(row: AccountImportRow) -> ImportRowRead:
    return ImportRowRead(
        id=row.id,
        row=row.row_number,
        email=row.email,
        state=row.state,
        account_id=row.account_id,
        code=row.code,
        field=row.field,
        detail=row.detail,
        hint=row.hint,
        attempts=row.attempts,
        updated_at=row.updated_at,
    )


async def detail(
    session: AsyncSession,
    workspace_id: uuid.UUID,
    import_id: uuid.UUID,
    *,
    cursor: str | None,
    limit: int,
    state: str | None = None,
) -> AccountImportDetail:
    """The import with one page of its rows in file order (a cursor is the last row's id)."""
    record = await get(session, workspace_id, import_id)
    stmt = select(AccountImportRow).where(AccountImportRow.import_id == record.id)
    if state is not None:
        stmt = stmt.where(AccountImportRow.state == state)
    if cursor:
        after = await session.scalar(
            select(AccountImportRow.row_number).where(
                AccountImportRow.id == decode_cursor(cursor), AccountImportRow.import_id == record.id
            )
        )
        stmt = stmt.where(AccountImportRow.row_number > (after if after is not None else 2**31 - 1))
    rows = list(await session.scalars(stmt.order_by(AccountImportRow.row_number).limit(limit + 1)))
    page, next_cursor = page_of(rows, limit)
    count = (await counts(session, [record.id]))[record.id]
    base: dict[str, Any] = to_read(record, count).model_dump()
    return AccountImportDetail(**base, rows=[row_read(r) for r in page], next_cursor=next_cursor)


async def list_page(
    session: AsyncSession, workspace_id: uuid.UUID, cursor: str | None, limit: int
) -> tuple[list[AccountImportRead], str | None]:
    stmt = select(AccountImport).where(AccountImport.workspace_id == workspace_id)
    records, next_cursor = page_of(list(await session.scalars(paginate(stmt, AccountImport.id, cursor, limit))), limit)
    count = await counts(session, [r.id for r in records])
    return [to_read(r, count[r.id]) for r in records], next_cursor
