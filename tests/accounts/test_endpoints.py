"""Email-account records over HTTP: create, read, list, update, verify, delete, and every bad input.

Every account connected here is a real mailbox of the mail world (``tests/servers/mail_world.py``):
creating it runs the live checks, and a PATCH of its connection settings runs them again."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nimbus_api.models import Credential, CredentialAccess, EmailAccount
from tests.conftest import Tenant, account_payload, change_smtp_password
from tests.servers.mail_world import MailWorld
from tests.servers.smtp_server import TestSmtpServer

CHECKS = ["dns", "smtp", "imap", "roundtrip"]


@pytest.fixture
async def smtps(mail_world: MailWorld) -> AsyncIterator[TestSmtpServer]:
    """A second SMTP server of the mail world, implicit TLS (SMTPS) on its own port: same mailboxes
    (the users dict is shared, not copied), same delivery into Dovecot."""
    server = TestSmtpServer(users={}, ssl_context=mail_world.certs.server_context(), deliver=mail_world._deliver)
    server.users = mail_world.smtp.users
    await server.start()
    yield server
    await server.stop()


async def _count_accounts(sessionmaker: async_sessionmaker[AsyncSession], tenant: Tenant) -> int:
    async with sessionmaker() as session:
        return (
            await session.scalar(
                select(func.count()).select_from(EmailAccount).where(EmailAccount.workspace_id == tenant.workspace_id)
            )
            or 0
        )


async def test_create_returns_account_with_new_inbox_health_and_no_secret(
    tenant: Tenant, mail_world: MailWorld
) -> None:
    body = account_payload(email="Ada@Example.COM", label="Sales 1", daily_send_limit=None)
    r = await tenant.client.post("/v1/email-accounts", json=body)
    assert r.status_code == 201, r.text
    account = r.json()
    assert account["email"] == "Ada@example.com"
    assert account["domain"] == "example.com"
    assert account["smtp"] == {
        "host": "smtp.example.test",
        "port": mail_world.smtp.port,
        "mode": "starttls",
        "username": "ada@example.com",
        "password_set": True,
        "allow_plaintext_auth": False,
    }
    assert account["imap"] == {
        "host": "imap.example.test",
        "port": mail_world.dovecot.ports.imaps,
        "mode": "ssl",
        "username": "ada@example.com",
        "folder": "INBOX",
        "password_set": True,
        "allow_plaintext_auth": False,
    }
    assert "s3cret" not in r.text
    # the checks that let it in are stored with it
    verification = account["last_verification"]
    assert (verification["status"], verification["code"], verification["check"]) == ("passed", None, None)
    assert [(c["name"], c["status"]) for c in verification["checks"]] == [(n, "passed") for n in CHECKS]
    assert account["verification_locked_at"] is None
    assert account["daily_send_limit"] == 100
    assert account["sync_interval_seconds"] == 120
    assert account["campaign_types"] == ["cold", "nurture"]
    assert (account["overall_score"], account["warmup_progress"], account["current_stage"]) == (50, 0, 0)
    assert (account["bounce_rate_7d"], account["complaint_rate_7d"]) == (0, 0)
    assert account["cooldown_until"] is None and account["disabled_at"] is None and account["disabled_reason"] is None

    got = await tenant.client.get(f"/v1/email-accounts/{account['id']}")
    assert got.status_code == 200 and got.json() == account


async def test_relay_without_auth_and_account_without_imap(tenant: Tenant, mail_world: MailWorld) -> None:
    # The world's SMTP relays without AUTH in cleartext: no credentials, mode "none", no IMAP.
    body = account_payload(smtp={"host": "mail.example.test", "port": mail_world.smtp.port, "mode": "none"}, imap=None)
    sent_before = len(mail_world.smtp.messages)
    r = await tenant.client.post("/v1/email-accounts", json=body)
    assert r.status_code == 201, r.text
    assert r.json()["smtp"]["username"] is None and r.json()["smtp"]["password_set"] is False
    assert r.json()["imap"] is None
    # the test message was still sent; IMAP and the roundtrip were skipped, with a warning
    assert [m.rcpt_tos for m in mail_world.smtp.messages[sent_before:]] == [[body["email"]]]
    checks = {c["name"]: c for c in r.json()["last_verification"]["checks"]}
    assert [checks[n]["status"] for n in CHECKS] == ["passed", "passed", "skipped", "skipped"]
    assert any("replies and bounces" in w for w in checks["imap"]["warnings"]), checks["imap"]


async def test_provider_preset_suggests_daily_limit(tenant: Tenant) -> None:
    presets = (await tenant.client.get("/v1/providers")).json()
    ids = {p["id"] for p in presets}
    assert {"amazon_ses", "sendgrid", "postmark", "mailgun", "smtp2go", "office365", "gmail", "google_workspace"} <= ids
    (gmail,) = [p for p in presets if p["id"] == "gmail"]
    assert gmail["daily_send_limit"] == 20  # consumer Gmail starts at 20 a day

    # provider "gmail" on the mail world's hosts: the preset gives the limit, not the hosts
    r = await tenant.client.post("/v1/email-accounts", json=account_payload(provider="gmail"))
    assert r.status_code == 201, r.text
    assert (r.json()["provider"], r.json()["daily_send_limit"]) == ("gmail", 20)
    # an explicit limit wins over the preset
    r = await tenant.client.post("/v1/email-accounts", json=account_payload(provider="gmail", daily_send_limit=35))
    assert r.status_code == 201, r.text
    assert r.json()["daily_send_limit"] == 35


async def test_accounts_on_one_domain_share_the_domain_record(tenant: Tenant) -> None:
    a = (await tenant.client.post("/v1/email-accounts", json=account_payload(email="a@shared.example"))).json()
    b = (await tenant.client.post("/v1/email-accounts", json=account_payload(email="b@Shared.Example"))).json()
    assert a["domain_id"] == b["domain_id"]
    domain = (await tenant.client.get(f"/v1/domains/{a['domain_id']}")).json()
    assert domain["name"] == "shared.example" and domain["account_count"] == 2
    listed = (await tenant.client.get("/v1/domains", params={"name": "shared.example"})).json()
    assert [d["id"] for d in listed["data"]] == [a["domain_id"]]


async def test_duplicate_address_is_409(tenant: Tenant) -> None:
    assert (
        await tenant.client.post("/v1/email-accounts", json=account_payload(email="dup@x.example"))
    ).status_code == 201
    r = await tenant.client.post("/v1/email-accounts", json=account_payload(email="DUP@x.example"))
    assert r.status_code == 409
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["code"] == "email_account.exists"


BAD_INPUTS = [
    ("malformed address", {"email": "not-an-address"}, "email"),
    ("address with CRLF", {"email": "a@example.com\r\nBcc: x@y.z"}, "email"),
    ("port out of range", {"smtp": {"host": "smtp.example.com", "port": 70000, "mode": "starttls"}}, "smtp.port"),
    ("port zero", {"smtp": {"host": "smtp.example.com", "port": 0, "mode": "starttls"}}, "smtp.port"),
    ("465 with starttls", {"smtp": {"host": "smtp.example.com", "port": 465, "mode": "starttls"}}, "smtp.mode"),
    ("587 with ssl", {"smtp": {"host": "smtp.example.com", "port": 587, "mode": "ssl"}}, "smtp.mode"),
    (
        "993 with starttls",
        {"imap": {"host": "i.example.com", "port": 993, "mode": "starttls", "username": "u", "password": "p"}},
        "imap.mode",
    ),
    ("unknown mode", {"smtp": {"host": "smtp.example.com", "port": 2525, "mode": "tls"}}, "smtp.mode"),
    ("CR in from_name", {"from_name": "Ada\rBcc: victim@example.com"}, "from_name"),
    ("LF in label", {"label": "a\nb"}, "label"),
    ("LF in reply_to", {"reply_to": "a@example.com\nBcc: v@example.com"}, "reply_to"),
    ("bad reply_to", {"reply_to": "nope"}, "reply_to"),
    ("unknown top-level field", {"colour": "blue"}, "colour"),
    ("unknown smtp field", {"smtp": {"host": "h.example", "port": 25, "mode": "none", "tls": True}}, "smtp.tls"),
    ("bad host", {"smtp": {"host": "not a host", "port": 25, "mode": "none"}}, "smtp.host"),
    ("password without username", {"smtp": {"host": "h.example", "port": 25, "mode": "none", "password": "p"}}, "smtp"),
    (
        "imap without password",
        {"imap": {"host": "i.example", "port": 993, "mode": "ssl", "username": "u"}},
        "imap.password",
    ),
    (
        "LF in imap folder",
        {
            "imap": {
                "host": "i.example",
                "port": 993,
                "mode": "ssl",
                "username": "u",
                "password": "p",
                "folder": "INBOX\r\nA1 DELETE INBOX",
            }
        },
        "imap.folder",
    ),
    ("sync interval too short", {"sync_interval_seconds": 10}, "sync_interval_seconds"),
    ("sync interval too long", {"sync_interval_seconds": 601}, "sync_interval_seconds"),
    ("unknown campaign type", {"campaign_types": ["spam"]}, "campaign_types.0"),
    ("empty campaign types", {"campaign_types": []}, "campaign_types"),
    ("unknown provider", {"provider": "hotmail-ish"}, "provider"),
    ("bad dkim selector", {"dkim_selector": "a.b"}, "dkim_selector"),
    ("daily limit zero", {"daily_send_limit": 0}, "daily_send_limit"),
]


@pytest.mark.parametrize(("case", "override", "field"), BAD_INPUTS, ids=[c[0] for c in BAD_INPUTS])
async def test_bad_input_is_422_naming_the_field_and_saves_nothing(
    tenant: Tenant,
    sessionmaker: async_sessionmaker[AsyncSession],
    mail_world: MailWorld,
    case: str,
    override: dict[str, object],
    field: str,
) -> None:
    connections = mail_world.smtp.connections_total
    r = await tenant.client.post("/v1/email-accounts", json=account_payload(**override))
    assert r.status_code == 422, r.text
    assert r.headers["content-type"] == "application/problem+json"
    problem = r.json()
    assert problem["code"] == "validation_error"
    assert field in [e["field"] for e in problem["errors"]], problem
    assert "s3cret" not in r.text
    assert await _count_accounts(sessionmaker, tenant) == 0
    # refused before verification: no mail server was contacted
    assert mail_world.smtp.connections_total == connections


async def test_malformed_json_is_400(tenant: Tenant) -> None:
    r = await tenant.client.post(
        "/v1/email-accounts", content=b'{"email": ', headers={"content-type": "application/json"}
    )
    assert r.status_code == 400 and r.json()["code"] == "request.malformed"


async def _smtp_ciphertext(sessionmaker: async_sessionmaker[AsyncSession], account_id: str) -> bytes | None:
    async with sessionmaker() as session:
        return await session.scalar(
            select(Credential.ciphertext).where(Credential.account_id == account_id, Credential.kind == "smtp_password")
        )


async def test_update_fields_pause_resume_and_reject_bad_patch(
    tenant: Tenant, sessionmaker: async_sessionmaker[AsyncSession], mail_world: MailWorld, smtps: TestSmtpServer
) -> None:
    body = account_payload()
    login = str(body["email"]).lower()
    account = (await tenant.client.post("/v1/email-accounts", json=body)).json()
    url = f"/v1/email-accounts/{account['id']}"
    connections = mail_world.smtp.connections_total

    # Fields that are not connection settings change without a new verification.
    r = await tenant.client.patch(url, json={"is_active": False, "label": "paused one", "daily_send_limit": 40})
    assert r.status_code == 200, r.text
    assert (r.json()["is_active"], r.json()["label"], r.json()["daily_send_limit"]) == (False, "paused one", 40)
    assert r.json()["last_verification"] == account["last_verification"]
    assert [
        a["id"] for a in (await tenant.client.get("/v1/email-accounts", params={"is_active": False})).json()["data"]
    ] == [account["id"]]
    assert (await tenant.client.patch(url, json={"is_active": True})).json()["is_active"] is True
    assert mail_world.smtp.connections_total == connections

    # A port change alone must still agree with the stored mode (starttls): 465 is refused.
    r = await tenant.client.patch(url, json={"smtp": {"port": 465}})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "smtp.mode"
    for bad in ({"from_name": "x\ny"}, {"is_active": None}, {"nope": 1}, {"smtp": None}, {"smtp": {"port": 0}}):
        r = await tenant.client.patch(url, json=bad)
        assert r.status_code == 422, (bad, r.text)
        assert r.json()["code"] == "validation_error"
    assert mail_world.smtp.connections_total == connections, "refused before verification"
    assert (await tenant.client.get(url)).json()["smtp"]["port"] == mail_world.smtp.port

    # Changing host, port and mode together works after the new server passed; the password is kept.
    r = await tenant.client.patch(url, json={"smtp": {"host": "mail.example.test", "port": smtps.port, "mode": "ssl"}})
    assert r.status_code == 200, r.text
    assert r.json()["smtp"] == {
        "host": "mail.example.test",
        "port": smtps.port,
        "mode": "ssl",
        "username": login,
        "password_set": True,
        "allow_plaintext_auth": False,
    }
    assert login in [who for _, who in smtps.auth_attempts], "the new server was logged into"
    assert [m.rcpt_tos for m in smtps.messages] == [[body["email"]]], "and sent the test message"
    verified = r.json()["last_verification"]
    assert verified["status"] == "passed" and verified["verified_at"] > account["last_verification"]["verified_at"]

    # A change that fails its checks answers 422 with them and changes nothing.
    before = await _smtp_ciphertext(sessionmaker, account["id"])
    saved = (await tenant.client.get(url)).json()
    r = await tenant.client.patch(url, json={"smtp": {"password": "wrong-pass"}})
    assert r.status_code == 422, r.text
    problem = r.json()
    assert (problem["code"], problem["check"]) == ("smtp.auth_failed", "smtp")
    assert [c["name"] for c in problem["checks"]] == CHECKS
    assert "wrong-pass" not in r.text
    assert (await tenant.client.get(url)).json() == saved
    assert await _smtp_ciphertext(sessionmaker, account["id"]) == before

    # A new password the server accepts replaces the stored one.
    change_smtp_password(login, "new-pass")
    r = await tenant.client.patch(url, json={"smtp": {"password": "new-pass"}})
    assert r.status_code == 200, r.text
    after = await _smtp_ciphertext(sessionmaker, account["id"])
    assert after is not None and before != after

    # Removing IMAP deletes its secret.
    r = await tenant.client.patch(url, json={"imap": None})
    assert r.status_code == 200 and r.json()["imap"] is None
    assert [c["status"] for c in r.json()["last_verification"]["checks"]] == ["passed", "passed", "skipped", "skipped"]
    async with sessionmaker() as session:
        kinds = set(await session.scalars(select(Credential.kind).where(Credential.account_id == account["id"])))
    assert kinds == {"smtp_password"}
    # Adding IMAP back needs the whole section.
    r = await tenant.client.patch(url, json={"imap": {"host": "imap.example.test"}})
    assert r.status_code == 422
    assert {e["field"] for e in r.json()["errors"]} >= {"imap.port", "imap.mode", "imap.username", "imap.password"}


async def test_verify_reruns_the_checks_on_the_stored_settings_and_stores_the_result(
    tenant: Tenant, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    body = account_payload()
    account = (await tenant.client.post("/v1/email-accounts", json=body)).json()
    url = f"/v1/email-accounts/{account['id']}"

    r = await tenant.client.post(f"{url}/verify")
    assert r.status_code == 200, r.text
    result = r.json()
    assert (result["status"], result["code"]) == ("passed", None)
    assert [(c["name"], c["status"]) for c in result["checks"]] == [(n, "passed") for n in CHECKS]
    assert result["verified_at"] > account["last_verification"]["verified_at"]
    assert (await tenant.client.get(url)).json()["last_verification"] == result
    # the stored secrets were decrypted for it, each decrypt audited as `verify`
    async with sessionmaker() as session:
        audited = list(
            await session.execute(
                select(CredentialAccess.credential_kind, CredentialAccess.purpose).where(
                    CredentialAccess.account_id == account["id"]
                )
            )
        )
    assert sorted(tuple(row) for row in audited) == [("imap_password", "verify"), ("smtp_password", "verify")]

    # The server stops accepting the stored password: verify still answers 200, with the failure stored.
    change_smtp_password(str(body["email"]), "rotated-elsewhere")
    r = await tenant.client.post(f"{url}/verify")
    assert r.status_code == 200, r.text
    failed = r.json()
    assert (failed["status"], failed["code"], failed["check"]) == ("failed", "smtp.auth_failed", "smtp")
    assert {c["name"]: c["status"] for c in failed["checks"]}["roundtrip"] == "skipped"
    stored = (await tenant.client.get(url)).json()
    assert stored["last_verification"] == failed
    assert stored["smtp"] == account["smtp"], "a failed verify changes no setting"
    assert "s3cret" not in r.text

    missing = await tenant.client.post("/v1/email-accounts/00000000-0000-0000-0000-000000000000/verify")
    assert missing.status_code == 404 and missing.json()["code"] == "email_account.not_found"


async def test_delete_removes_account_and_secrets(
    tenant: Tenant, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    account = (await tenant.client.post("/v1/email-accounts", json=account_payload())).json()
    r = await tenant.client.delete(f"/v1/email-accounts/{account['id']}")
    assert r.status_code == 204
    assert (await tenant.client.get(f"/v1/email-accounts/{account['id']}")).status_code == 404
    assert (await tenant.client.delete(f"/v1/email-accounts/{account['id']}")).status_code == 404
    async with sessionmaker() as session:
        assert (
            await session.scalar(
                select(func.count()).select_from(Credential).where(Credential.account_id == account["id"])
            )
            == 0
        )


async def test_list_paginates_with_cursor_and_filters(tenant: Tenant) -> None:
    created = []
    for i in range(5):
        body = account_payload(
            email=f"p{i}@page{i % 2}.example", label=f"team-{i % 2}", campaign_types=["cold"] if i < 2 else ["nurture"]
        )
        created.append((await tenant.client.post("/v1/email-accounts", json=body)).json()["id"])
    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        page = (await tenant.client.get("/v1/email-accounts", params=params)).json()
        assert len(page["data"]) <= 2
        seen += [a["id"] for a in page["data"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == list(reversed(created))
    by_domain = (await tenant.client.get("/v1/email-accounts", params={"domain": "page1.example"})).json()["data"]
    assert {a["email"] for a in by_domain} == {"p1@page1.example", "p3@page1.example"}
    cold = (await tenant.client.get("/v1/email-accounts", params={"campaign_type": "cold"})).json()["data"]
    assert {a["email"] for a in cold} == {"p0@page0.example", "p1@page1.example"}
    q = (await tenant.client.get("/v1/email-accounts", params={"q": "team-0"})).json()["data"]
    assert len(q) == 3
    bad = await tenant.client.get("/v1/email-accounts", params={"cursor": "!!!"})
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "cursor"
    assert (await tenant.client.get("/v1/email-accounts", params={"limit": 1000})).status_code == 422


async def test_requests_without_a_valid_key_are_401(http, tenant: Tenant) -> None:  # type: ignore[no-untyped-def]
    for headers in ({}, {"Authorization": "Bearer nmb_nope"}, {"Authorization": "Basic abc"}):
        r = await http.get("/v1/email-accounts", headers=headers)
        assert r.status_code == 401, headers
        assert r.json()["code"] == "auth.invalid_api_key"
        assert r.headers["www-authenticate"] == "Bearer"
