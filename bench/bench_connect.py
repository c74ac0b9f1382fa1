"""Benchmark: the whole connect flow against local servers, vs. a plain sequential script.

Both sides do the same work against the same loopback servers (the test DNS server, aiosmtpd with
STARTTLS + AUTH delivering to a private Dovecot over LMTP, Dovecot IMAPS), with the same libraries
(dnspython, aiosmtplib, aioimaplib):

* **flow**: ``nimbus_api.validation.flow.run_flow``: DNS checks concurrent with SMTP and IMAP, then the
  roundtrip (find the test message by its token, delete it);
* **plain**: one step after another: MX, SPF, DKIM, DMARC queries; SMTP connect, STARTTLS, login,
  send; IMAP connect, login, LIST, SELECT; poll SEARCH for the token (same schedule), delete.

Each side runs ``ROUNDS`` times after one warm-up; medians and the ratio plain/flow are printed.
Loopback has no network latency, so the gain here is the overlap of TLS handshakes and logins; on real
networks (tens of ms per round trip) the concurrent flow gains more.

Run: ``make bench`` (or ``.venv/bin/python bench/bench_connect.py``). Needs Dovecot (``.ci/run``
installs it).
"""

from __future__ import annotations

import asyncio
import logging
import statistics
import sys
import tempfile
import time
from email.message import EmailMessage
from pathlib import Path

import aioimaplib
import aiosmtplib
import dns.asyncresolver

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.servers.mail_world import (
    DKIM_SELECTOR,
    IMAP_HOST,
    IMAP_PASSWORD,
    SMTP_HOST,
    SMTP_PASSWORD,
    MailWorld,
)

from nimbus_api.imap import ImapServer
from nimbus_api.kit.crypto import Secret
from nimbus_api.kit.egress import EgressPolicy
from nimbus_api.kit.net import NetContext, make_tls_context
from nimbus_api.smtp.client import SmtpServer
from nimbus_api.validation.flow import FlowLimits, MailboxUnderTest, run_flow

ROUNDS = 15
EMAIL = "bench@example.test"


def mailbox(world: MailWorld) -> MailboxUnderTest:
    return MailboxUnderTest(
        email=EMAIL,
        domain="example.test",
        from_name="Bench",
        dkim_selector=DKIM_SELECTOR,
        smtp=SmtpServer(SMTP_HOST, world.smtp.port, "starttls", EMAIL, Secret(SMTP_PASSWORD)),
        imap=ImapServer(IMAP_HOST, world.dovecot.ports.imaps, "ssl", EMAIL, Secret(IMAP_PASSWORD)),
    )


async def plain_sequential(world: MailWorld, resolver: dns.asyncresolver.Resolver, token: str) -> None:
    """The same steps, one after another, written the way a script would."""
    for name, rdtype in (
        ("example.test", "MX"),
        ("example.test", "TXT"),
        (f"{DKIM_SELECTOR}._domainkey.example.test", "TXT"),
        ("_dmarc.example.test", "TXT"),
    ):
        await resolver.resolve(name, rdtype)
    tls = make_tls_context(world.certs.ca_file)
    msg = EmailMessage()
    msg["From"] = EMAIL
    msg["To"] = EMAIL
    msg["Subject"] = f"test {token}"
    msg["X-Nimbus-Verification"] = token
    msg.set_content("test")
    smtp = aiosmtplib.SMTP(hostname="127.0.0.1", port=world.smtp.port, tls_context=tls, start_tls=False)
    await smtp.connect()
    await smtp.starttls(server_hostname=SMTP_HOST)
    await smtp.login(EMAIL, SMTP_PASSWORD)
    await smtp.send_message(msg)
    await smtp.quit()

    imap = aioimaplib.IMAP4_SSL(host="127.0.0.1", port=world.dovecot.ports.imaps, ssl_context=_imap_tls(world))
    await imap.wait_hello_from_server()
    await imap.login(EMAIL, IMAP_PASSWORD)
    await imap.list('""', "*")
    await imap.select("INBOX")
    delay, deadline = 0.2, time.monotonic() + 10
    while True:
        response = await imap.uid_search(f"HEADER X-Nimbus-Verification {token}")
        uids = response.lines[0].split() if response.lines and response.lines[0] else []
        if uids:
            await imap.uid("store", b",".join(uids).decode(), "+FLAGS.SILENT (\\Deleted)")
            await imap.expunge()
            break
        if time.monotonic() > deadline:
            raise RuntimeError("plain script: test message not found")
        await asyncio.sleep(delay)
        delay = min(delay * 1.5, 2.0)
    await imap.logout()


def _imap_tls(world: MailWorld):  # type: ignore[no-untyped-def]
    # The plain script connects to 127.0.0.1 directly; the test certificate covers that address.
    return make_tls_context(world.certs.ca_file)


async def main() -> None:
    logging.getLogger("mail.log").setLevel(logging.ERROR)  # aiosmtpd's own deprecation chatter
    with tempfile.TemporaryDirectory() as tmp:
        world = MailWorld(Path(tmp))
        await world.start()
        try:
            world.add_mailbox(EMAIL)
            resolver = world.dns.resolver()
            net = NetContext(
                policy=EgressPolicy.from_entries(["127.0.0.0/8", ":1024-65535"]),
                resolver=resolver,
                tls=make_tls_context(world.certs.ca_file),
                connect_timeout=5,
                command_timeout=10,
            )
            limits = FlowLimits(roundtrip_timeout=10, overall_timeout=30)
            box = mailbox(world)
            flow_times: list[float] = []
            plain_times: list[float] = []
            print(f"connect flow vs plain sequential script, {ROUNDS} rounds each (+1 warm-up)", flush=True)
            for i in range(ROUNDS + 1):
                start = time.perf_counter()
                result = await run_flow(box, net, limits)
                flow = time.perf_counter() - start
                if result.status != "passed":
                    raise SystemExit(f"flow failed: {result.model_dump_json(indent=1)}")
                start = time.perf_counter()
                await plain_sequential(world, resolver, f"plain{i}x{time.time_ns()}")
                plain = time.perf_counter() - start
                if i:
                    flow_times.append(flow)
                    plain_times.append(plain)
                label = " (warm-up)" if not i else ""
                print(f"  round {i:2d}{label}: flow {flow * 1000:7.1f} ms   plain {plain * 1000:7.1f} ms", flush=True)
            flow_median = statistics.median(flow_times)
            plain_median = statistics.median(plain_times)
            print(f"flow (concurrent, product):  median {flow_median * 1000:.1f} ms")
            print(f"plain sequential script:     median {plain_median * 1000:.1f} ms")
            print(f"ratio plain/flow:            {plain_median / flow_median:.2f}x")
        finally:
            await world.stop()


if __name__ == "__main__":
    asyncio.run(main())
