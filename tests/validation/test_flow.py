"""How the flow runs its checks: order of the reported failure, concurrency, and the overall bound."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from nimbus_api.config import Settings
from nimbus_api.credentials.vault import Vault
from nimbus_api.validation.codes import ALL_CODES
from tests.conftest import Tenant, account_payload
from tests.servers.mail_world import DKIM_SELECTOR, SMTP_PASSWORD, MailWorld
from tests.validation.conftest import (
    AppTenantFactory,
    BrokenDomain,
    Saved,
    SmtpFactory,
    build_app,
    fresh_address,
    fresh_domain,
    lmtp_delivery,
    on_server,
)

CHECKS = ["dns", "smtp", "imap", "roundtrip"]


def _by_name(body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    assert [c["name"] for c in body["checks"]] == CHECKS
    return {c["name"]: c for c in body["checks"]}


async def test_first_failure_in_check_order_wins_and_every_check_is_reported(
    fast: Tenant, broken_domain: BrokenDomain, saved: Callable[[Tenant], Awaitable[Saved]]
) -> None:
    domain = fresh_domain("order")
    body = account_payload(email=fresh_address("order", domain))
    broken_domain(domain, dmarc=False)
    body["smtp"] = {**body["smtp"], "password": "not-the-password"}  # type: ignore[dict-item]

    r = await fast.client.post("/v1/email-accounts", json=body)

    assert r.status_code == 422, r.text
    problem = r.json()
    assert (problem["code"], problem["check"]) == ("dns.dmarc_missing", "dns")
    checks = _by_name(problem)
    assert (checks["dns"]["status"], checks["dns"]["code"]) == ("failed", "dns.dmarc_missing")
    assert (checks["smtp"]["status"], checks["smtp"]["code"]) == ("failed", "smtp.auth_failed")
    assert checks["imap"]["status"] == "passed"
    assert checks["roundtrip"]["status"] == "skipped"
    assert all(c["code"] is None or c["code"] in ALL_CODES for c in checks.values())
    assert await saved(fast) == Saved(0, 0, 0)


async def test_dns_runs_concurrently_with_smtp_and_imap(
    fast: Tenant,
    mail_world: MailWorld,
    broken_domain: BrokenDomain,
    smtp_server: SmtpFactory,
) -> None:
    """DNS waits ~1 s for a DKIM answer that never comes while SMTP waits ~1 s for the server to confirm
    the message: run one after the other, that is at least 2 s; concurrently, about 1 s."""
    domain = fresh_domain("slow")
    email = fresh_address("slow", domain)
    body = account_payload(email=email)
    broken_domain(domain)
    silent = f"{DKIM_SELECTOR}._domainkey.{domain}"
    mail_world.dns.silent_names.add(silent)
    slow = await smtp_server(users={email.lower(): SMTP_PASSWORD}, deliver=lmtp_delivery(mail_world, delay=1.0))
    try:
        started = time.monotonic()
        r = await fast.client.post("/v1/email-accounts", json=on_server(body, slow))
        elapsed = time.monotonic() - started
    finally:
        mail_world.dns.silent_names.discard(silent)

    assert r.status_code == 422, r.text
    assert r.json()["code"] == "dns.timeout"
    checks = _by_name(r.json())
    assert checks["dns"]["data"]["dkim"]["code"] == "dns.timeout"
    assert [checks[n]["status"] for n in ("smtp", "imap", "roundtrip")] == ["passed"] * 3
    dns_s, smtp_s = checks["dns"]["duration_ms"] / 1000, checks["smtp"]["duration_ms"] / 1000
    assert dns_s >= 0.9 and smtp_s >= 0.9, (dns_s, smtp_s)
    total_of_checks = sum(c["duration_ms"] for c in checks.values()) / 1000
    assert elapsed < dns_s + smtp_s - 0.5, (elapsed, dns_s, smtp_s)
    assert elapsed < total_of_checks


@pytest.fixture
async def bounded(
    tenant_of: AppTenantFactory,
    fast_settings: Settings,
    engine: AsyncEngine,
    sessionmaker: async_sessionmaker[AsyncSession],
    redis: Redis,
    vault: Vault,
) -> Tenant:
    """An app whose per-step timeouts are long but whose whole verification may take 1.5 s."""
    settings = fast_settings.model_copy(
        update={"connect_timeout_seconds": 20.0, "command_timeout_seconds": 20.0, "verification_timeout_seconds": 1.5}
    )
    return await tenant_of(build_app(settings, engine, sessionmaker, redis, vault))


async def test_the_whole_verification_is_bounded_and_closes_what_it_cancels(
    bounded: Tenant, smtp_server: SmtpFactory, saved: Callable[[Tenant], Awaitable[Saved]]
) -> None:
    silent = await smtp_server(silent=True)
    started = time.monotonic()

    r = await bounded.client.post("/v1/email-accounts", json=on_server(account_payload(), silent))

    elapsed = time.monotonic() - started
    assert r.status_code == 422, r.text
    assert (r.json()["code"], r.json()["check"]) == ("smtp.timeout", "smtp")
    checks = _by_name(r.json())
    assert checks["dns"]["status"] == "passed" and checks["imap"]["status"] == "passed"
    assert elapsed < 1.5 + 1.0, elapsed
    assert await silent.wait_until_idle(2.0) and silent.open_connections == 0
    assert await saved(bounded) == Saved(0, 0, 0)
