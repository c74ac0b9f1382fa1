"""Domain health end to end: real accounts of the mail world, real DNS, the API and the rows.

Each test gets a sending domain of its own (``dh-<hex>.test``) whose zone it owns: it starts passing
everything (MX, SPF for the loopback relay, a DKIM key of the test's own, DMARC ``p=reject``), and a
test breaks and fixes records by replacing the zone in the mail world's DNS server, exactly what a
person editing their DNS does. Inboxes are connected through the API (real SMTP, IMAP, roundtrip), so
the sample alignment reads is the test message as Dovecot stored it.
"""

from __future__ import annotations

import asyncio
import secrets
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from nimbus_api.api.state import AppState
from nimbus_api.config import Settings
from nimbus_api.credentials.vault import Vault
from nimbus_api.domains import rechecks
from nimbus_api.domains.health import DomainInboxes, HealthChecker, run_health_check
from nimbus_api.domains.samples import store_sample
from nimbus_api.domains.tasks import check_domains
from nimbus_api.kit.net import build_net_context
from nimbus_api.models import CredentialAccess, DomainCheck, EmailAccount, Event
from nimbus_api.sending.mx import MxChecker
from nimbus_api.smtp.pool import SmtpPool
from nimbus_api.worker.context import WorkerResources
from nimbus_api.worker.settings import worker_kwargs
from tests.conftest import Tenant, TenantFactory, account_payload
from tests.domain_health.signing import TestKey, message, sign
from tests.servers.dns_server import make_zone, txt
from tests.servers.mail_world import MailWorld

KEY = TestKey()
RELAY_HOP = "from relay.example.test ([127.0.0.1]) by mx.recipient.test with ESMTPS id 1"
SESSIONMAKER: list[async_sessionmaker[AsyncSession]] = []


@pytest.fixture(autouse=True)
def _sessionmaker(sessionmaker: async_sessionmaker[AsyncSession]) -> Iterator[None]:
    SESSIONMAKER.append(sessionmaker)
    yield
    SESSIONMAKER.clear()


GOOD_DMARC = "v=DMARC1; p=reject; rua=mailto:dmarc@example.test"


def zone(domain: str, *, dmarc: str = GOOD_DMARC, spf: str = "v=spf1 ip4:127.0.0.0/8 -all") -> str:
    return make_zone(
        domain,
        f"@ IN MX 10 mail.example.test.\n@ IN TXT {txt(spf)}\n{KEY.record('s1')}\n_dmarc IN TXT {txt(dmarc)}\n",
    )


@pytest.fixture
def domain(mail_world: MailWorld) -> Iterator[str]:
    name = f"dh-{secrets.token_hex(4)}.test"
    mail_world.add_domain(name)  # the world knows the domain (and will not replace our zone later)
    mail_world.dns.add_zone(zone(name), name)
    yield name
    mail_world.dns.add_zone(zone(name), name)


async def connect(tenant: Tenant, email: str, *, aligned: bool = True) -> dict[str, Any]:
    """Connect a real mailbox; with ``aligned`` the domain's sample is then replaced by a message the
    domain signs itself (the mail world's relay does not sign, see the first test), so that the tests
    of other checks start from a healthy domain."""
    r = await tenant.client.post("/v1/email-accounts", json=account_payload(email=email))
    assert r.status_code == 201, r.text
    body: dict[str, Any] = r.json()
    if aligned:
        domain = email.rpartition("@")[2]
        raw = sign(message(email, received=[RELAY_HOP]), KEY, domain=domain, selector="s1")
        async with SESSIONMAKER[0]() as session, session.begin():
            await store_sample(session, uuid.UUID(body["domain_id"]), uuid.UUID(body["id"]), raw, source="sent")
    return body


async def make_eligible(sessionmaker: async_sessionmaker[AsyncSession], tenant: Tenant, account_id: str) -> None:
    r = await tenant.client.patch(f"/v1/email-accounts/{account_id}", json={"current_stage": 4})
    assert r.status_code == 200, r.text
    async with sessionmaker() as session, session.begin():
        await session.execute(
            update(EmailAccount).where(EmailAccount.id == uuid.UUID(account_id)).values(overall_score=90.0)
        )


async def domain_events(sessionmaker: async_sessionmaker[AsyncSession], domain_id: str) -> list[tuple[str, Any]]:
    async with sessionmaker() as session:
        rows = (
            await session.scalars(
                select(Event).where(Event.type.in_(("domain.unhealthy", "domain.healthy"))).order_by(Event.created_at)
            )
        ).all()
    return [(e.type, e.payload["data"]) for e in rows if e.payload["data"]["domain_id"] == domain_id]


def checks_by_record(body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["record"]: c for c in body["checks"]}


async def test_verification_captures_the_test_message_and_reads_its_alignment(tenant: Tenant, domain: str) -> None:
    account = await connect(tenant, f"ada@{domain}", aligned=False)
    r = await tenant.client.get(f"/v1/domains/{account['domain_id']}")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["sample"]["source"] == "roundtrip" and body["sample"]["account_id"] == account["id"]
    headers = body["sample"]["headers"]
    assert headers["from"] and headers["from"][0].endswith(f"ada@{domain}>")
    assert headers["received"], "the roundtrip copy carries the Received chain of its delivery"
    alignment = checks_by_record(body)["alignment"]
    # The mail world's relay does not sign, and hands mail over with the envelope sender
    # sender@example.test (Return-Path): SPF passes for the relay's address, but for example.test, which
    # is not the From domain. DMARC fails although the connection test passed: the case to show plainly.
    assert alignment["status"] == "fail" and alignment["code"] == "dmarc.misaligned", alignment
    spf = alignment["detail"]["spf"]
    assert (spf["ip"], spf["domain"], spf["result"], spf["aligned"]) == ("127.0.0.1", "example.test", "pass", False)
    assert alignment["detail"]["signatures"] == []
    assert "no DKIM signature" in alignment["detail"]["detail"]
    # Verification only reads and shows it; the domain check decides the pause.
    assert body["is_paused"] is False
    assert "password" not in r.text.lower() and "s3cret" not in r.text


async def test_check_reports_every_record_with_its_time(tenant: Tenant, domain: str) -> None:
    account = await connect(tenant, f"ada@{domain}")
    r = await tenant.client.post(f"/v1/domains/{account['domain_id']}/check")
    assert r.status_code == 200, r.text
    body = r.json()
    records = checks_by_record(body)
    assert list(records) == ["mx", "spf", "dkim", "dmarc", "alignment", "blocklists"]
    for name in ("mx", "spf", "dkim", "dmarc", "alignment"):
        assert records[name]["status"] == "pass", records[name]
        assert records[name]["checked_at"] == records["mx"]["checked_at"]
    # The public lists are not served by the test DNS: every answer is a refusal, read as unknown.
    assert records["blocklists"]["status"] == "unknown"
    assert body["dns_status"] == "pass" and body["blocklist_status"] == "unknown"
    assert body["is_paused"] is False and body["health_checked_at"] is not None


async def test_broken_dmarc_pauses_every_inbox_of_the_domain_and_a_fix_resumes_them(
    tenant: Tenant, domain: str, mail_world: MailWorld, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    first = await connect(tenant, f"ada@{domain}")
    second = await connect(tenant, f"bob@{domain}")
    other = await connect(tenant, f"eve-{secrets.token_hex(3)}@example.test", aligned=False)  # another domain
    for a in (first, second, other):
        await make_eligible(sessionmaker, tenant, a["id"])
    r = await tenant.client.post(
        "/v1/campaigns",
        json={
            "name": "c",
            "type": "cold",
            "steps": [{"delay_seconds": 0, "subject": "Hi", "text": "Hello\n{{ unsubscribe_url }}"}],
        },
    )
    assert r.status_code == 201, r.text
    campaign_id = r.json()["id"]
    r = await tenant.client.post(
        f"/v1/campaigns/{campaign_id}/accounts", json={"account_ids": [first["id"], second["id"], other["id"]]}
    )
    assert r.status_code == 200, r.text

    async def pool() -> dict[str, str | None]:
        r = await tenant.client.get(f"/v1/campaigns/{campaign_id}/accounts")
        assert r.status_code == 200, r.text
        return {row["account_id"]: row["reason"] for row in r.json()["data"]}

    assert set((await pool()).values()) == {None}
    domain_id = first["domain_id"]

    mail_world.dns.add_zone(zone(domain, dmarc="v=DMARC1; p=bogus"), domain)
    r = await tenant.client.post(f"/v1/domains/{domain_id}/check")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["is_paused"] is True and body["paused_reason"] == "dns.dmarc_invalid"
    assert checks_by_record(body)["dmarc"]["status"] == "fail"
    assert await pool() == {first["id"]: "domain_paused", second["id"]: "domain_paused", other["id"]: None}

    # Checking again while broken changes nothing and fires nothing.
    r = await tenant.client.post(f"/v1/domains/{domain_id}/check")
    assert r.json()["is_paused"] is True

    mail_world.dns.add_zone(zone(domain), domain)
    r = await tenant.client.post(f"/v1/domains/{domain_id}/check")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["is_paused"] is False and body["paused_reason"] is None
    dmarc = checks_by_record(body)["dmarc"]
    assert dmarc["status"] == "pass" and dmarc["previous_status"] == "fail"
    assert set((await pool()).values()) == {None}

    events = await domain_events(sessionmaker, domain_id)
    assert [t for t, _ in events] == ["domain.unhealthy", "domain.healthy"]
    unhealthy = events[0][1]
    assert unhealthy["failing_checks"] == ["dns.dmarc_invalid"] and unhealthy["paused"] is True
    assert unhealthy["accounts"] == 2 and "DMARC" in unhealthy["detail"]
    assert events[1][1]["failing_checks"] == [] and events[1][1]["paused"] is False


async def test_concurrent_checks_fire_the_event_exactly_once(
    tenant: Tenant,
    domain: str,
    mail_world: MailWorld,
    sessionmaker: async_sessionmaker[AsyncSession],
    app_state: AppState,
) -> None:
    account = await connect(tenant, f"ada@{domain}")
    domain_id = uuid.UUID(account["domain_id"])
    checker = rechecks.checker_for(app_state.settings, app_state.verifier.net)
    mail_world.dns.add_zone(zone(domain, spf="v=spf1 ip4:127.0.0.0/8 -all", dmarc=""), domain)

    async def check() -> None:
        async with sessionmaker() as session, session.begin():
            await rechecks.check_domain(session, checker, tenant.workspace_id, domain_id)

    await asyncio.gather(*(check() for _ in range(4)))
    events = await domain_events(sessionmaker, str(domain_id))
    assert [t for t, _ in events] == ["domain.unhealthy"]
    assert events[0][1]["failing_checks"] == ["dns.dmarc_missing"]
    mail_world.dns.add_zone(zone(domain), domain)
    await asyncio.gather(*(check() for _ in range(4)))
    assert [t for t, _ in await domain_events(sessionmaker, str(domain_id))] == ["domain.unhealthy", "domain.healthy"]


async def test_misaligned_dkim_pauses_and_an_aligned_message_resumes(
    tenant: Tenant, domain: str, sessionmaker: async_sessionmaker[AsyncSession], mail_world: MailWorld
) -> None:
    """The top troubleshooting case: the connection test passes, but the provider signs with its own
    d= and relays from an address the domain's SPF does not list, so DMARC fails at every receiver."""
    account = await connect(tenant, f"ada@{domain}")
    domain_id = uuid.UUID(account["domain_id"])
    mail_world.dns.add_zone(make_zone("relay-provider.test", KEY.record("p1")), "relay-provider.test")
    hops = [
        "from out.relay-provider.test ([127.0.0.77]) by mx.recipient.test with ESMTPS id 1",
        "from client ([127.0.0.99]) by submit.relay-provider.test with ESMTPSA id 2",
    ]
    misaligned = sign(message(f"ada@{domain}", received=hops), KEY, domain="relay-provider.test", selector="p1")
    async with sessionmaker() as session, session.begin():
        await store_sample(session, domain_id, None, misaligned, source="sent")
    mail_world.dns.add_zone(zone(domain, spf="v=spf1 ip4:127.0.0.1 -all"), domain)  # the relay is not listed
    r = await tenant.client.post(f"/v1/domains/{domain_id}/check")
    body = r.json()
    assert body["is_paused"] is True and body["paused_reason"] == "dmarc.misaligned", body
    alignment = checks_by_record(body)["alignment"]
    assert alignment["status"] == "fail"
    (signature,) = alignment["detail"]["signatures"]
    assert signature["domain"] == "relay-provider.test" and signature["verified"] and not signature["aligned"]
    assert alignment["detail"]["spf"] == {
        "ip": "127.0.0.77",
        "domain": domain,
        "result": "fail",
        "aligned": True,
        "detail": alignment["detail"]["spf"]["detail"],
    }
    assert "does not align" in alignment["detail"]["detail"]

    aligned = sign(message(f"ada@{domain}", received=hops), KEY, domain=domain, selector="s1")
    async with sessionmaker() as session, session.begin():
        await store_sample(session, domain_id, None, aligned, source="sent")
    r = await tenant.client.post(f"/v1/domains/{domain_id}/check")
    body = r.json()
    assert body["is_paused"] is False and checks_by_record(body)["alignment"]["status"] == "pass"
    assert body["sample"]["source"] == "sent"


async def test_a_signed_message_in_sent_replaces_the_sample_at_the_next_check(
    tenant: Tenant, domain: str, mail_world: MailWorld, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    email = f"ada@{domain}"
    account = await connect(tenant, email, aligned=False)
    domain_id = account["domain_id"]
    r = await tenant.client.get(f"/v1/domains/{domain_id}")
    assert r.json()["sample"]["source"] == "roundtrip"
    # The client's own unsigned copy is not taken (it would read misaligned although receivers see it
    # signed); the signed one, as the provider stores it after signing, is.
    signed = sign(message(email, received=[RELAY_HOP], body="Sent today.\r\n"), KEY, domain=domain, selector="s1")
    mail_world.dovecot.deliver_maildir(email, signed, folder="Sent")
    await asyncio.sleep(0.01)
    mail_world.dovecot.deliver_maildir(email, message(email, received=[RELAY_HOP]), folder="Sent")  # newest
    r = await tenant.client.post(f"/v1/domains/{domain_id}/check")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["sample"]["source"] == "sent" and body["sample"]["account_id"] == account["id"]
    alignment = checks_by_record(body)["alignment"]
    assert alignment["status"] == "pass"
    (signature,) = alignment["detail"]["signatures"]
    assert signature["domain"] == domain and signature["verified"] and signature["aligned"]
    async with sessionmaker() as session:
        reveals = (
            await session.scalars(
                select(CredentialAccess).where(
                    CredentialAccess.account_id == uuid.UUID(account["id"]),
                    CredentialAccess.actor == "system:domain_check",
                )
            )
        ).all()
    assert [(a.credential_kind, a.purpose) for a in reveals] == [("imap_password", "sync")]


async def test_a_listing_on_a_blocking_list_pauses_and_informational_does_not(
    tenant: Tenant, domain: str, mail_world: MailWorld
) -> None:
    account = await connect(tenant, f"ada@{domain}")
    domain_id = account["domain_id"]
    # DBL style (the domain itself) so that no other test's domain (all send from 127.0.0.1) is affected.
    mail_world.dns.add_zone(make_zone("multi.uribl.com", f"{domain} 1 IN A 127.0.0.4"), "multi.uribl.com")
    try:
        r = await tenant.client.post(f"/v1/domains/{domain_id}/check")
        body = r.json()
        blocklists = checks_by_record(body)["blocklists"]
        assert blocklists["status"] == "warn" and body["is_paused"] is False  # URIBL grey: informational
        assert body["blocklist_status"] == "listed"
        mail_world.dns.add_zone(make_zone("dbl.spamhaus.org", f"{domain} 1 IN A 127.0.1.2"), "dbl.spamhaus.org")
        await asyncio.sleep(1.1)  # the cached grey answer's TTL (1 s) runs out
        r = await tenant.client.post(f"/v1/domains/{domain_id}/check")
        body = r.json()
        assert body["is_paused"] is True and body["paused_reason"] == "blocklist.listed"
        listed = [x for x in checks_by_record(body)["blocklists"]["detail"]["results"] if x["verdict"] == "listed"]
        assert {x["zone"] for x in listed} == {"dbl.spamhaus.org", "multi.uribl.com"}

        # The lists stop answering (refused: unknown): that clears nothing, the domain stays paused.
        mail_world.dns.remove_zone("multi.uribl.com")
        mail_world.dns.remove_zone("dbl.spamhaus.org")
        await asyncio.sleep(1.1)
        r = await tenant.client.post(f"/v1/domains/{domain_id}/check")
        body = r.json()
        assert checks_by_record(body)["blocklists"]["status"] == "unknown"
        assert body["is_paused"] is True and body["paused_reason"] == "blocklist.listed"

        # Delisted (NXDOMAIN): the re-check resumes the domain.
        for origin in ("multi.uribl.com", "dbl.spamhaus.org"):
            mail_world.dns.add_zone(make_zone(origin, "", ttl=1), origin)
        r = await tenant.client.post(f"/v1/domains/{domain_id}/check")
        body = r.json()
        assert checks_by_record(body)["blocklists"]["status"] == "unknown"  # the other lists still refuse
        assert body["is_paused"] is False and body["paused_reason"] is None
    finally:
        mail_world.dns.remove_zone("multi.uribl.com")
        mail_world.dns.remove_zone("dbl.spamhaus.org")


async def test_endpoints_are_workspace_isolated_and_answer_problems(make_tenant: TenantFactory, domain: str) -> None:
    owner, stranger = await make_tenant(), await make_tenant()
    account = await connect(owner, f"ada@{domain}")
    domain_id = account["domain_id"]
    for method in ("get", "post"):
        path = f"/v1/domains/{domain_id}" + ("/check" if method == "post" else "")
        r = await getattr(stranger.client, method)(path)
        assert r.status_code == 404
        assert r.headers["content-type"].startswith("application/problem+json")
        assert r.json()["code"] == "domain.not_found"
    r = await owner.client.post(f"/v1/domains/{uuid.uuid4()}/check")
    assert r.status_code == 404 and r.json()["code"] == "domain.not_found"
    r = await owner.client.post("/v1/domains/not-a-uuid/check")
    assert r.status_code == 422


async def test_on_demand_checks_are_rate_limited(tenant: Tenant, domain: str, app_state: AppState) -> None:
    account = await connect(tenant, f"ada@{domain}")
    limit = app_state.settings.domain_check_limit
    for _ in range(limit):
        r = await tenant.client.post(f"/v1/domains/{account['domain_id']}/check")
        assert r.status_code == 200, r.text
    r = await tenant.client.post(f"/v1/domains/{account['domain_id']}/check")
    assert r.status_code == 429
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["code"] == "domain.check_rate_limited" and int(r.headers["Retry-After"]) > 0


async def test_the_nightly_run_checks_every_domain_with_an_inbox(
    tenant: Tenant,
    domain: str,
    mail_world: MailWorld,
    sessionmaker: async_sessionmaker[AsyncSession],
    app_state: AppState,
) -> None:
    account = await connect(tenant, f"ada@{domain}")
    mail_world.dns.add_zone(zone(domain, dmarc="v=DMARC1; p=bogus"), domain)
    run = await rechecks.check_all(sessionmaker, rechecks.checker_for(app_state.settings, app_state.verifier.net))
    assert run.checked >= 1 and run.failed == 0
    async with sessionmaker() as session:
        rows = (
            await session.scalars(select(DomainCheck).where(DomainCheck.domain_id == uuid.UUID(account["domain_id"])))
        ).all()
    assert {r.record: r.status for r in rows}["dmarc"] == "fail"
    assert [t for t, _ in await domain_events(sessionmaker, account["domain_id"])] == ["domain.unhealthy"]


async def test_no_configured_blocklists_pass_and_ask_nothing(
    domain: str, app_state: AppState, mail_world: MailWorld
) -> None:
    settings = app_state.settings.model_copy(update={"blocklists": []})
    checker = HealthChecker.from_settings(settings, app_state.verifier.net)
    before = len(mail_world.dns.queries)
    findings = await run_health_check(checker, domain, DomainInboxes(("s1",), ("smtp.example.test",)), None)
    assert findings.records["blocklists"].status == "pass"
    assert findings.records["alignment"].status == "unknown"  # no message captured yet: nothing to judge
    assert findings.problems == [] and findings.dns_status == "pass"
    asked = {q.name for q in mail_world.dns.queries[before:]}
    assert not any(name.endswith(("spamhaus.org", "surbl.org", "uribl.com")) for name in asked)


async def test_the_worker_runs_the_check_nightly_from_its_settings(
    tenant: Tenant,
    domain: str,
    mail_world: MailWorld,
    settings: Settings,
    engine: AsyncEngine,
    sessionmaker: async_sessionmaker[AsyncSession],
    vault: Vault,
) -> None:
    scheduled = settings.model_copy(update={"deliverability_enabled": True})
    [job] = [c for c in worker_kwargs(scheduled)["cron_jobs"] if c.name == "cron:check_domains"]
    assert (job.hour, job.minute, job.unique) == ({settings.domain_check_hour}, {11}, True)
    account = await connect(tenant, f"ada@{domain}")
    mail_world.dns.add_zone(zone(domain, spf="v=spf1 ip4:127.0.0.0/8 bogus:x -all"), domain)  # unknown term
    net = build_net_context(settings)
    async with SmtpPool(net) as pool:
        ctx: dict[str, Any] = {
            "nimbus": WorkerResources(
                settings=settings,
                engine=engine,
                sessionmaker=sessionmaker,
                vault=vault,
                pool=pool,
                pacer=None,
                mx=MxChecker(net.resolver),
                worker_id="test-worker",
            )
        }
        assert await check_domains(ctx) >= 1
        first_checker = ctx["domain_health_checker"]
        await check_domains(ctx)  # idempotent: checked again, nothing new fires
        assert ctx["domain_health_checker"] is first_checker  # one per process: its cache is kept
    r = await tenant.client.get(f"/v1/domains/{account['domain_id']}")
    body = r.json()
    assert body["is_paused"] is True and body["paused_reason"] == "dns.spf_invalid"
    events = await domain_events(sessionmaker, account["domain_id"])
    assert [t for t, _ in events] == ["domain.unhealthy"]


async def test_a_check_feeds_the_inbox_monitoring_and_asks_for_its_health(
    tenant: Tenant, domain: str, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    account = await connect(tenant, f"ada@{domain}")
    async with sessionmaker() as session, session.begin():
        await session.execute(
            update(EmailAccount).where(EmailAccount.id == uuid.UUID(account["id"])).values(health_requested_at=None)
        )
    r = await tenant.client.post(f"/v1/domains/{account['domain_id']}/check")
    assert r.status_code == 200, r.text
    m = (await tenant.client.get(f"/v1/email-accounts/{account['id']}/monitoring")).json()
    records = {x["record"]: x for x in m["dns"]["records"]}
    assert list(records) == ["mx", "spf", "dkim", "dmarc", "alignment"]
    assert {x["source"] for x in records.values()} == {"domain_check"}
    assert {x["status"] for x in records.values()} == {"pass"}
    assert m["dns"]["status"] == "pass"
    assert m["blocklist"]["status"] == r.json()["blocklist_status"]
    blocklists = {x["record"]: x for x in r.json()["checks"]}["blocklists"]
    assert m["blocklist"]["listings"] == blocklists["detail"]["results"]
    # the verdicts moved (unknown -> pass / clean): every inbox of the domain waits for its recompute
    async with sessionmaker() as session:
        requested = await session.scalar(
            select(EmailAccount.health_requested_at).where(EmailAccount.id == uuid.UUID(account["id"]))
        )
    assert requested is not None
    # the same verdicts again ask for nothing more
    async with sessionmaker() as session, session.begin():
        await session.execute(
            update(EmailAccount).where(EmailAccount.id == uuid.UUID(account["id"])).values(health_requested_at=None)
        )
    assert (await tenant.client.post(f"/v1/domains/{account['domain_id']}/check")).status_code == 200
    async with sessionmaker() as session:
        again = await session.scalar(
            select(EmailAccount.health_requested_at).where(EmailAccount.id == uuid.UUID(account["id"]))
        )
    assert again is None
