"""Connect-time validation through the HTTP API, against the mail world (real DNS, SMTP and Dovecot).

Every failure is produced for real: a zone without MX, a server that refuses RCPT, a wrong password at
Dovecot... and every 422 is checked for "nothing saved" (no account, no domain row, no credential).
"""

from __future__ import annotations

import asyncio
import secrets
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nimbus_api.models import Credential, EmailAccount
from nimbus_api.validation.flow import TOKEN_HEADER
from tests.conftest import Tenant, account_payload
from tests.servers.mail_world import BASE_DOMAIN, IMAP_PASSWORD, SMTP_PASSWORD, MailWorld
from tests.validation.conftest import (
    FAST,
    LIMITED,
    BrokenDomain,
    Saved,
    SmtpFactory,
    fresh_address,
    fresh_domain,
    lmtp_delivery,
    on_server,
)

CHECKS = ["dns", "smtp", "imap", "roundtrip"]
NOTHING = Saved(accounts=0, domains=0, credentials=0)
CountSaved = Callable[[Tenant], Awaitable[Saved]]


def _checks(body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    assert [c["name"] for c in body["checks"]] == CHECKS
    return {c["name"]: c for c in body["checks"]}


def _statuses(body: dict[str, Any]) -> dict[str, str]:
    return {c["name"]: c["status"] for c in body["checks"]}


def _assert_failed(r: httpx.Response, code: str, check: str) -> dict[str, dict[str, Any]]:
    assert r.status_code == 422, r.text
    assert r.headers["content-type"] == "application/problem+json"
    body = r.json()
    assert (body["code"], body["check"], body["status"]) == (code, check, 422), body
    assert body["type"] == f"urn:nimbus:problem:{code}"
    checks = _checks(body)
    assert checks[check]["status"] == "failed" and checks[check]["code"] == code
    first = next(c for c in body["checks"] if c["status"] == "failed")
    assert first["name"] == check, "code is the first failure in the order dns, smtp, imap, roundtrip"
    return checks


async def _mailbox_search(world: MailWorld, user: str, *query: str) -> str:
    return await asyncio.to_thread(world.dovecot.doveadm, "search", "-u", user, *query)


async def _credentials(
    sessionmaker: async_sessionmaker[AsyncSession], account_id: str
) -> tuple[int, dict[str, bytes], Any]:
    async with sessionmaker() as session:
        account = await session.get_one(EmailAccount, uuid.UUID(account_id))
        rows = (await session.scalars(select(Credential).where(Credential.account_id == account.id))).all()
        return account.credentials_version, {c.kind: c.ciphertext for c in rows}, account.verification_locked_at


# --- success ----------------------------------------------------------------------------------------


async def test_create_passes_all_four_checks_and_deletes_the_test_message(
    fast: Tenant, mail_world: MailWorld, saved: CountSaved
) -> None:
    body = account_payload()
    login = str(body["email"]).lower()
    delivered_before = len(mail_world.smtp.messages)

    r = await fast.client.post("/v1/email-accounts", json=body)

    assert r.status_code == 201, r.text
    account = r.json()
    result = account["last_verification"]
    assert result["status"] == "passed" and result["code"] is None and result["check"] is None
    checks = _checks(result)
    assert all(c["status"] == "passed" and c["code"] is None for c in checks.values())
    assert checks["smtp"]["server_reply"]["code"] == 250
    assert checks["smtp"]["data"]["auth_mechanism"] in ("PLAIN", "LOGIN")
    assert checks["smtp"]["data"]["tls_version"].startswith("TLS")
    assert checks["imap"]["data"]["folder"] == "INBOX" and "Junk" in checks["imap"]["data"]["folders"]
    assert checks["roundtrip"]["data"]["folder"] == "INBOX" and checks["roundtrip"]["warnings"] == []
    assert set(checks["dns"]["data"]) == {"mx", "spf", "dkim", "dmarc"}
    assert SMTP_PASSWORD not in r.text and IMAP_PASSWORD not in r.text

    # The test message really went through the SMTP server into the mailbox, and was deleted there.
    sent = [m for m in mail_world.smtp.messages[delivered_before:] if login in [a.lower() for a in m.rcpt_tos]]
    assert len(sent) == 1
    content = (sent[0].original_content or b"").decode()
    token = next(line.split(":", 1)[1].strip() for line in content.splitlines() if line.startswith(TOKEN_HEADER))
    assert await _mailbox_search(mail_world, login, "header", TOKEN_HEADER, token) == ""
    assert await _mailbox_search(mail_world, login, "ALL") == ""

    assert await saved(fast) == Saved(accounts=1, domains=1, credentials=2)
    got = await fast.client.get(f"/v1/email-accounts/{account['id']}")
    assert got.status_code == 200 and got.json()["last_verification"] == result


async def test_account_without_imap_skips_imap_and_roundtrip_with_a_warning(fast: Tenant, saved: CountSaved) -> None:
    r = await fast.client.post("/v1/email-accounts", json=account_payload(imap=None))
    assert r.status_code == 201, r.text
    checks = _checks(r.json()["last_verification"])
    assert _statuses(r.json()["last_verification"]) == {
        "dns": "passed",
        "smtp": "passed",
        "imap": "skipped",
        "roundtrip": "skipped",
    }
    assert any("replies and bounces" in w for w in checks["imap"]["warnings"])
    assert r.json()["imap"] is None
    assert await saved(fast) == Saved(accounts=1, domains=1, credentials=1)


async def test_relay_without_credentials_skips_auth_and_still_sends(
    fast: Tenant, mail_world: MailWorld, smtp_server: SmtpFactory
) -> None:
    relay = await smtp_server(users=None, deliver=lmtp_delivery(mail_world))  # AUTH not even offered
    body = on_server(account_payload(), relay, username=None, password=None)

    r = await fast.client.post("/v1/email-accounts", json=body)

    assert r.status_code == 201, r.text
    checks = _checks(r.json()["last_verification"])
    assert checks["smtp"]["status"] == "passed" and checks["smtp"]["data"]["auth_mechanism"] is None
    assert checks["roundtrip"]["status"] == "passed"
    assert not relay.saw("AUTH") and relay.saw("STARTTLS") and relay.saw("DATA")
    assert len(relay.messages) == 1
    assert r.json()["smtp"]["username"] is None and r.json()["smtp"]["password_set"] is False


async def test_test_message_found_in_junk_passes_with_a_warning(
    fast: Tenant, mail_world: MailWorld, smtp_server: SmtpFactory
) -> None:
    body = account_payload()
    login = str(body["email"]).lower()
    spammy = await smtp_server(users={login: SMTP_PASSWORD}, deliver=lmtp_delivery(mail_world, folder="Junk"))

    r = await fast.client.post("/v1/email-accounts", json=on_server(body, spammy))

    assert r.status_code == 201, r.text
    roundtrip = _checks(r.json()["last_verification"])["roundtrip"]
    assert roundtrip["status"] == "passed" and roundtrip["data"]["folder"] == "Junk"
    assert roundtrip["warnings"] and "Junk" in roundtrip["warnings"][0]
    assert await _mailbox_search(mail_world, login, "mailbox", "Junk", "ALL") == ""


# --- dns ------------------------------------------------------------------------------------------------

DNS_CASES = [
    pytest.param("dns.mx_missing", {"mx": False}, id="mx_missing"),
    pytest.param("dns.spf_invalid", {"spf": ("v=spf1 ip4:127.0.0.0/8 -all", "v=spf1 -all")}, id="two_spf"),
    pytest.param("dns.dkim_missing", {"dkim": False}, id="dkim_missing"),
    pytest.param("dns.dmarc_missing", {"dmarc": False}, id="dmarc_missing"),
]


@pytest.mark.parametrize(("code", "records"), DNS_CASES)
async def test_dns_failure_is_422_and_the_other_checks_still_run(
    fast: Tenant, broken_domain: BrokenDomain, saved: CountSaved, code: str, records: dict[str, Any]
) -> None:
    domain = fresh_domain(code.split(".")[1].replace("_", "-"))
    body = account_payload(email=fresh_address("dns", domain))
    broken_domain(domain, **records)

    r = await fast.client.post("/v1/email-accounts", json=body)

    checks = _assert_failed(r, code, "dns")
    part = code.split(".")[1].split("_")[0]  # mx, spf, dkim, dmarc
    assert checks["dns"]["data"][part]["code"] == code
    assert _statuses(r.json()) == {"dns": "failed", "smtp": "passed", "imap": "passed", "roundtrip": "passed"}
    assert await saved(fast) == NOTHING


# --- smtp -----------------------------------------------------------------------------------------------


async def test_wrong_smtp_password_is_auth_failed_with_the_reply_and_no_password(
    fast: Tenant, mail_world: MailWorld, saved: CountSaved
) -> None:
    wrong = f"wr0ng-{secrets.token_hex(6)}"
    body = account_payload()
    body["smtp"] = {**body["smtp"], "password": wrong}  # type: ignore[dict-item]

    r = await fast.client.post("/v1/email-accounts", json=body)

    checks = _assert_failed(r, "smtp.auth_failed", "smtp")
    assert checks["smtp"]["server_reply"]["code"] == 535
    assert checks["smtp"]["data"]["stage"] == "auth" and checks["smtp"]["hint"]
    assert checks["imap"]["status"] == "passed" and checks["roundtrip"]["status"] == "skipped"
    assert wrong not in r.text and SMTP_PASSWORD not in r.text
    assert await saved(fast) == NOTHING


SCRIPTED = [
    pytest.param("smtp.relay_denied", {"replies": {"RCPT": "554 5.7.1 Relay access denied"}}, 554, id="relay"),
    pytest.param("smtp.throttled", {"replies": {"RCPT": "450 4.2.1 Mailbox busy, try again later"}}, 450, id="450"),
    pytest.param("smtp.starttls_unsupported", {"tls_context": None}, None, id="no_starttls"),
    pytest.param("smtp.tls_certificate_invalid", {"untrusted": True}, None, id="untrusted_cert"),
]


@pytest.mark.parametrize(("code", "options", "reply"), SCRIPTED)
async def test_smtp_server_refusals(
    fast: Tenant,
    mail_world: MailWorld,
    smtp_server: SmtpFactory,
    saved: CountSaved,
    code: str,
    options: dict[str, Any],
    reply: int | None,
) -> None:
    body = account_payload()
    login = str(body["email"]).lower()
    options = dict(options)
    if options.pop("untrusted", False):
        options["tls_context"] = mail_world.certs.untrusted_context()
    server = await smtp_server(users={login: SMTP_PASSWORD}, **options)

    r = await fast.client.post("/v1/email-accounts", json=on_server(body, server))

    checks = _assert_failed(r, code, "smtp")
    if reply is not None:
        assert checks["smtp"]["server_reply"]["code"] == reply
    assert checks["imap"]["status"] == "passed" and checks["roundtrip"]["status"] == "skipped"
    assert not server.messages
    assert await server.wait_until_idle(2.0), "the SMTP connection was left open"
    assert await saved(fast) == NOTHING


async def test_unresolvable_smtp_host(fast: Tenant, saved: CountSaved) -> None:
    body = account_payload()
    body["smtp"] = {**body["smtp"], "host": f"nohost-{secrets.token_hex(3)}.{BASE_DOMAIN}"}  # type: ignore[dict-item]
    r = await fast.client.post("/v1/email-accounts", json=body)
    checks = _assert_failed(r, "smtp.host_unresolvable", "smtp")
    assert checks["dns"]["status"] == "passed"
    assert await saved(fast) == NOTHING


async def test_loopback_refused_without_allowlist_and_the_address_is_not_revealed(
    closed: Tenant, saved: CountSaved
) -> None:
    r = await closed.client.post("/v1/email-accounts", json=account_payload())

    checks = _assert_failed(r, "smtp.host_not_allowed", "smtp")
    assert checks["imap"]["code"] == "imap.host_not_allowed"
    for text in (r.json()["detail"], checks["smtp"]["detail"], checks["smtp"]["hint"] or "", checks["imap"]["detail"]):
        assert "127.0.0.1" not in text, text
    assert "127.0.0.1" not in r.text, "the body reveals the address the refused host resolves to"
    assert await saved(closed) == NOTHING


async def test_silent_smtp_server_times_out_within_bounds_and_leaks_no_connection(
    fast: Tenant, smtp_server: SmtpFactory, saved: CountSaved
) -> None:
    silent = await smtp_server(silent=True)
    started = time.monotonic()

    r = await fast.client.post("/v1/email-accounts", json=on_server(account_payload(), silent))

    elapsed = time.monotonic() - started
    checks = _assert_failed(r, "smtp.timeout", "smtp")
    assert checks["smtp"]["data"]["stage"] == "connect"
    assert elapsed < FAST["connect_timeout_seconds"] + FAST["command_timeout_seconds"] + 2, elapsed
    assert silent.connections_total >= 1
    assert await silent.wait_until_idle(2.0) and silent.open_connections == 0
    assert await saved(fast) == NOTHING


async def test_server_that_never_confirms_the_message_times_out_at_the_dot(
    fast: Tenant, smtp_server: SmtpFactory, saved: CountSaved
) -> None:
    body = account_payload()
    staller = await smtp_server(users={str(body["email"]).lower(): SMTP_PASSWORD}, stall_after_dot=True)
    started = time.monotonic()

    r = await fast.client.post("/v1/email-accounts", json=on_server(body, staller))

    elapsed = time.monotonic() - started
    checks = _assert_failed(r, "smtp.timeout", "smtp")
    assert checks["smtp"]["data"]["stage"] == "dot" and "may or may not" in checks["smtp"]["hint"]
    assert elapsed < FAST["command_timeout_seconds"] + 3, elapsed
    assert await staller.wait_until_idle(2.0) and staller.open_connections == 0
    assert await saved(fast) == NOTHING


# --- imap and roundtrip ---------------------------------------------------------------------------------


async def test_wrong_imap_password_is_imap_auth_failed(fast: Tenant, saved: CountSaved) -> None:
    wrong = f"wr0ng-imap-{secrets.token_hex(6)}"
    body = account_payload()
    body["imap"] = {**body["imap"], "password": wrong}  # type: ignore[dict-item]

    r = await fast.client.post("/v1/email-accounts", json=body)

    checks = _assert_failed(r, "imap.auth_failed", "imap")
    assert checks["smtp"]["status"] == "passed" and checks["roundtrip"]["status"] == "skipped"
    assert wrong not in r.text
    assert await saved(fast) == NOTHING


async def test_unknown_imap_folder_lists_the_existing_ones(fast: Tenant, saved: CountSaved) -> None:
    body = account_payload()
    body["imap"] = {**body["imap"], "folder": "Replies-Nowhere"}  # type: ignore[dict-item]

    r = await fast.client.post("/v1/email-accounts", json=body)

    checks = _assert_failed(r, "imap.folder_not_found", "imap")
    assert {"INBOX", "Junk", "Sent", "Drafts", "Trash"} <= set(checks["imap"]["data"]["folders"])
    assert "Replies-Nowhere" not in checks["imap"]["data"]["folders"]
    assert await saved(fast) == NOTHING


async def test_imap_login_of_another_mailbox_is_roundtrip_not_found(
    fast: Tenant, mail_world: MailWorld, saved: CountSaved
) -> None:
    other = fresh_address("other")
    mail_world.dovecot.add_user(other, "other-pw")  # a real mailbox, which never gets the test message
    body = account_payload()
    body["imap"] = {**body["imap"], "username": other, "password": "other-pw"}  # type: ignore[dict-item]
    started = time.monotonic()

    r = await fast.client.post("/v1/email-accounts", json=body)

    elapsed = time.monotonic() - started
    checks = _assert_failed(r, "roundtrip.not_found", "roundtrip")
    assert checks["smtp"]["status"] == "passed" and checks["imap"]["status"] == "passed"
    assert FAST["roundtrip_timeout"] <= elapsed < FAST["roundtrip_timeout"] + 3, elapsed
    assert await saved(fast) == NOTHING


# --- verify and update of a saved account ---------------------------------------------------------------


async def test_verify_stores_the_result_and_audits_the_decrypts(fast: Tenant, mail_world: MailWorld) -> None:
    body = account_payload()
    login = str(body["email"]).lower()
    account = (await fast.client.post("/v1/email-accounts", json=body)).json()
    url = f"/v1/email-accounts/{account['id']}"

    r = await fast.client.post(f"{url}/verify")

    assert r.status_code == 200, r.text
    result = r.json()
    assert result["status"] == "passed" and _statuses(result) == dict.fromkeys(CHECKS, "passed")
    assert result["verified_at"] > account["last_verification"]["verified_at"]
    got = (await fast.client.get(url)).json()
    assert got["last_verification"] == result
    audit = (await fast.client.get("/v1/audit-log", params={"purpose": "verify", "account_id": account["id"]})).json()
    assert sorted(e["credential"] for e in audit["data"]) == ["imap_password", "smtp_password"]
    assert {e["actor"] for e in audit["data"]} == {f"api_key:{fast.api_key_id}"}

    # The provider changed the password: verify answers 200 with the failure, and stores it.
    mail_world.smtp.users[login] = "changed-at-the-provider"  # type: ignore[index]
    r = await fast.client.post(f"{url}/verify")
    assert r.status_code == 200, r.text
    failed = r.json()
    assert (failed["status"], failed["code"], failed["check"]) == ("failed", "smtp.auth_failed", "smtp")
    assert (await fast.client.get(url)).json()["last_verification"] == failed
    audit = (await fast.client.get("/v1/audit-log", params={"purpose": "verify", "account_id": account["id"]})).json()
    assert len(audit["data"]) == 4


async def test_patch_verifies_new_credentials_before_replacing_the_old_ones(
    fast: Tenant, mail_world: MailWorld, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    body = account_payload()
    login = str(body["email"]).lower()
    account = (await fast.client.post("/v1/email-accounts", json=body)).json()
    url = f"/v1/email-accounts/{account['id']}"
    version, ciphertexts, _ = await _credentials(sessionmaker, account["id"])

    wrong = f"wr0ng-{secrets.token_hex(6)}"
    r = await fast.client.patch(url, json={"smtp": {"password": wrong}, "label": "renamed"})

    _assert_failed(r, "smtp.auth_failed", "smtp")
    assert wrong not in r.text
    assert await _credentials(sessionmaker, account["id"]) == (version, ciphertexts, None)
    unchanged = (await fast.client.get(url)).json()
    assert unchanged["label"] == account["label"]
    assert unchanged["last_verification"] == account["last_verification"]

    new_password = f"new-{secrets.token_hex(6)}"
    mail_world.smtp.users[login] = new_password  # type: ignore[index]
    r = await fast.client.patch(url, json={"smtp": {"password": new_password}})

    assert r.status_code == 200, r.text
    updated = r.json()
    assert updated["last_verification"]["status"] == "passed"
    assert updated["last_verification"]["verified_at"] > account["last_verification"]["verified_at"]
    new_version, new_ciphertexts, _ = await _credentials(sessionmaker, account["id"])
    assert new_version == version + 1
    assert new_ciphertexts["smtp_password"] != ciphertexts["smtp_password"]
    assert new_ciphertexts["imap_password"] == ciphertexts["imap_password"]
    assert new_password not in r.text
    # The stored secret is the new one: a verify with it passes.
    assert (await fast.client.post(f"{url}/verify")).json()["status"] == "passed"


# --- limits -----------------------------------------------------------------------------------------------


def _failing_fast(email: str | None = None) -> dict[str, object]:
    """A body whose verification fails at once, without a login anywhere (hosts that do not resolve)."""
    body = account_payload(email=email) if email else account_payload()
    nowhere = f"nohost-{secrets.token_hex(3)}.{BASE_DOMAIN}"
    body["smtp"] = {**body["smtp"], "host": nowhere}  # type: ignore[dict-item]
    body["imap"] = {**body["imap"], "host": nowhere}  # type: ignore[dict-item]
    return body


def _assert_rate_limited(r: httpx.Response, window: int) -> None:
    assert r.status_code == 429, r.text
    assert r.json()["code"] == "verification.rate_limited"
    retry = int(r.headers["Retry-After"])
    assert 1 <= retry <= window and r.json()["retry_after"] == retry


async def test_verifications_per_address_are_rate_limited(limited: Tenant, saved: CountSaved) -> None:
    email = fresh_address("limited")
    for _ in range(LIMITED["verify_limit_per_account"]):
        r = await limited.client.post("/v1/email-accounts", json=_failing_fast(email))
        _assert_failed(r, "smtp.host_unresolvable", "smtp")
    r = await limited.client.post("/v1/email-accounts", json=_failing_fast(email))
    _assert_rate_limited(r, LIMITED["verify_window_seconds"])
    assert await saved(limited) == NOTHING


async def test_verifications_per_workspace_are_rate_limited(limited: Tenant, tenant_of, limited_app) -> None:  # type: ignore[no-untyped-def]
    for _ in range(LIMITED["verify_limit_per_workspace"]):
        r = await limited.client.post("/v1/email-accounts", json=_failing_fast())
        assert r.status_code == 422, r.text
    r = await limited.client.post("/v1/email-accounts", json=_failing_fast())
    _assert_rate_limited(r, LIMITED["verify_window_seconds"])
    other = await tenant_of(limited_app)  # another workspace is not affected
    assert (await other.client.post("/v1/email-accounts", json=_failing_fast())).status_code == 422


async def test_new_address_stops_trying_after_failed_logins(
    limited: Tenant, mail_world: MailWorld, saved: CountSaved
) -> None:
    body = account_payload()
    login = str(body["email"]).lower()
    wrong = {**body, "smtp": {**body["smtp"], "password": "wrong-password"}}  # type: ignore[dict-item]
    for _ in range(LIMITED["auth_failure_limit"]):
        _assert_failed(await limited.client.post("/v1/email-accounts", json=wrong), "smtp.auth_failed", "smtp")
    attempts = [a for a in mail_world.smtp.auth_attempts if a[1] == login]
    assert len(attempts) == LIMITED["auth_failure_limit"]

    r = await limited.client.post("/v1/email-accounts", json=body)  # even with the right password

    _assert_rate_limited(r, LIMITED["auth_failure_window_seconds"])
    assert "failed logins" in r.json()["detail"]
    assert [a for a in mail_world.smtp.auth_attempts if a[1] == login] == attempts, "it tried to log in again"
    assert await saved(limited) == NOTHING


async def test_saved_account_is_locked_after_failed_logins_until_a_patch(
    limited: Tenant, mail_world: MailWorld, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    body = account_payload()
    login = str(body["email"]).lower()
    account = (await limited.client.post("/v1/email-accounts", json=body)).json()
    url = f"/v1/email-accounts/{account['id']}"
    rotated = f"rotated-{secrets.token_hex(4)}"
    mail_world.smtp.users[login] = rotated  # type: ignore[index]  # changed at the provider, not here

    for _ in range(LIMITED["auth_failure_limit"]):
        r = await limited.client.post(f"{url}/verify")
        assert r.status_code == 200 and r.json()["code"] == "smtp.auth_failed", r.text
    assert (await limited.client.get(url)).json()["verification_locked_at"] is not None
    attempts = len(mail_world.smtp.auth_attempts)

    r = await limited.client.post(f"{url}/verify")

    assert r.status_code == 409, r.text
    assert r.json()["code"] == "verification.locked"
    assert len(mail_world.smtp.auth_attempts) == attempts, "a locked account must not try to log in"

    version, _, _ = await _credentials(sessionmaker, account["id"])
    r = await limited.client.patch(url, json={"smtp": {"password": rotated}})

    assert r.status_code == 200, r.text
    assert r.json()["verification_locked_at"] is None
    assert r.json()["last_verification"]["status"] == "passed"
    assert (await _credentials(sessionmaker, account["id"]))[0] == version + 1
    r = await limited.client.post(f"{url}/verify")
    assert r.status_code == 200 and r.json()["status"] == "passed", r.text
