"""Email-account records over HTTP: create, read, list, update, delete, and every bad input."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nimbus_api.models import Credential, EmailAccount
from tests.conftest import Tenant, account_payload


async def _count_accounts(sessionmaker: async_sessionmaker[AsyncSession], tenant: Tenant) -> int:
    async with sessionmaker() as session:
        return (
            await session.scalar(
                select(func.count()).select_from(EmailAccount).where(EmailAccount.workspace_id == tenant.workspace_id)
            )
            or 0
        )


async def test_create_returns_account_with_new_inbox_health_and_no_secret(tenant: Tenant) -> None:
    body = account_payload(email="Ada@Example.COM", label="Sales 1", daily_send_limit=None)
    r = await tenant.client.post("/v1/email-accounts", json=body)
    assert r.status_code == 201, r.text
    account = r.json()
    assert account["email"] == "Ada@example.com"
    assert account["domain"] == "example.com"
    assert account["smtp"] == {
        "host": "smtp.example.com",
        "port": 587,
        "mode": "starttls",
        "username": "ada",
        "password_set": True,
    }
    assert account["imap"]["password_set"] is True and account["imap"]["folder"] == "INBOX"
    assert "s3cret" not in r.text
    assert account["daily_send_limit"] == 100
    assert account["sync_interval_seconds"] == 120
    assert account["campaign_types"] == ["cold", "nurture"]
    assert (account["overall_score"], account["warmup_progress"], account["current_stage"]) == (50, 0, 0)
    assert (account["bounce_rate_7d"], account["complaint_rate_7d"]) == (0, 0)
    assert account["cooldown_until"] is None and account["disabled_at"] is None and account["disabled_reason"] is None

    got = await tenant.client.get(f"/v1/email-accounts/{account['id']}")
    assert got.status_code == 200 and got.json() == account


async def test_relay_without_auth_and_account_without_imap(tenant: Tenant) -> None:
    body = account_payload(smtp={"host": "relay.internal.example", "port": 25, "mode": "none"}, imap=None)
    r = await tenant.client.post("/v1/email-accounts", json=body)
    assert r.status_code == 201, r.text
    assert r.json()["smtp"]["username"] is None and r.json()["smtp"]["password_set"] is False
    assert r.json()["imap"] is None


async def test_provider_preset_suggests_daily_limit(tenant: Tenant) -> None:
    body = account_payload(
        provider="gmail",
        smtp={"host": "smtp.gmail.com", "port": 465, "mode": "ssl", "username": "a@gmail.com", "password": "x"},
    )
    r = await tenant.client.post("/v1/email-accounts", json=body)
    assert r.status_code == 201, r.text
    assert r.json()["daily_send_limit"] == 50
    presets = (await tenant.client.get("/v1/providers")).json()
    ids = {p["id"] for p in presets}
    assert {"amazon_ses", "sendgrid", "postmark", "mailgun", "smtp2go", "office365", "gmail", "google_workspace"} <= ids


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
    tenant: Tenant, sessionmaker: async_sessionmaker[AsyncSession], case: str, override: dict[str, object], field: str
) -> None:
    r = await tenant.client.post("/v1/email-accounts", json=account_payload(**override))
    assert r.status_code == 422, r.text
    assert r.headers["content-type"] == "application/problem+json"
    problem = r.json()
    assert problem["code"] == "validation_error"
    assert field in [e["field"] for e in problem["errors"]], problem
    assert "s3cret" not in r.text
    assert await _count_accounts(sessionmaker, tenant) == 0


async def test_malformed_json_is_422(tenant: Tenant) -> None:
    r = await tenant.client.post(
        "/v1/email-accounts", content=b'{"email": ', headers={"content-type": "application/json"}
    )
    assert r.status_code == 422 and r.json()["code"] == "validation_error"


async def test_update_fields_pause_resume_and_reject_bad_patch(
    tenant: Tenant, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    account = (await tenant.client.post("/v1/email-accounts", json=account_payload())).json()
    url = f"/v1/email-accounts/{account['id']}"

    r = await tenant.client.patch(url, json={"is_active": False, "label": "paused one", "daily_send_limit": 40})
    assert r.status_code == 200, r.text
    assert (r.json()["is_active"], r.json()["label"], r.json()["daily_send_limit"]) == (False, "paused one", 40)
    assert [
        a["id"] for a in (await tenant.client.get("/v1/email-accounts", params={"is_active": False})).json()["data"]
    ] == [account["id"]]
    assert (await tenant.client.patch(url, json={"is_active": True})).json()["is_active"] is True

    # A port change alone must still agree with the stored mode (starttls): 465 is refused.
    r = await tenant.client.patch(url, json={"smtp": {"port": 465}})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "smtp.mode"
    for bad in ({"from_name": "x\ny"}, {"is_active": None}, {"nope": 1}, {"smtp": None}, {"smtp": {"port": 0}}):
        r = await tenant.client.patch(url, json=bad)
        assert r.status_code == 422, (bad, r.text)
    assert (await tenant.client.get(url)).json()["smtp"]["port"] == 587

    # Changing host and mode together works; the password is kept unless a new one is sent.
    r = await tenant.client.patch(url, json={"smtp": {"host": "smtp2.example.com", "port": 465, "mode": "ssl"}})
    assert r.status_code == 200, r.text
    assert r.json()["smtp"] == {
        "host": "smtp2.example.com",
        "port": 465,
        "mode": "ssl",
        "username": "ada",
        "password_set": True,
    }
    async with sessionmaker() as session:
        before = await session.scalar(
            select(Credential.ciphertext).where(
                Credential.account_id == account["id"], Credential.kind == "smtp_password"
            )
        )
    r = await tenant.client.patch(url, json={"smtp": {"password": "new-pass"}})
    assert r.status_code == 200
    async with sessionmaker() as session:
        after = await session.scalar(
            select(Credential.ciphertext).where(
                Credential.account_id == account["id"], Credential.kind == "smtp_password"
            )
        )
    assert before != after

    # Removing IMAP deletes its secret.
    r = await tenant.client.patch(url, json={"imap": None})
    assert r.status_code == 200 and r.json()["imap"] is None
    async with sessionmaker() as session:
        kinds = set(await session.scalars(select(Credential.kind).where(Credential.account_id == account["id"])))
    assert kinds == {"smtp_password"}
    # Adding IMAP back needs the whole section.
    r = await tenant.client.patch(url, json={"imap": {"host": "imap.example.com"}})
    assert r.status_code == 422
    assert {e["field"] for e in r.json()["errors"]} >= {"imap.port", "imap.mode", "imap.username", "imap.password"}


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
