"""Benchmark: a domain's blocklist check against a loopback DNS server, concurrent vs. one query at a time.

The blocklist checker (``nimbus_api.blocklists.BlocklistChecker``) asks 6 lists (the defaults) about
``IPS`` sending addresses and one domain: ``IPS * 3 + 3`` queries, some of them listed, one in ten never
answered (the server stays silent, as an overloaded list does). The test DNS server runs in a process of
its own and answers ``RTT`` late (a real resolver's round trip). Three runs are timed:

* **concurrent**: the checker as configured (16 in flight, one 3 s deadline for the whole check);
* **sequential**: the same queries one after another through the same resolver (each silent one waits
  out its own 0.3 s lifetime): what a naive loop costs;
* **cached**: the concurrent check again, served from the in-process TTL cache.

Invariants (fatal): the same verdicts in every run, the silent queries read ``unknown`` and the listed
ones ``listed``; no query leaves loopback. Targets (printed only): the concurrent check under the
deadline, at least 5x the sequential one.

Run: ``make bench`` (or ``.venv/bin/python bench/bench_blocklists.py``).
"""

from __future__ import annotations

import asyncio
import multiprocessing
import sys
import time
from multiprocessing.connection import Connection
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.servers.dns_server import TestDnsServer, make_zone

from nimbus_api.blocklists import BlocklistChecker, default_lists
from nimbus_api.kit.egress import make_resolver

IPS = 60
DEADLINE = 3.0
LIFETIME = 0.3
RTT = 0.02  # a resolver's round trip to a list's servers; loopback alone has none


def _rev(ip: str) -> str:
    return ".".join(reversed(ip.split(".")))


class _Delayed(asyncio.DatagramProtocol):
    """The test server's answers, ``RTT`` seconds late: the network round trip concurrency hides."""

    def __init__(self, inner: TestDnsServer) -> None:
        self.inner = inner
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        reply = self.inner.answer(data)
        if reply is not None and self.transport is not None:
            transport = self.transport
            asyncio.get_running_loop().call_later(RTT, transport.sendto, reply, addr)


def _serve(conn: Connection, listed: list[str], silent: list[str]) -> None:
    """The DNS server, in a process of its own so its CPU is not the checker's."""

    async def run() -> None:
        server = TestDnsServer()
        for blocklist in default_lists():
            body = "".join(f"{_rev(ip)} IN A 127.0.0.2\n" for ip in listed) if blocklist.kind == "ip" else ""
            server.add_zone(make_zone(blocklist.zone, body, ttl=300), blocklist.zone)
            if blocklist.kind == "ip":
                server.silent_names.update(f"{_rev(ip)}.{blocklist.zone}" for ip in silent)
        transport, _ = await asyncio.get_running_loop().create_datagram_endpoint(
            lambda: _Delayed(server), local_addr=("127.0.0.1", 0)
        )
        conn.send(transport.get_extra_info("sockname")[1])
        await asyncio.get_running_loop().run_in_executor(None, conn.recv)  # until told to stop
        transport.close()

    asyncio.run(run())


async def main() -> int:
    ips = [f"198.51.100.{n}" for n in range(1, IPS + 1)]
    listed = ips[::7]
    silent = ips[3::10]
    parent, child = multiprocessing.Pipe()
    process = multiprocessing.Process(target=_serve, args=(child, listed, silent), daemon=True)
    process.start()
    try:
        port = parent.recv()
        resolver = make_resolver([f"127.0.0.1:{port}"], LIFETIME)
        checker = BlocklistChecker(resolver, default_lists(), concurrency=16, timeout=DEADLINE)
        start = time.perf_counter()
        concurrent = await checker.check(ips, ["example.test"])
        t_concurrent = time.perf_counter() - start

        one_at_a_time = BlocklistChecker(resolver, default_lists(), concurrency=1, timeout=3600)
        start = time.perf_counter()
        sequential = await one_at_a_time.check(ips, ["example.test"])
        t_sequential = time.perf_counter() - start

        start = time.perf_counter()
        cached = await checker.check(ips, ["example.test"])
        t_cached = time.perf_counter() - start
    finally:
        parent.send("stop")
        process.join(5)

    def verdicts(report: object) -> dict[tuple[str, str], str]:
        return {(r.zone, r.subject): r.verdict for r in report.results}  # type: ignore[attr-defined]

    queries = len(concurrent.results)
    print(
        f"blocklists: {queries} queries ({len(listed)} IPs listed, {len(silent)} silent) "
        f"on {len(default_lists())} lists"
    )
    print(f"  concurrent (16 in flight, {DEADLINE:g} s deadline): {t_concurrent * 1000:8.1f} ms")
    print(f"  sequential (one at a time):                {t_sequential * 1000:8.1f} ms")
    print(f"  cached (second check):                     {t_cached * 1000:8.1f} ms")
    ratio = t_sequential / t_concurrent if t_concurrent else float("inf")
    print(f"  sequential / concurrent: {ratio:.1f}x (target >= 5x)" + ("" if ratio >= 5 else "  [target missed]"))
    if t_concurrent > DEADLINE + 0.5:
        print(f"  [target missed] the concurrent check took longer than its {DEADLINE:g} s deadline")

    failures: list[str] = []
    v = verdicts(concurrent)
    if not all(v[(z, ip)] == "unknown" for (z, ip) in v if ip in silent):
        failures.append("a silent query was not read unknown")
    if not all(v[(z, ip)] == "listed" for (z, ip) in v if ip in listed and ip not in silent):
        failures.append("a listed address was not read listed")
    if v != verdicts(sequential):
        failures.append("the sequential run read differently")
    cached_v = verdicts(cached)
    if {k: x for k, x in cached_v.items() if k[1] not in silent} != {k: x for k, x in v.items() if k[1] not in silent}:
        failures.append("the cached run read differently")
    for failure in failures:
        print(f"  INVARIANT FAILED: {failure}")
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
