"""A database dump alone reveals no secret: not the mailbox passwords, in any usual encoding, nor the keys.

The dump is taken twice: with ``pg_dump`` (when its version can dump the server), and by selecting every
column of every table, cast to text, with bytea also as hex, escape and raw bytes.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import re
import secrets
import shutil
import subprocess
import uuid
from collections.abc import Iterable
from dataclasses import dataclass

import asyncpg
import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nimbus_api.credentials.vault import Actor, Vault
from nimbus_api.models import DataKey, OAuthAttempt
from tests.conftest import TenantFactory, account_payload, change_smtp_password
from tests.oauth_flow.conftest import FRONTEND_URL, connected, issued_tokens
from tests.servers.mail_world import MailWorld
from tests.servers.oauth_server import OAuthTestServer


def _b64_cores(raw: bytes) -> set[bytes]:
    """Base64 fragments that appear wherever ``raw`` is embedded in a larger base64 blob.

    For each of the three alignments (0, 1, 2 bytes before it), encode with filler bytes in front and keep
    only the characters that depend on ``raw`` alone: drop the leading ones that mix in the filler and the
    trailing one that would mix in whatever follows.
    """
    cores: set[bytes] = set()
    for offset in range(3):
        encoded = base64.b64encode(b"\0" * offset + raw).rstrip(b"=")
        skip = (0, 2, 3)[offset]
        end = len(encoded) - (1 if (offset + len(raw)) % 3 else 0)
        core = encoded[skip:end]
        if len(core) >= 8:
            cores.add(core)
            cores.add(core.translate(bytes.maketrans(b"+/", b"-_")))
    return cores


def needles(secret: str | bytes) -> dict[str, bytes]:
    """Every form of ``secret`` a dump must not contain, named for the failure message."""
    raw = secret.encode() if isinstance(secret, str) else secret
    std, url = base64.b64encode(raw), base64.urlsafe_b64encode(raw)
    found: dict[str, bytes] = {
        "plain": raw,
        "hex": binascii.hexlify(raw),
        "HEX": binascii.hexlify(raw).upper(),
        "base64": std,
        "base64-nopad": std.rstrip(b"="),
        "base64url": url,
        "base64url-nopad": url.rstrip(b"="),
    }
    for n, core in enumerate(sorted(_b64_cores(raw))):
        found[f"base64-fragment-{n}"] = core
    return found


def assert_absent(haystack: bytes, secrets_by_name: dict[str, str | bytes], where: str) -> None:
    leaks = [
        f"{name} as {form}"
        for name, secret in secrets_by_name.items()
        for form, needle in needles(secret).items()
        if needle in haystack
    ]
    assert not leaks, f"{where} reveals: {leaks}"


def test_needles_find_a_secret_embedded_in_base64_at_any_alignment() -> None:
    """Self-check of the detector, so that a passing dump test means something."""
    secret = b"correct horse battery staple"
    for prefix in (b"", b"x", b"xy", b"xyz", b"\xff\xfe"):
        for suffix in (b"", b"!", b"!?"):
            blob = prefix + secret + suffix
            for text in (base64.b64encode(blob), base64.urlsafe_b64encode(blob).rstrip(b"=")):
                with pytest.raises(AssertionError, match="reveals"):
                    assert_absent(b"junk " + text + b" junk", {"s": secret}, "probe")
    with pytest.raises(AssertionError):
        assert_absent(b"\\x" + binascii.hexlify(secret), {"s": secret}, "probe")
    assert_absent(base64.b64encode(b"something else entirely"), {"s": secret}, "probe")


# --- fixture data ---------------------------------------------------------------------------------------


@dataclass
class Planted:
    passwords: dict[str, str | bytes]
    data_keys: dict[str, bytes]


@pytest.fixture
async def planted(
    make_tenant: TenantFactory,
    sessionmaker: async_sessionmaker[AsyncSession],
    vault: Vault,
    http: httpx.AsyncClient,
    oauth_server: OAuthTestServer,
    mail_world: MailWorld,
) -> Planted:
    """Two workspaces, several accounts with SMTP and IMAP passwords, set on create and on PATCH, created
    with an Idempotency-Key (its stored response is in the database too), and decrypted once (audit rows).
    The passwords are the mailboxes' real ones in the mail world: each create and PATCH verified them, so
    the stored verification results are in the dump too."""
    passwords: dict[str, str | bytes] = {}
    workspace_ids: list[uuid.UUID] = []
    for t in range(2):
        tenant = await make_tenant()
        workspace_ids.append(tenant.workspace_id)
        for n in range(3):
            tag = secrets.token_hex(6)
            smtp_pw, imap_pw = f"DumpSmtp-{tag}-Pass!", f"DumpImap-{tag}-Pass?"
            body = account_payload(smtp_password=smtp_pw, imap_password=imap_pw)
            r = await tenant.client.post(
                "/v1/email-accounts", json=body, headers={"Idempotency-Key": f"dump-{t}-{n}-{tag}"}
            )
            assert r.status_code == 201, r.text
            account_id = r.json()["id"]
            passwords[f"ws{t}.acc{n}.smtp"] = smtp_pw
            passwords[f"ws{t}.acc{n}.imap"] = imap_pw
            if n == 0:
                replaced = f"DumpPatched-{tag}-Pass"
                change_smtp_password(str(body["email"]), replaced)
                r = await tenant.client.patch(f"/v1/email-accounts/{account_id}", json={"smtp": {"password": replaced}})
                assert r.status_code == 200, r.text
                passwords[f"ws{t}.acc{n}.smtp-patched"] = replaced
            async with sessionmaker() as session, session.begin():
                secret = await vault.reveal_for_account(
                    session, uuid.UUID(account_id), "imap_password", actor=Actor.system("send"), purpose="send"
                )
            assert secret is not None and secret.reveal() == imap_pw
        # an OAuth account, connected through the callback and refreshed once: its tokens are secrets too
        email, oauth_account = await connected(tenant, http, oauth_server, mail_world)
        oauth_server.expire_access_tokens()
        r = await tenant.client.post(f"/v1/email-accounts/{oauth_account}/verify")
        assert r.status_code == 200 and r.json()["status"] == "passed", r.text
        tokens = sorted(issued_tokens(oauth_server, email))
        assert len(tokens) == 3, "two access tokens and the refresh token"
        passwords |= {f"ws{t}.oauth{n}": token for n, token in enumerate(tokens)}
        # a Microsoft one, refreshed once: its refresh token rotated (both stored in turn)
        ms_email, ms_account = await connected(tenant, http, oauth_server, mail_world, provider="microsoft")
        oauth_server.expire_access_tokens()
        r = await tenant.client.post(f"/v1/email-accounts/{ms_account}/verify")
        assert r.status_code == 200 and r.json()["status"] == "passed", r.text
        ms_tokens = sorted(issued_tokens(oauth_server, ms_email))
        assert len(ms_tokens) == 4, "two access tokens and two refresh tokens"
        passwords |= {f"ws{t}.microsoft{n}": token for n, token in enumerate(ms_tokens)}
        # a connect under way: its PKCE verifier is sealed in the attempt's row
        r = await tenant.client.post("/v1/oauth/google/authorize", json={"frontend_url": FRONTEND_URL})
        assert r.status_code == 201, r.text
        async with sessionmaker() as session:
            attempt = await session.get_one(OAuthAttempt, uuid.UUID(r.json()["attempt_id"]))
            verifier = await vault.unseal(session, attempt.data_key_id, attempt.verifier_ciphertext)
        passwords[f"ws{t}.pkce_verifier"] = verifier.reveal()
        # a webhook endpoint whose secret was rotated (both versions stored), with a test delivery recorded
        hook = await tenant.client.post("/v1/webhook-endpoints", json={"url": "https://mail.example.test/hooks"})
        assert hook.status_code == 201, hook.text
        rotated = await tenant.client.post(f"/v1/webhook-endpoints/{hook.json()['id']}/rotate-secret")
        tested = await tenant.client.post(f"/v1/webhook-endpoints/{hook.json()['id']}/test")
        assert rotated.status_code == 200 and tested.status_code == 200, (rotated.text, tested.text)
        for n, shown in enumerate((hook.json()["secret"], rotated.json()["secret"])):
            passwords[f"ws{t}.webhook{n}"] = shown
            passwords[f"ws{t}.webhook{n}.bytes"] = base64.b64decode(shown.removeprefix("whsec_"))
    async with sessionmaker() as session:
        keys = list(
            await session.scalars(
                select(DataKey).where(DataKey.workspace_id.in_(workspace_ids), DataKey.wrapped_key.is_not(None))
            )
        )
    return Planted(passwords=passwords, data_keys={f"data key {k.id}": vault.material(k) for k in keys})


def _key_secrets(master_key: str, planted: Planted) -> dict[str, str | bytes]:
    """The master key as configured and as raw key bytes, and every unwrapped data key (both forms)."""
    out: dict[str, str | bytes] = {
        "master key": master_key,
        "master key (raw)": base64.urlsafe_b64decode(master_key),
    }
    for name, material in planted.data_keys.items():
        out[name] = material
        out[f"{name} (raw)"] = base64.urlsafe_b64decode(material)
    return out


# --- the dumps ------------------------------------------------------------------------------------------


def _major(version: str) -> int:
    """Major version of ``SHOW server_version`` ("15.4 (Debian ...)") or of ``pg_dump --version``."""
    match = re.search(r"(?:PostgreSQL\)\s*)?(\d+)", version)
    assert match, version
    return int(match.group(1))


async def test_pg_dump_reveals_no_secret(database_url: str, master_key: str, planted: Planted) -> None:
    pg_dump = shutil.which("pg_dump")
    if pg_dump is None:
        pytest.skip("pg_dump is not installed (the SELECT dump below covers the same ground)")
    version = await asyncio.to_thread(subprocess.run, [pg_dump, "--version"], capture_output=True, text=True)
    client = version.stdout
    conn = await asyncpg.connect(database_url)
    try:
        server = await conn.fetchval("SHOW server_version")
    finally:
        await conn.close()
    if _major(client) < _major(server):
        pytest.skip(f"pg_dump {client.strip()} is older than the server ({server}); see the SELECT dump")

    out = await asyncio.to_thread(
        subprocess.run,
        [pg_dump, "--no-owner", "--no-privileges", f"--dbname={database_url}"],
        capture_output=True,
        timeout=60,
        check=False,
    )
    if out.returncode != 0 and b"version mismatch" in out.stderr:
        pytest.skip(out.stderr.decode(errors="replace"))
    assert out.returncode == 0, out.stderr.decode(errors="replace")
    dump = out.stdout
    # the dump did capture the data: ciphertext rows, the idempotency records, the audit rows
    assert b"COPY public.credentials " in dump and b"COPY public.data_keys " in dump
    assert b"COPY public.credential_access_log " in dump and b"COPY public.idempotency_keys " in dump
    assert b"password_set" in dump, "stored idempotent responses are in the dump"
    assert b"roundtrip" in dump, "stored verification results are in the dump"

    assert_absent(dump, dict(planted.passwords), "pg_dump")
    assert_absent(dump, _key_secrets(master_key, planted), "pg_dump")


async def test_select_of_every_column_reveals_no_secret(database_url: str, master_key: str, planted: Planted) -> None:
    conn = await asyncpg.connect(database_url)
    chunks: list[bytes] = []
    try:
        columns = await conn.fetch(
            """
            SELECT table_name, column_name, data_type
            FROM information_schema.columns
            WHERE table_schema = 'public'
            ORDER BY table_name, ordinal_position
            """
        )
        tables: dict[str, list[tuple[str, str]]] = {}
        for row in columns:
            tables.setdefault(row["table_name"], []).append((row["column_name"], row["data_type"]))
        assert {"credentials", "data_keys", "email_accounts", "credential_access_log", "idempotency_keys"} <= set(
            tables
        )
        rows_seen = 0
        for table, cols in tables.items():
            selected: list[str] = []
            for name, data_type in cols:
                ident = '"' + name.replace('"', '""') + '"'
                selected.append(f"{ident}::text")
                if data_type == "bytea":
                    selected += [f"encode({ident}, 'hex')", f"encode({ident}, 'escape')", ident]
            quoted = '"' + table.replace('"', '""') + '"'
            for record in await conn.fetch(f"SELECT {', '.join(selected)} FROM public.{quoted}"):
                rows_seen += 1
                for value in record.values():
                    if value is None:
                        continue
                    chunks.append(value if isinstance(value, bytes) else str(value).encode())
        assert rows_seen > 0
    finally:
        await conn.close()
    dump = b"\n".join(chunks)
    assert b"password_set" in dump and b"roundtrip" in dump

    assert_absent(dump, dict(planted.passwords), "SELECT dump")
    assert_absent(dump, _key_secrets(master_key, planted), "SELECT dump")
    # the ciphertext itself is there, so the test did look at the secrets' rows
    assert _any_fernet_token(chunks)


def _any_fernet_token(chunks: Iterable[bytes]) -> bool:
    return any(chunk.startswith(b"gAAAAA") for chunk in chunks)
