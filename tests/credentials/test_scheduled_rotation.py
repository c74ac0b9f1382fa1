"""Scheduled data-key rotation (the worker's hourly ``rotate_data_keys``) and ``nimbus keys status``.

The session database holds every test's workspaces, all with young keys; a test makes its own old by
moving ``created_at`` back, and checks its own workspaces only (a run rotates every due workspace)."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
import structlog
from cryptography.fernet import Fernet
from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from nimbus_api.config import Settings
from nimbus_api.credentials import rotation
from nimbus_api.credentials.schedule import LOCK_NAMESPACE, rotate_due_data_keys
from nimbus_api.credentials.tasks import rotate_data_keys
from nimbus_api.credentials.vault import Vault
from nimbus_api.kit.crypto import generate_master_key, key_id
from nimbus_api.kit.db import make_engine, make_sessionmaker, utcnow
from nimbus_api.kit.locks import session_lock
from nimbus_api.kit.net import build_net_context
from nimbus_api.models import DataKey, Workspace
from nimbus_api.sending.mx import MxChecker
from nimbus_api.smtp.pool import SmtpPool
from nimbus_api.worker.context import WorkerResources
from nimbus_api.worker.settings import worker_kwargs
from tests.conftest import Tenant, TenantFactory
from tests.credentials.test_rotation import (
    Interrupted,
    _assert_all_reveal,
    _credentials,
    _http_accounts,
    _keys,
    _vault,
    interrupt_after_first_batch,
)
from tests.test_cli import run as cli

MAX_AGE = 90


async def make_old(sm: async_sessionmaker[AsyncSession], workspace_id: uuid.UUID, days: int) -> None:
    async with sm() as session, session.begin():
        await session.execute(
            update(DataKey)
            .where(DataKey.workspace_id == workspace_id)
            .values(created_at=DataKey.created_at - timedelta(days=days))
        )


async def scheduled(
    engine: AsyncEngine, sm: async_sessionmaker[AsyncSession], vault: Vault
) -> tuple[dict[uuid.UUID, rotation.RotationResult], list[dict[str, Any]]]:
    """One scheduled run: (the results of the workspaces it rotated, by workspace; its log events)."""
    with structlog.testing.capture_logs() as logs:
        run = await rotate_due_data_keys(engine, sm, vault, max_age_days=MAX_AGE, now=utcnow(), batch_size=2)
    async with sm() as session:
        rows = await session.execute(
            select(DataKey.id, DataKey.workspace_id).where(DataKey.id.in_([r.data_key_id for r in run.rotated]))
        )
        workspace_of = dict(rows.all())
    return {workspace_of[r.data_key_id]: r for r in run.rotated if r.data_key_id is not None}, logs


async def test_an_old_key_is_rotated_its_secrets_still_decrypt_and_a_young_one_is_not(
    make_tenant: TenantFactory,
    engine: AsyncEngine,
    sessionmaker: async_sessionmaker[AsyncSession],
    vault: Vault,
    master_key: str,
) -> None:
    old, young = await make_tenant(), await make_tenant()
    stored = await _http_accounts(old, 2)
    theirs = await _http_accounts(young, 1)
    await make_old(sessionmaker, old.workspace_id, MAX_AGE + 1)
    (old_key,) = await _keys(sessionmaker, old.workspace_id)
    young_keys = [(k.id, k.state, k.wrapped_key) for k in await _keys(sessionmaker, young.workspace_id)]

    rotated, logs = await scheduled(engine, sessionmaker, vault)

    assert old.workspace_id in rotated and young.workspace_id not in rotated
    result = rotated[old.workspace_id]
    assert (result.reencrypted, result.retired, result.resumed) == (4, 1, False)
    keys = {k.id: k for k in await _keys(sessionmaker, old.workspace_id)}
    assert keys[old_key.id].state == "retired" and keys[old_key.id].wrapped_key is None
    new_key = keys[result.data_key_id]  # type: ignore[index]
    assert new_key.state == "active" and utcnow() - new_key.created_at < timedelta(hours=1)
    assert {c.data_key_id for c in await _credentials(sessionmaker, old.workspace_id)} == {new_key.id}
    await _assert_all_reveal(sessionmaker, vault, stored)
    await _assert_all_reveal(sessionmaker, _vault(master_key), stored)  # another process opens them too
    assert [(k.id, k.state, k.wrapped_key) for k in await _keys(sessionmaker, young.workspace_id)] == young_keys
    await _assert_all_reveal(sessionmaker, vault, theirs)

    # A line per workspace rotated, with counts and ids; no key material.
    [line] = [e for e in logs if e["event"] == "data_key_rotated" and e["workspace"] == old.name]
    assert line == {
        "event": "data_key_rotated",
        "log_level": "info",
        "workspace": old.name,
        "workspace_id": str(old.workspace_id),
        "data_key_id": str(new_key.id),
        "replaced_key_id": str(old_key.id),
        "replaced_key_age_days": MAX_AGE + 1,
        "reencrypted": 4,
        "retired": 1,
        "resumed": False,
    }
    material = vault.material(new_key)
    assert all(material.decode() not in repr(e) and master_key not in repr(e) for e in logs)

    # Idempotent: the next run finds nothing of these two to do.
    again, _ = await scheduled(engine, sessionmaker, vault)
    assert old.workspace_id not in again and young.workspace_id not in again
    assert len(await _keys(sessionmaker, old.workspace_id)) == 2


@pytest.fixture
async def second_worker(settings: Settings) -> AsyncIterator[tuple[AsyncEngine, async_sessionmaker[AsyncSession]]]:
    """The database as another worker process sees it: an engine (a connection pool) of its own."""
    assert settings.database_url
    engine = make_engine(settings.database_url, pool_size=3)
    yield engine, make_sessionmaker(engine)
    await engine.dispose()


async def test_two_concurrent_runs_rotate_once(
    tenant: Tenant,
    engine: AsyncEngine,
    sessionmaker: async_sessionmaker[AsyncSession],
    master_key: str,
    second_worker: tuple[AsyncEngine, async_sessionmaker[AsyncSession]],
) -> None:
    stored = await _http_accounts(tenant, 3)
    await make_old(sessionmaker, tenant.workspace_id, 400)
    other_engine, other_sm = second_worker
    runs = await asyncio.gather(
        scheduled(engine, sessionmaker, _vault(master_key)),
        scheduled(other_engine, other_sm, _vault(master_key)),
    )
    assert sum(tenant.workspace_id in rotated for rotated, _ in runs) == 1
    keys = await _keys(sessionmaker, tenant.workspace_id)
    assert sorted(k.state for k in keys) == ["active", "retired"], "one new key, not two"
    await _assert_all_reveal(sessionmaker, _vault(master_key), stored)


async def test_a_rotation_held_elsewhere_is_skipped_and_the_cli_refuses_to_race_it(
    tenant: Tenant,
    settings: Settings,
    engine: AsyncEngine,
    sessionmaker: async_sessionmaker[AsyncSession],
    vault: Vault,
    second_worker: tuple[AsyncEngine, async_sessionmaker[AsyncSession]],
) -> None:
    stored = await _http_accounts(tenant, 1)
    await make_old(sessionmaker, tenant.workspace_id, 100)
    other_engine, _ = second_worker
    async with session_lock(other_engine, LOCK_NAMESPACE, tenant.workspace_id) as got:
        assert got
        with structlog.testing.capture_logs() as logs:
            run = await rotate_due_data_keys(engine, sessionmaker, vault, max_age_days=MAX_AGE, now=utcnow())
        assert tenant.workspace_id in run.skipped_busy
        assert {
            "event": "data_key_rotation_busy",
            "log_level": "info",
            "workspace_id": str(tenant.workspace_id),
        } in logs
        assert len(await _keys(sessionmaker, tenant.workspace_id)) == 1
        out = cli(settings, "keys", "rotate", "--workspace", tenant.name, "--data-key")
        assert out.returncode == 2
        assert f"the data key of workspace {tenant.name} is being rotated elsewhere" in out.stderr
        assert len(await _keys(sessionmaker, tenant.workspace_id)) == 1
    # Released (as a crashed holder's connection would release it): the next run rotates.
    rotated, _ = await scheduled(engine, sessionmaker, vault)
    assert tenant.workspace_id in rotated
    await _assert_all_reveal(sessionmaker, vault, stored)


async def test_a_rotation_interrupted_mid_way_is_finished_by_the_next_run(
    tenant: Tenant, engine: AsyncEngine, sessionmaker: async_sessionmaker[AsyncSession], vault: Vault, master_key: str
) -> None:
    stored = await _http_accounts(tenant, 2)
    await make_old(sessionmaker, tenant.workspace_id, 200)
    (old_key,) = await _keys(sessionmaker, tenant.workspace_id)
    with pytest.raises(Interrupted):  # what a run does, stopped after its first batch (a crash)
        await rotation.rotate_data_key(
            sessionmaker, vault, tenant.workspace_id, batch_size=1, progress=interrupt_after_first_batch
        )
    [new_key] = [k for k in await _keys(sessionmaker, tenant.workspace_id) if k.state == "active"]
    await _assert_all_reveal(sessionmaker, _vault(master_key), stored)  # everything decrypts meanwhile

    # The new key is young, but the workspace has a retiring key: due, and the run resumes onto new_key.
    rotated, _ = await scheduled(engine, sessionmaker, vault)
    result = rotated[tenant.workspace_id]
    assert (result.data_key_id, result.resumed, result.reencrypted, result.retired) == (new_key.id, True, 3, 1)
    states = {k.id: k.state for k in await _keys(sessionmaker, tenant.workspace_id)}
    assert states == {old_key.id: "retired", new_key.id: "active"}
    await _assert_all_reveal(sessionmaker, _vault(master_key), stored)


async def test_a_workspace_that_fails_is_logged_and_the_others_go_on(
    make_tenant: TenantFactory, engine: AsyncEngine, sessionmaker: async_sessionmaker[AsyncSession], vault: Vault
) -> None:
    broken, fine = await make_tenant(), await make_tenant()
    await _http_accounts(broken, 1)
    stored = await _http_accounts(fine, 1)
    # The broken workspace's key is wrapped by a master key this deployment does not have.
    stranger = Fernet(generate_master_key().encode())
    async with sessionmaker() as session, session.begin():
        await session.execute(
            update(DataKey)
            .where(DataKey.workspace_id == broken.workspace_id)
            .values(wrapped_key=stranger.encrypt(Fernet.generate_key()), master_key_id="0" * 16)
        )
    await make_old(sessionmaker, broken.workspace_id, 300)  # oldest: tried first
    await make_old(sessionmaker, fine.workspace_id, 200)
    try:
        with structlog.testing.capture_logs() as logs:
            run = await rotate_due_data_keys(
                engine, sessionmaker, Vault(vault.keyring), max_age_days=MAX_AGE, now=utcnow()
            )
        assert broken.workspace_id in run.failed
        assert {
            "event": "data_key_rotation_failed",
            "log_level": "error",
            "workspace": broken.name,
            "workspace_id": str(broken.workspace_id),
            "error": "no configured master key opens this data key",
        } in logs
        [fine_key] = [k for k in await _keys(sessionmaker, fine.workspace_id) if k.state == "active"]
        assert fine_key.id in {r.data_key_id for r in run.rotated}
        await _assert_all_reveal(sessionmaker, vault, stored)
    finally:
        async with sessionmaker() as session, session.begin():  # no undecryptable workspace left behind
            await session.execute(delete(Workspace).where(Workspace.id == broken.workspace_id))


async def test_the_worker_runs_it_hourly_from_its_settings(
    tenant: Tenant,
    settings: Settings,
    engine: AsyncEngine,
    sessionmaker: async_sessionmaker[AsyncSession],
    vault: Vault,
) -> None:
    [job] = [c for c in worker_kwargs(settings)["cron_jobs"] if c.name == "cron:rotate_data_keys"]
    assert (job.minute, job.hour, job.unique) == ({23}, None, True)

    stored = await _http_accounts(tenant, 1)
    await make_old(sessionmaker, tenant.workspace_id, 31)
    net = build_net_context(settings)
    async with SmtpPool(net) as pool:
        for max_age, rotated in ((60, False), (30, True)):
            ctx: dict[str, Any] = {
                "nimbus": WorkerResources(
                    settings=settings.model_copy(update={"data_key_max_age_days": max_age}),
                    engine=engine,
                    sessionmaker=sessionmaker,
                    vault=vault,
                    pool=pool,
                    pacer=None,
                    mx=MxChecker(net.resolver),
                    worker_id="test-worker",
                )
            }
            await rotate_data_keys(ctx)
            assert len(await _keys(sessionmaker, tenant.workspace_id)) == (2 if rotated else 1), max_age
    await _assert_all_reveal(sessionmaker, vault, stored)

    # 0 turns the schedule off, however old the key.
    await make_old(sessionmaker, tenant.workspace_id, 10_000)
    run = await rotate_due_data_keys(engine, sessionmaker, vault, max_age_days=0, now=utcnow())
    assert run.rotated == [] and len(await _keys(sessionmaker, tenant.workspace_id)) == 2


# --- nimbus keys status --------------------------------------------------------------------------------


def status_rows(stdout: str) -> dict[str, list[str]]:
    """The table's rows by workspace name, cells split on runs of 2+ spaces."""
    lines = stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("WORKSPACE"))
    return {cells[0]: cells for cells in (re.split(r"\s{2,}", line.strip()) for line in lines[header + 1 :] if line)}


async def test_keys_status_shows_each_key_its_age_when_it_rotates_and_its_master_key(
    make_tenant: TenantFactory,
    settings: Settings,
    sessionmaker: async_sessionmaker[AsyncSession],
    vault: Vault,
    master_key: str,
) -> None:
    old, young, halfway = await make_tenant(), await make_tenant(), await make_tenant()
    await _http_accounts(halfway, 2)
    await make_old(sessionmaker, old.workspace_id, 120)
    with pytest.raises(Interrupted):
        await rotation.rotate_data_key(
            sessionmaker, vault, halfway.workspace_id, batch_size=1, progress=interrupt_after_first_batch
        )
    keys = {
        t.name: next(k for k in await _keys(sessionmaker, t.workspace_id) if k.state == "active")
        for t in (old, young, halfway)
    }
    master = key_id(master_key.encode())

    out = cli(settings, "keys", "status")
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[0] == f"master keys (NIMBUS_MASTER_KEYS): {master} (primary)"
    assert out.stdout.splitlines()[1] == "scheduled rotation: the worker rotates a data key older than 90 days (hourly)"
    rows = status_rows(out.stdout)
    assert rows[old.name] == [
        old.name,
        str(keys[old.name].id),
        "v1",
        "120 days",
        master,
        "due now (the next hourly run)",
    ]
    due = (keys[young.name].created_at + timedelta(days=90)).strftime("%Y-%m-%d")
    assert rows[young.name] == [young.name, str(keys[young.name].id), "v1", "0 days", master, f"due {due} (in 89 days)"]
    assert rows[halfway.name] == [
        halfway.name,
        str(keys[halfway.name].id),
        "v2",
        "0 days",
        master,
        "in progress: 3 secret(s) still on a retiring key (the next run finishes it)",
    ]
    assert vault.material(keys[old.name]).decode() not in out.stdout + out.stderr
    assert master_key not in out.stdout + out.stderr

    # Under other master keys: ids only, the unknown one flagged; with the schedule off, nothing is due.
    other = generate_master_key()
    out = cli(
        settings,
        "keys",
        "status",
        env={"NIMBUS_MASTER_KEYS": f"{other},{master_key}", "NIMBUS_DATA_KEY_MAX_AGE_DAYS": "0"},
    )
    assert out.returncode == 0, out.stderr
    assert (
        out.stdout.splitlines()[0] == f"master keys (NIMBUS_MASTER_KEYS): {key_id(other.encode())} (primary), {master}"
    )
    assert out.stdout.splitlines()[1] == "scheduled rotation: off (NIMBUS_DATA_KEY_MAX_AGE_DAYS=0)"
    assert status_rows(out.stdout)[old.name][-1] == "not scheduled"
    out = cli(settings, "keys", "status", env={"NIMBUS_MASTER_KEYS": other})
    assert status_rows(out.stdout)[old.name][4] == f"{master} (not configured!)"
    assert other not in out.stdout and master_key not in out.stdout
