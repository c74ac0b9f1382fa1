"""Key rotation: master-key re-wrap and per-workspace data-key rotation, online and resumable.

Master-key rotation touches every data key in a database, so those tests run in a throwaway database
of their own (``fresh_db``): the session database keeps its keys wrapped by the session master key,
which the shared ``vault`` fixture must go on opening.
"""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nimbus_api.accounts import service as accounts
from nimbus_api.accounts.schemas import EmailAccountCreate
from nimbus_api.api.state import AppState
from nimbus_api.config import Settings
from nimbus_api.credentials import rotation
from nimbus_api.credentials.vault import Actor, Vault
from nimbus_api.kit.crypto import KeyringError, MasterKeyring, generate_master_key, key_id
from nimbus_api.kit.db import make_engine, make_sessionmaker
from nimbus_api.kit.migrate import upgrade_head
from nimbus_api.models import Credential, CredentialAccess, DataKey
from nimbus_api.validation.service import Verifier
from nimbus_api.workspaces import service as workspaces
from tests.conftest import PG_ADMIN_DSN, Tenant, TenantFactory, _db_url, account_payload, change_smtp_password

NIMBUS = str(Path(sys.executable).with_name("nimbus"))
KINDS = ("smtp_password", "imap_password")


class Interrupted(Exception):
    """Stands in for a crash or Ctrl-C in the middle of a rotation."""


def interrupt_after_first_batch(done: int, total: int) -> None:
    if done >= 1:
        raise Interrupted(f"stopped at {done}/{total}")


# --- helpers ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Stored:
    account_id: uuid.UUID
    kind: str
    plaintext: str


def _payload(smtp_pw: str, imap_pw: str) -> dict[str, object]:
    """A fresh mailbox of the mail world whose servers have these passwords."""
    return account_payload(smtp_password=smtp_pw, imap_password=imap_pw)


async def _http_accounts(tenant: Tenant, count: int) -> list[Stored]:
    out: list[Stored] = []
    for _ in range(count):
        smtp_pw, imap_pw = f"smtp-{secrets.token_hex(8)}", f"imap-{secrets.token_hex(8)}"
        r = await tenant.client.post("/v1/email-accounts", json=_payload(smtp_pw, imap_pw))
        assert r.status_code == 201, r.text
        account_id = uuid.UUID(r.json()["id"])
        out += [Stored(account_id, "smtp_password", smtp_pw), Stored(account_id, "imap_password", imap_pw)]
    return out


async def _seed_workspace(
    sm: async_sessionmaker[AsyncSession], vault: Vault, verifier: Verifier, accounts_count: int
) -> tuple[uuid.UUID, str, list[Stored]]:
    """A workspace with accounts, written through the product services (no HTTP app on this database),
    each verified against the mail world like a create over HTTP."""
    name = f"rot-{secrets.token_hex(5)}"
    stored: list[Stored] = []
    async with sm() as session, session.begin():
        workspace = await workspaces.create_workspace(session, vault, name)
        for _ in range(accounts_count):
            smtp_pw, imap_pw = f"smtp-{secrets.token_hex(8)}", f"imap-{secrets.token_hex(8)}"
            account, result = await accounts.create(
                session,
                vault,
                verifier,
                workspace.id,
                EmailAccountCreate.model_validate(_payload(smtp_pw, imap_pw)),
                max_accounts=1000,
            )
            assert result.status == "passed", result
            stored += [Stored(account.id, "smtp_password", smtp_pw), Stored(account.id, "imap_password", imap_pw)]
    return workspace.id, name, stored


async def _email_of(tenant: Tenant, account_id: uuid.UUID) -> str:
    r = await tenant.client.get(f"/v1/email-accounts/{account_id}")
    assert r.status_code == 200, r.text
    return str(r.json()["email"])


async def _keys(sm: async_sessionmaker[AsyncSession], workspace_id: uuid.UUID) -> list[DataKey]:
    async with sm() as session:
        return list(
            await session.scalars(
                select(DataKey).where(DataKey.workspace_id == workspace_id).order_by(DataKey.created_at)
            )
        )


async def _all_keys(sm: async_sessionmaker[AsyncSession]) -> list[DataKey]:
    async with sm() as session:
        return list(await session.scalars(select(DataKey)))


async def _credentials(sm: async_sessionmaker[AsyncSession], workspace_id: uuid.UUID) -> list[Credential]:
    async with sm() as session:
        return list(await session.scalars(select(Credential).where(Credential.workspace_id == workspace_id)))


async def _assert_all_reveal(sm: async_sessionmaker[AsyncSession], vault: Vault, stored: list[Stored]) -> None:
    async with sm() as session, session.begin():
        for item in stored:
            secret = await vault.reveal_for_account(
                session,
                item.account_id,
                item.kind,  # type: ignore[arg-type]
                actor=Actor.system("send"),
                purpose="send",
            )
            assert secret is not None, item
            assert secret.reveal() == item.plaintext


async def _rotation_audit(sm: async_sessionmaker[AsyncSession], workspace_id: uuid.UUID) -> list[CredentialAccess]:
    async with sm() as session:
        return list(
            await session.scalars(
                select(CredentialAccess).where(
                    CredentialAccess.workspace_id == workspace_id, CredentialAccess.purpose == "key_rotation"
                )
            )
        )


def _vault(*keys: str) -> Vault:
    return Vault(MasterKeyring.from_strings(list(keys)))


@dataclass
class FreshDb:
    url: str
    sessionmaker: async_sessionmaker[AsyncSession]


@pytest.fixture
async def fresh_db() -> AsyncIterator[FreshDb]:
    """A database of this test's own, migrated to head, dropped afterwards."""
    name = f"nimbus_test_rot_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(PG_ADMIN_DSN)
    try:
        await admin.execute(f'CREATE DATABASE "{name}" TEMPLATE template0')
    finally:
        await admin.close()
    url = _db_url(name)
    engine = None
    try:
        await asyncio.to_thread(upgrade_head, url)
        engine = make_engine(url, pool_size=5)
        yield FreshDb(url=url, sessionmaker=make_sessionmaker(engine))
    finally:
        if engine is not None:
            await engine.dispose()
        admin = await asyncpg.connect(PG_ADMIN_DSN)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


def _cli(settings: Settings, database_url: str, master_keys: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NIMBUS_")} | {
        "NIMBUS_DATABASE_URL": database_url,
        "NIMBUS_REDIS_URL": settings.redis_url or "",
        "NIMBUS_MASTER_KEYS": master_keys,
    }
    return subprocess.run([NIMBUS, *args], env=env, capture_output=True, text=True, timeout=60, check=False)


# --- (a) master-key rotation ---------------------------------------------------------------------------


async def test_rewrap_all_moves_every_data_key_to_the_new_primary(fresh_db: FreshDb, app_state: AppState) -> None:
    sm = fresh_db.sessionmaker
    k1, k2 = generate_master_key(), generate_master_key()
    old = _vault(k1)
    ws1, _, stored1 = await _seed_workspace(sm, old, app_state.verifier, 2)
    ws2, _, stored2 = await _seed_workspace(sm, old, app_state.verifier, 1)
    # ws1 is in the middle of a data-key rotation: its retiring key must be re-wrapped as well
    with pytest.raises(Interrupted):
        await rotation.rotate_data_key(sm, old, ws1, batch_size=1, progress=interrupt_after_first_batch)
    assert sorted(k.state for k in await _keys(sm, ws1)) == ["active", "retiring"]
    before = {k.id: (k.wrapped_key, old.material(k)) for k in await _all_keys(sm)}
    assert {k.master_key_id for k in await _all_keys(sm)} == {key_id(k1.encode())}

    calls: list[tuple[int, int]] = []
    new = _vault(k2, k1)
    count = await rotation.rewrap_all(sm, new, batch_size=2, progress=lambda d, t: calls.append((d, t)))
    assert count == len(before) == 3
    assert calls[0] == (0, 3) and calls[-1] == (3, 3)

    after = await _all_keys(sm)
    assert {k.id for k in after} == set(before)
    only_k2 = _vault(k2)
    for key in after:
        assert key.master_key_id == key_id(k2.encode()) == only_k2.keyring.primary_id
        assert key.wrapped_key != before[key.id][0], "re-wrapped, not left as it was"
        assert only_k2.material(key) == before[key.id][1], "the data key itself is unchanged"
    assert {k.workspace_id for k in after} == {ws1, ws2}

    # the old master key can now be dropped: K2 alone opens everything, K1 alone opens nothing
    await _assert_all_reveal(sm, only_k2, stored1 + stored2)
    with pytest.raises(KeyringError):
        await _assert_all_reveal(sm, _vault(k1), stored2)
    # running again has nothing left to do
    assert await rotation.rewrap_all(sm, new) == 0

    # the interrupted data-key rotation finishes with K2 only
    result = await rotation.rotate_data_key(sm, only_k2, ws1)
    assert result.resumed is True and result.retired == 1
    await _assert_all_reveal(sm, _vault(k2), stored1)


# --- (b) data-key rotation -----------------------------------------------------------------------------


async def test_rotate_data_key_reencrypts_one_workspace_under_a_new_key(
    make_tenant: TenantFactory, sessionmaker: async_sessionmaker[AsyncSession], vault: Vault, master_key: str
) -> None:
    tenant, bystander = await make_tenant(), await make_tenant()
    stored = await _http_accounts(tenant, 2)
    theirs = await _http_accounts(bystander, 1)
    (old_key,) = await _keys(sessionmaker, tenant.workspace_id)
    old_ciphertexts = {c.id: c.ciphertext for c in await _credentials(sessionmaker, tenant.workspace_id)}
    their_keys = [(k.id, k.state, k.wrapped_key) for k in await _keys(sessionmaker, bystander.workspace_id)]
    their_creds = {
        (c.id, c.data_key_id, c.ciphertext) for c in await _credentials(sessionmaker, bystander.workspace_id)
    }
    calls: list[tuple[int, int]] = []

    result = await rotation.rotate_data_key(
        sessionmaker, vault, tenant.workspace_id, batch_size=3, progress=lambda d, t: calls.append((d, t))
    )

    assert result.resumed is False
    assert result.reencrypted == 4 and result.retired == 1
    assert result.data_key_id is not None and result.data_key_id != old_key.id
    assert calls == [(0, 4), (3, 4), (4, 4)]
    keys = {k.id: k for k in await _keys(sessionmaker, tenant.workspace_id)}
    assert set(keys) == {old_key.id, result.data_key_id}
    new_key, retired = keys[result.data_key_id], keys[old_key.id]
    assert new_key.state == "active" and new_key.wrapped_key is not None
    assert new_key.master_key_id == vault.keyring.primary_id
    assert retired.state == "retired" and retired.wrapped_key is None and retired.retired_at is not None
    credentials = await _credentials(sessionmaker, tenant.workspace_id)
    assert len(credentials) == 4
    for credential in credentials:
        assert credential.data_key_id == new_key.id
        assert credential.ciphertext != old_ciphertexts[credential.id]
    with pytest.raises(KeyringError, match="retired"):
        vault.material(retired)  # forgotten by the vault, erased in the database

    await _assert_all_reveal(sessionmaker, vault, stored)
    await _assert_all_reveal(sessionmaker, _vault(master_key), stored)
    # a new secret goes under the new key (the mailbox's server changed its password first)
    change_smtp_password(await _email_of(tenant, stored[0].account_id), "after-rotation")
    r = await tenant.client.patch(
        f"/v1/email-accounts/{stored[0].account_id}", json={"smtp": {"password": "after-rotation"}}
    )
    assert r.status_code == 200, r.text
    after = await _credentials(sessionmaker, tenant.workspace_id)
    assert {c.data_key_id for c in after} == {new_key.id}

    # the other workspace was not touched
    assert [(k.id, k.state, k.wrapped_key) for k in await _keys(sessionmaker, bystander.workspace_id)] == their_keys
    assert {
        (c.id, c.data_key_id, c.ciphertext) for c in await _credentials(sessionmaker, bystander.workspace_id)
    } == their_creds
    await _assert_all_reveal(sessionmaker, vault, theirs)
    assert await _rotation_audit(sessionmaker, bystander.workspace_id) == []

    # each re-encryption was a decrypt, and audited as such
    audit = await _rotation_audit(sessionmaker, tenant.workspace_id)
    assert sorted((a.account_id, a.credential_kind) for a in audit) == sorted((s.account_id, s.kind) for s in stored)
    assert {a.actor for a in audit} == {"system:keys-rotate"}
    listed = (await tenant.client.get("/v1/audit-log", params={"purpose": "key_rotation"})).json()["data"]
    assert len(listed) == 4 and {e["actor"] for e in listed} == {"system:keys-rotate"}


# --- (c) interrupted rotation resumes ----------------------------------------------------------------------


async def test_interrupted_rotation_resumes_without_a_second_new_key(
    tenant: Tenant, sessionmaker: async_sessionmaker[AsyncSession], vault: Vault, master_key: str
) -> None:
    stored = await _http_accounts(tenant, 2)
    (old_key,) = await _keys(sessionmaker, tenant.workspace_id)

    with pytest.raises(Interrupted, match="stopped at 1/4"):
        await rotation.rotate_data_key(
            sessionmaker, vault, tenant.workspace_id, batch_size=1, progress=interrupt_after_first_batch
        )

    keys = {k.id: k for k in await _keys(sessionmaker, tenant.workspace_id)}
    assert len(keys) == 2
    assert keys[old_key.id].state == "retiring" and keys[old_key.id].wrapped_key is not None
    (new_key,) = [k for k in keys.values() if k.state == "active"]
    on_key = [c.data_key_id for c in await _credentials(sessionmaker, tenant.workspace_id)]
    assert sorted(on_key.count(k) for k in (new_key.id, old_key.id)) == [1, 3]
    # half-way, every secret still opens: the one moved, the three not yet moved
    await _assert_all_reveal(sessionmaker, vault, stored)
    await _assert_all_reveal(sessionmaker, _vault(master_key), stored)
    assert len(await _rotation_audit(sessionmaker, tenant.workspace_id)) == 1

    calls: list[tuple[int, int]] = []
    result = await rotation.rotate_data_key(
        sessionmaker, vault, tenant.workspace_id, batch_size=1, progress=lambda d, t: calls.append((d, t))
    )
    assert result.resumed is True
    assert result.data_key_id == new_key.id, "resumed onto the key the first run created"
    assert result.reencrypted == 3 and result.retired == 1
    assert calls[0] == (0, 3) and calls[-1] == (3, 3)

    keys = {k.id: k for k in await _keys(sessionmaker, tenant.workspace_id)}
    assert set(keys) == {old_key.id, new_key.id}, "no extra data key"
    assert keys[new_key.id].state == "active"
    assert keys[old_key.id].state == "retired" and keys[old_key.id].wrapped_key is None
    assert {c.data_key_id for c in await _credentials(sessionmaker, tenant.workspace_id)} == {new_key.id}
    await _assert_all_reveal(sessionmaker, vault, stored)
    await _assert_all_reveal(sessionmaker, _vault(master_key), stored)
    assert len(await _rotation_audit(sessionmaker, tenant.workspace_id)) == 4


# --- (d) sends in flight -----------------------------------------------------------------------------------


async def test_sends_in_flight_are_unaffected_by_a_rotation(
    tenant: Tenant, sessionmaker: async_sessionmaker[AsyncSession], vault: Vault, master_key: str
) -> None:
    stored = await _http_accounts(tenant, 3)
    (old_key,) = await _keys(sessionmaker, tenant.workspace_id)
    with pytest.raises(Interrupted):
        await rotation.rotate_data_key(
            sessionmaker, vault, tenant.workspace_id, batch_size=1, progress=interrupt_after_first_batch
        )
    credentials = await _credentials(sessionmaker, tenant.workspace_id)
    on_keys = {c.data_key_id for c in credentials}
    assert len(on_keys) == 2 and old_key.id in on_keys, "secrets on both keys"

    # a sender with a warm cache (the rotating vault), and one started just now (empty cache)
    for sender in (vault, _vault(master_key)):
        async with sessionmaker() as session, session.begin():
            for item in stored:
                secret = await sender.reveal_for_account(
                    session,
                    item.account_id,
                    item.kind,  # type: ignore[arg-type]
                    actor=Actor.system("send"),
                    purpose="send",
                )
                assert secret is not None and secret.reveal() == item.plaintext

    # an account saved mid-rotation stores under the new key and stays readable (SMTP's password is the
    # one changed: the mail world's SMTP sees a new password at once, Dovecot within a second)
    last = stored[-2]
    assert last.kind == "smtp_password"
    change_smtp_password(await _email_of(tenant, last.account_id), "mid-rotation")
    r = await tenant.client.patch(f"/v1/email-accounts/{last.account_id}", json={"smtp": {"password": "mid-rotation"}})
    assert r.status_code == 200, r.text
    stored[-2] = Stored(last.account_id, "smtp_password", "mid-rotation")

    # the rest of the rotation runs while senders keep decrypting, each with its own vault and session
    rotating = asyncio.create_task(rotation.rotate_data_key(sessionmaker, vault, tenant.workspace_id, batch_size=1))
    reads = 0
    while not rotating.done():
        await _assert_all_reveal(sessionmaker, _vault(master_key), stored)
        reads += 1
    result = await rotating
    assert result.resumed is True and result.retired == 1
    assert reads >= 1
    await _assert_all_reveal(sessionmaker, vault, stored)
    await _assert_all_reveal(sessionmaker, _vault(master_key), stored)


# --- (e) the real CLI ----------------------------------------------------------------------------------------


async def test_cli_keys_rotate_rewraps_then_rotates_a_workspace_data_key(
    fresh_db: FreshDb, settings: Settings, app_state: AppState
) -> None:
    sm = fresh_db.sessionmaker
    k1, k2 = generate_master_key(), generate_master_key()
    k2_id = key_id(k2.encode())
    ws1, name1, stored1 = await _seed_workspace(sm, _vault(k1), app_state.verifier, 2)
    ws2, name2, stored2 = await _seed_workspace(sm, _vault(k1), app_state.verifier, 1)

    # master-key rotation: K2 becomes primary, K1 is still listed to open the old wrapping
    out = _cli(settings, fresh_db.url, f"{k2},{k1}", "keys", "rotate")
    assert out.returncode == 0, out.stderr
    assert f"re-wrapped 2 data key(s) under master key {k2_id}" in out.stdout
    assert "re-wrapping data keys" in out.stderr  # the progress bar
    assert {k.master_key_id for k in await _all_keys(sm)} == {k2_id}
    await _assert_all_reveal(sm, _vault(k2), stored1 + stored2)
    for secret in [k1, k2] + [s.plaintext for s in stored1 + stored2]:
        assert secret not in out.stdout + out.stderr

    # data-key rotation of one workspace, with K1 already removed from the configuration
    (old_key,) = await _keys(sm, ws1)
    (their_key,) = await _keys(sm, ws2)
    out = _cli(settings, fresh_db.url, k2, "keys", "rotate", "--workspace", name1, "--data-key", "--batch-size", "1")
    assert out.returncode == 0, out.stderr
    assert f"re-wrapped 0 data key(s) under master key {k2_id}" in out.stdout
    match = re.search(
        rf"workspace {re.escape(name1)}: new data key ([0-9a-f-]{{36}}); "
        r"4 secret\(s\) re-encrypted, 1 old key\(s\) retired",
        out.stdout,
    )
    assert match, out.stdout
    assert "resumed" not in out.stdout
    assert f"re-encrypting secrets of {name1}" in out.stderr
    new_id = uuid.UUID(match.group(1))
    keys = {k.id: k for k in await _keys(sm, ws1)}
    assert set(keys) == {old_key.id, new_id}
    assert keys[new_id].state == "active" and keys[new_id].master_key_id == k2_id
    assert keys[old_key.id].state == "retired" and keys[old_key.id].wrapped_key is None
    assert {c.data_key_id for c in await _credentials(sm, ws1)} == {new_id}
    await _assert_all_reveal(sm, _vault(k2), stored1 + stored2)
    (still,) = await _keys(sm, ws2)
    assert (still.id, still.state, still.wrapped_key) == (their_key.id, "active", their_key.wrapped_key)
    assert len(await _rotation_audit(sm, ws1)) == 4 and await _rotation_audit(sm, ws2) == []

    # an interrupted rotation is picked up by the next CLI run
    with pytest.raises(Interrupted):
        await rotation.rotate_data_key(sm, _vault(k2), ws2, batch_size=1, progress=interrupt_after_first_batch)
    out = _cli(settings, fresh_db.url, k2, "keys", "rotate", "--workspace", "missing-ws", "--data-key")
    assert out.returncode == 2 and "missing-ws" in out.stderr
    out = _cli(settings, fresh_db.url, k2, "keys", "rotate", "--workspace", name2, "--data-key")
    assert out.returncode == 0, out.stderr
    assert "(resumed an interrupted rotation)" in out.stdout
    assert "1 secret(s) re-encrypted, 1 old key(s) retired" in out.stdout
    assert sorted(k.state for k in await _keys(sm, ws2)) == ["active", "retired"]
    await _assert_all_reveal(sm, _vault(k2), stored2)

    # usage errors exit 2 with a message
    out = _cli(settings, fresh_db.url, k2, "keys", "rotate", "--data-key")
    assert out.returncode == 2 and "--data-key needs --workspace" in out.stderr
    out = _cli(settings, fresh_db.url, k1, "keys", "rotate")
    assert out.returncode != 0, "K1 alone opens none of the K2-wrapped keys"
    assert k1 not in out.stderr and k2 not in out.stderr


async def test_a_send_that_read_its_row_before_the_rotation_finished_still_decrypts(
    tenant: Tenant, sessionmaker: async_sessionmaker[AsyncSession], vault: Vault, master_key: str
) -> None:
    """The send loaded the credential row (old key), then the rotation re-encrypted it and erased the old
    key, then the send decrypts: it must re-read the row rather than fail on the retired key."""
    stored = await _http_accounts(tenant, 1)
    sender = _vault(master_key)  # another process: its own vault, nothing cached
    async with sessionmaker() as session, session.begin():
        credential = await session.scalar(
            select(Credential).where(Credential.account_id == stored[0].account_id, Credential.kind == "smtp_password")
        )
        assert credential is not None
        old_key_id = credential.data_key_id
        result = await rotation.rotate_data_key(sessionmaker, vault, tenant.workspace_id)
        assert result.retired == 1
        secret = await sender.reveal(session, credential, actor=Actor.system("send"), purpose="send")
        assert secret.reveal() == stored[0].plaintext
        assert credential.data_key_id == result.data_key_id != old_key_id
