"""``nimbus accounts import`` / ``export``: the import of the API from a terminal, and the fleet as CSV.

``import`` writes the import as the API does (passwords sealed at once), then runs its runner in this
process (the same runner, semaphores and leases as the workers': a worker that resumes it meanwhile is
fine, the two never run it at once), shows a progress bar while rows are verified, and prints a summary
table of the rows that did not connect. Interrupted (Ctrl-C), the import stays in the database and a
worker finishes it. With ``--no-wait`` it only writes the import and leaves it to the workers.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import uuid
from collections.abc import Callable
from pathlib import Path

from redis.asyncio import Redis
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nimbus_api.account_imports import columns, export, service
from nimbus_api.account_imports.runner import ImportRunner, RunnerConfig, import_verifier
from nimbus_api.account_imports.schemas import ImportCounts
from nimbus_api.account_imports.tasks import enqueue_run
from nimbus_api.config import Settings
from nimbus_api.credentials.vault import Vault
from nimbus_api.models import AccountImport, AccountImportRow
from nimbus_api.validation.service import build_verifier
from nimbus_api.workspaces import service as workspaces

Progress = Callable[[ImportCounts, int], None]


def parse_file(path: Path, settings: Settings) -> columns.ParsedFile:
    data = path.read_bytes()
    if len(data) > settings.account_import_max_bytes:
        raise ValueError(f"{path} is larger than {settings.account_import_max_bytes} bytes")
    if path.suffix.lower() == ".json":
        return columns.parse_json(columns.load_json(data), max_rows=settings.account_import_max_rows)
    return columns.parse_csv(data, max_rows=settings.account_import_max_rows)


async def create_import(
    sm: async_sessionmaker[AsyncSession], vault: Vault, settings: Settings, path: Path, workspace: str
) -> uuid.UUID:
    parsed = parse_file(path, settings)
    async with sm() as session, session.begin():
        ws = await workspaces.get_workspace_by_name(session, workspace)
        record = await service.create(
            session,
            vault,
            ws.id,
            parsed,
            source="json" if path.suffix.lower() == ".json" else "csv",
            filename=path.name[:255],
            created_by="cli",
        )
    return record.id


async def _counts(sm: async_sessionmaker[AsyncSession], import_id: uuid.UUID) -> tuple[ImportCounts, str]:
    async with sm() as session:
        status = await session.scalar(select(AccountImport.status).where(AccountImport.id == import_id))
        return (await service.counts(session, [import_id]))[import_id], status or "completed"


async def run_here(
    sm: async_sessionmaker[AsyncSession],
    vault: Vault,
    settings: Settings,
    redis: Redis,
    import_id: uuid.UUID,
    progress: Progress,
    *,
    every: float = 0.5,
) -> ImportCounts:
    """Run the import's runner here while ``progress(counts, total)`` is called; wait for a runner that
    holds it elsewhere. Returns the final counts."""
    runner = ImportRunner(
        import_id,
        sessionmaker=sm,
        vault=vault,
        verifier=import_verifier(build_verifier(settings, redis), settings),
        redis=redis,
        config=RunnerConfig.from_settings(settings),
    )
    task = asyncio.create_task(runner.run())
    try:
        while True:
            counts, status = await _counts(sm, import_id)
            progress(counts, sum(counts.model_dump().values()))
            if status == "completed":
                break
            if task.done():
                task.result()  # a runner that failed raises here; one that finished waits for a row's lease
            await asyncio.sleep(every)
    finally:
        if not task.done():
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    return counts


async def summary(sm: async_sessionmaker[AsyncSession], import_id: uuid.UUID) -> list[str]:
    """A table: the counts, then every row that did not connect (row, address, state, code, hint)."""
    async with sm() as session:
        counts = (await service.counts(session, [import_id]))[import_id]
        rows = list(
            await session.scalars(
                select(AccountImportRow)
                .where(AccountImportRow.import_id == import_id, AccountImportRow.state != "connected")
                .order_by(AccountImportRow.row_number)
            )
        )
    lines = [f"import {import_id}: " + ", ".join(f"{k} {v}" for k, v in counts.model_dump().items() if v)]
    if rows:
        table = [("ROW", "EMAIL", "STATE", "CODE", "WHAT TO DO")]
        for row in rows:
            why = row.hint or row.detail or ""
            if row.field:
                why = f"{row.field}: {why}"
            table.append((str(row.row_number), row.email or "", row.state, row.code or "", why[:100]))
        widths = [max(len(r[i]) for r in table) for i in range(4)]
        for r in table:
            lines.append("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(r[:4])) + "  " + r[4])
    return lines


async def import_main(
    settings: Settings, sm: async_sessionmaker[AsyncSession], vault: Vault, path: Path, workspace: str, wait: bool
) -> int:
    """Returns the exit status: 0 when every row connected, 1 when some did not."""
    from tqdm import tqdm

    import_id = await create_import(sm, vault, settings, path, workspace)
    assert settings.redis_url
    redis = Redis.from_url(settings.redis_url)
    try:
        if not wait:
            await enqueue_run(redis, import_id)
            print(f"import {import_id} written; the workers verify it (nimbus accounts import shows nothing more)")
            return 0
        with tqdm(desc=f"verifying {path.name}", unit="mailbox", file=sys.stderr) as bar:

            def progress(counts: ImportCounts, total: int) -> None:
                bar.total = total
                bar.n = counts.connected + counts.failed + counts.duplicate
                bar.set_postfix(connected=counts.connected, failed=counts.failed, duplicate=counts.duplicate)
                bar.refresh()

            counts = await run_here(sm, vault, settings, redis, import_id, progress)
    finally:
        await redis.aclose()
    print("\n".join(await summary(sm, import_id)))
    return 0 if counts.failed == 0 and counts.duplicate == 0 else 1


async def export_main(sm: async_sessionmaker[AsyncSession], workspace: str) -> tuple[str, int]:
    """(the CSV, how many accounts) of the workspace named ``workspace``."""
    async with sm() as session:
        ws = await workspaces.get_workspace_by_name(session, workspace)
        return await export.export_csv(session, ws.id)
