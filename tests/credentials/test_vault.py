"""The vault: envelope encryption of mailbox secrets, one audited decrypt path, and the audit log API."""

from __future__ import annotations

import ast
import asyncio
import copy
import pickle
import secrets
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

import nimbus_api
from nimbus_api.credentials.vault import Actor, Vault
from nimbus_api.kit import crypto
from nimbus_api.kit.crypto import KeyringError, MasterKeyring, Secret, generate_master_key
from nimbus_api.models import Credential, CredentialAccess, DataKey
from tests.conftest import Tenant, TenantFactory, account_payload


async def _create_account(tenant: Tenant, **overrides: object) -> str:
    r = await tenant.client.post("/v1/email-accounts", json=account_payload(**overrides))
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


async def _audit_rows(
    sessionmaker: async_sessionmaker[AsyncSession], workspace_id: uuid.UUID
) -> list[CredentialAccess]:
    async with sessionmaker() as session:
        rows = await session.scalars(
            select(CredentialAccess)
            .where(CredentialAccess.workspace_id == workspace_id)
            .order_by(CredentialAccess.created_at)
        )
        return list(rows)


async def _reveal(
    sessionmaker: async_sessionmaker[AsyncSession],
    vault: Vault,
    account_id: str,
    kind: str,
    *,
    actor: Actor,
    purpose: str,
) -> Secret | None:
    async with sessionmaker() as session, session.begin():
        return await vault.reveal_for_account(
            session,
            uuid.UUID(account_id),
            kind,  # type: ignore[arg-type]
            actor=actor,
            purpose=purpose,  # type: ignore[arg-type]
        )


# --- encrypt / store / reveal ------------------------------------------------------------------------


async def test_store_then_reveal_roundtrips_and_only_ciphertext_is_stored(
    tenant: Tenant, sessionmaker: async_sessionmaker[AsyncSession], vault: Vault, master_key: str
) -> None:
    account_id = uuid.UUID(await _create_account(tenant))
    plaintext = f"roundtrip-{secrets.token_hex(8)}-ünïcode-✓"
    actor = Actor.api_key(tenant.api_key_id)

    async with sessionmaker() as session, session.begin():
        stored = await vault.store(
            session,
            workspace_id=tenant.workspace_id,
            account_id=account_id,
            kind="smtp_password",
            secret=Secret(plaintext),
        )
        credential_id = stored.id
    async with sessionmaker() as session:
        credential = await session.get_one(Credential, credential_id)
        active = await session.scalar(
            select(DataKey).where(DataKey.workspace_id == tenant.workspace_id, DataKey.state == "active")
        )
    assert active is not None and credential.data_key_id == active.id
    assert plaintext.encode() not in credential.ciphertext
    assert active.wrapped_key is not None and active.master_key_id == vault.keyring.primary_id
    # the stored data key is wrapped: it is not itself a usable Fernet key, the master key opens it
    assert vault.keyring.unwrap(active.wrapped_key) == vault.material(active)
    assert active.wrapped_key != vault.material(active)

    async with sessionmaker() as session, session.begin():
        revealed = await vault.reveal(session, credential, actor=actor, purpose="verify")
    assert isinstance(revealed, Secret)
    assert revealed.reveal() == plaintext
    assert revealed == Secret(plaintext)

    # replacing a secret keeps one row per (account, kind)
    async with sessionmaker() as session, session.begin():
        await vault.store(
            session,
            workspace_id=tenant.workspace_id,
            account_id=account_id,
            kind="smtp_password",
            secret=Secret("replaced"),
        )
    async with sessionmaker() as session:
        rows = list(
            await session.scalars(
                select(Credential).where(Credential.account_id == account_id, Credential.kind == "smtp_password")
            )
        )
    assert [r.id for r in rows] == [credential_id]
    again = await _reveal(sessionmaker, vault, str(account_id), "smtp_password", actor=actor, purpose="send")
    assert again is not None and again.reveal() == "replaced"

    # a fresh vault (empty cache) with the same master key reads it too
    fresh = Vault(MasterKeyring.from_strings([master_key]))
    other = await _reveal(sessionmaker, fresh, str(account_id), "smtp_password", actor=actor, purpose="send")
    assert other is not None and other.reveal() == "replaced"


async def test_http_create_encrypts_both_passwords(
    tenant: Tenant, sessionmaker: async_sessionmaker[AsyncSession], vault: Vault
) -> None:
    smtp_pw, imap_pw = f"smtp-{secrets.token_hex(6)}", f"imap-{secrets.token_hex(6)}"
    # the mailbox's servers really have these passwords: the create's verification logged in with them
    account_id = await _create_account(tenant, smtp_password=smtp_pw, imap_password=imap_pw)
    actor = Actor.system("send")
    smtp = await _reveal(sessionmaker, vault, account_id, "smtp_password", actor=actor, purpose="send")
    imap = await _reveal(sessionmaker, vault, account_id, "imap_password", actor=actor, purpose="sync")
    assert smtp is not None and smtp.reveal() == smtp_pw
    assert imap is not None and imap.reveal() == imap_pw


async def test_each_reveal_writes_exactly_one_audit_row(
    tenant: Tenant, sessionmaker: async_sessionmaker[AsyncSession], vault: Vault
) -> None:
    account_id = await _create_account(tenant)
    no_imap = await _create_account(tenant, imap=None)
    assert await _audit_rows(sessionmaker, tenant.workspace_id) == []

    calls: list[tuple[str, str, Actor, str]] = [
        (account_id, "smtp_password", Actor.api_key(tenant.api_key_id), "verify"),
        (account_id, "imap_password", Actor.system("imap-sync"), "sync"),
        (account_id, "smtp_password", Actor.system("send"), "send"),
        (no_imap, "smtp_password", Actor.system("support"), "support"),
    ]
    for n, (acc, kind, actor, purpose) in enumerate(calls, start=1):
        before = datetime.now(UTC)
        secret = await _reveal(sessionmaker, vault, acc, kind, actor=actor, purpose=purpose)
        after = datetime.now(UTC)
        assert secret is not None
        rows = await _audit_rows(sessionmaker, tenant.workspace_id)
        assert len(rows) == n, "one reveal, one audit row"
        row = rows[-1]
        assert row.workspace_id == tenant.workspace_id
        assert str(row.account_id) == acc
        assert row.credential_kind == kind
        assert row.actor == actor.value
        assert row.purpose == purpose
        assert before - timedelta(seconds=1) <= row.created_at <= after + timedelta(seconds=1)
    assert rows[0].actor == f"api_key:{tenant.api_key_id}"
    assert rows[1].actor == "system:imap-sync"

    # nothing stored, nothing decrypted, nothing audited
    missing = await _reveal(sessionmaker, vault, no_imap, "imap_password", actor=Actor.system("x"), purpose="sync")
    assert missing is None
    assert len(await _audit_rows(sessionmaker, tenant.workspace_id)) == len(calls)

    # an audit row is part of the decrypt's transaction: rolled back together
    async with sessionmaker() as session:
        await vault.reveal_for_account(
            session, uuid.UUID(account_id), "smtp_password", actor=Actor.system("x"), purpose="send"
        )
        in_tx = await session.scalar(
            select(func.count())
            .select_from(CredentialAccess)
            .where(CredentialAccess.workspace_id == tenant.workspace_id)
        )
        assert in_tx == len(calls) + 1
        await session.rollback()
    assert len(await _audit_rows(sessionmaker, tenant.workspace_id)) == len(calls)


# Modules other than kit/crypto.py that may import ``cryptography``, and the only parts they may import:
# reading public keys and verifying signatures with them (DKIM records; the SNS, SendGrid and Mailgun
# signatures of provider hooks). Nothing here can open a Fernet token or any symmetric ciphertext.
PUBLIC_KEY_READERS = {
    "dns_checks/dkim.py",
    "provider_hooks/schemas.py",
    "provider_hooks/signatures.py",
    "provider_hooks/sns.py",
}
PUBLIC_KEY_MODULES = {
    "cryptography.exceptions",
    "cryptography.hazmat.primitives.asymmetric",
    "cryptography.hazmat.primitives.hashes",
    "cryptography.hazmat.primitives.serialization",
    "cryptography.x509",
}


def test_decrypt_happens_in_the_vault_only() -> None:
    """Structural: only ``credentials/vault.py`` calls ``crypto.decrypt``; only ``kit/crypto.py`` imports
    ``cryptography`` for more than reading public keys (so nothing else can open a Fernet token)."""
    root = Path(nimbus_api.__file__).parent
    decrypt_callers: set[str] = set()
    fernet_importers: set[str] = set()
    imported: dict[str, set[str]] = {}
    for path in root.rglob("*.py"):
        rel = path.relative_to(root).as_posix()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call):
                fn = node.func
                name = fn.attr if isinstance(fn, ast.Attribute) else fn.id if isinstance(fn, ast.Name) else ""
                if name == "decrypt":
                    decrypt_callers.add(rel)
            elif isinstance(node, ast.ImportFrom | ast.Import):
                modules = [node.module or ""] if isinstance(node, ast.ImportFrom) else [a.name for a in node.names]
                if any(m.startswith("cryptography") for m in modules):
                    fernet_importers.add(rel)
                    imported.setdefault(rel, set()).update(modules)
    assert decrypt_callers == {"kit/crypto.py", "credentials/vault.py"}
    assert fernet_importers - PUBLIC_KEY_READERS == {"kit/crypto.py"}
    for rel in fernet_importers & PUBLIC_KEY_READERS:
        assert imported[rel] <= PUBLIC_KEY_MODULES, f"{rel} imports {sorted(imported[rel] - PUBLIC_KEY_MODULES)}"


# --- Secret --------------------------------------------------------------------------------------------


def test_secret_masks_itself_and_refuses_to_be_pickled() -> None:
    value = f"very-secret-{secrets.token_hex(8)}"
    secret = Secret(value)
    rendered = [repr(secret), str(secret), f"{secret}", f"{secret!r}", "%s" % (secret,), repr([secret])]  # noqa: UP031
    rendered.append(repr({"password": secret}))
    for text in rendered:
        assert value not in text
        assert "**********" in text
    assert secret.reveal() == value
    assert bool(secret) and not bool(Secret(""))
    assert secret == Secret(value) and secret != Secret("other") and secret != value
    assert hash(secret) == hash(Secret(value))

    for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
        with pytest.raises(TypeError, match="cannot be serialized") as info:
            pickle.dumps(secret, protocol=protocol)
        assert value not in str(info.value)
    with pytest.raises(TypeError):
        pickle.dumps({"args": (1, [secret])})
    with pytest.raises(TypeError):
        copy.deepcopy(secret)


# --- foreign keys --------------------------------------------------------------------------------------


async def test_keys_of_another_deployment_cannot_open_data(
    tenant: Tenant, sessionmaker: async_sessionmaker[AsyncSession], vault: Vault
) -> None:
    account_id = await _create_account(tenant)
    async with sessionmaker() as session:
        credential = await session.scalar(
            select(Credential).where(Credential.account_id == uuid.UUID(account_id), Credential.kind == "smtp_password")
        )
        assert credential is not None
        data_key = await session.get_one(DataKey, credential.data_key_id)
    assert data_key.wrapped_key is not None

    foreign = Vault(MasterKeyring.from_strings([generate_master_key()]))
    assert foreign.keyring.primary_id != vault.keyring.primary_id
    with pytest.raises(KeyringError, match="no configured master key opens this data key"):
        foreign.keyring.unwrap(data_key.wrapped_key)
    with pytest.raises(KeyringError):
        await _reveal(sessionmaker, foreign, account_id, "smtp_password", actor=Actor.system("x"), purpose="send")
    # the failed decrypt left no audit row behind (its transaction rolled back)
    assert await _audit_rows(sessionmaker, tenant.workspace_id) == []

    # a random data key does not open the ciphertext either, and the error says nothing about it
    with pytest.raises(KeyringError) as info:
        crypto.decrypt(Fernet.generate_key(), credential.ciphertext)
    assert "s3cret" not in str(info.value)
    # while the genuine path still works
    ok = await _reveal(sessionmaker, vault, account_id, "smtp_password", actor=Actor.system("x"), purpose="send")
    assert ok is not None and ok.reveal() == "s3cret"


# --- GET /v1/audit-log ---------------------------------------------------------------------------------


async def test_audit_log_lists_filters_and_paginates_over_http(
    make_tenant: TenantFactory, sessionmaker: async_sessionmaker[AsyncSession], vault: Vault
) -> None:
    tenant = await make_tenant()
    other = await make_tenant()
    a = await _create_account(tenant)
    b = await _create_account(tenant)
    other_account = await _create_account(other)
    await _reveal(sessionmaker, vault, other_account, "smtp_password", actor=Actor.system("send"), purpose="send")

    me = Actor.api_key(tenant.api_key_id)
    plan: list[tuple[str, str, Actor, str]] = [
        (a, "smtp_password", me, "verify"),
        (a, "imap_password", Actor.system("imap-sync"), "sync"),
        (b, "smtp_password", Actor.system("send"), "send"),
    ]
    marks: list[datetime] = []
    made: list[tuple[str, str, str, str]] = []
    for phase in range(3):
        marks.append(datetime.now(UTC))
        await asyncio.sleep(0.005)
        for acc, kind, actor, purpose in plan[phase:] + plan[:phase]:
            await _reveal(sessionmaker, vault, acc, kind, actor=actor, purpose=purpose)
            made.append((acc, kind, actor.value, purpose))
            await asyncio.sleep(0.003)  # ids are time-ordered to the millisecond
    marks.append(datetime.now(UTC))
    newest_first = list(reversed(made))

    r = await tenant.client.get("/v1/audit-log")
    assert r.status_code == 200, r.text
    page = r.json()
    assert page["next_cursor"] is None
    listed = [(e["account_id"], e["credential"], e["actor"], e["purpose"]) for e in page["data"]]
    assert listed == newest_first
    stamps = [datetime.fromisoformat(e["created_at"]) for e in page["data"]]
    assert stamps == sorted(stamps, reverse=True) and len(set(stamps)) == len(stamps)
    assert set(page["data"][0]) == {
        "id",
        "account_id",
        "webhook_endpoint_id",
        "credential",
        "actor",
        "purpose",
        "created_at",
    }

    async def listing(**params: object) -> list[tuple[str, str, str, str]]:
        resp = await tenant.client.get("/v1/audit-log", params=params)  # type: ignore[arg-type]
        assert resp.status_code == 200, resp.text
        return [(e["account_id"], e["credential"], e["actor"], e["purpose"]) for e in resp.json()["data"]]

    assert await listing(account_id=a) == [m for m in newest_first if m[0] == a]
    assert await listing(account_id=b) == [m for m in newest_first if m[0] == b]
    assert await listing(purpose="sync") == [m for m in newest_first if m[3] == "sync"]
    assert await listing(purpose="key_rotation") == []
    assert await listing(account_id=b, purpose="verify") == []
    assert await listing(account_id=a, purpose="verify") == [m for m in newest_first if m[0] == a and m[3] == "verify"]

    # since is inclusive, until exclusive; each phase made three rows
    assert await listing(since=marks[1].isoformat()) == newest_first[:6]
    assert await listing(until=marks[1].isoformat()) == newest_first[6:]
    assert await listing(since=marks[1].isoformat(), until=marks[2].isoformat()) == newest_first[3:6]
    assert await listing(since=marks[3].isoformat()) == []
    assert await listing(since=marks[1].isoformat(), purpose="send", account_id=b) == [
        m for m in newest_first[:6] if m[0] == b
    ]

    # cursor pagination: pages of 4, 4, 1, nothing lost or repeated
    seen: list[tuple[str, str, str, str]] = []
    sizes: list[int] = []
    cursor: str | None = None
    for _ in range(10):
        params: dict[str, object] = {"limit": 4}
        if cursor:
            params["cursor"] = cursor
        resp = await tenant.client.get("/v1/audit-log", params=params)  # type: ignore[arg-type]
        assert resp.status_code == 200, resp.text
        body = resp.json()
        sizes.append(len(body["data"]))
        seen += [(e["account_id"], e["credential"], e["actor"], e["purpose"]) for e in body["data"]]
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert sizes == [4, 4, 1]
    assert seen == newest_first
    # filters and cursor combine
    first = (await tenant.client.get("/v1/audit-log", params={"account_id": a, "limit": 2})).json()
    rest = (await tenant.client.get("/v1/audit-log", params={"account_id": a, "cursor": first["next_cursor"]})).json()
    assert [e["account_id"] for e in first["data"] + rest["data"]] == [a] * 6
    assert rest["next_cursor"] is None

    bad = await tenant.client.get("/v1/audit-log", params={"cursor": "%%%not-a-cursor"})
    assert bad.status_code == 422 and bad.json()["code"] == "validation_error"
    assert (await tenant.client.get("/v1/audit-log", params={"purpose": "peek"})).status_code == 422
    assert (await tenant.client.get("/v1/audit-log", params={"limit": 0})).status_code == 422

    # the other tenant sees only its own row, and nothing of the first even when asking for it by id
    theirs = (await other.client.get("/v1/audit-log")).json()
    assert [(e["account_id"], e["purpose"]) for e in theirs["data"]] == [(other_account, "send")]
    assert (await other.client.get("/v1/audit-log", params={"account_id": a})).json()["data"] == []
    ids_mine = {e["id"] for e in page["data"]}
    assert ids_mine.isdisjoint({e["id"] for e in theirs["data"]})
    # and the first does not see the other's
    assert await listing(account_id=other_account) == []


async def test_audit_log_requires_an_api_key(http) -> None:  # type: ignore[no-untyped-def]
    r = await http.get("/v1/audit-log")
    assert r.status_code == 401
    assert r.json()["code"] == "auth.invalid_api_key"
