"""Benchmark: webhook deliveries through the outbox, the dispatcher and signing, against raw httpx.

The receiver is a lean HTTP/1.1 server in its own process (``webhook_receiver``); it records every
request and verifies every signature afterwards with the ``standardwebhooks`` reference verifier.

1. **Throughput**: 10,000 events over 4 endpoints (4 workspaces, one endpoint each), committed to the
   outbox first; the clock runs from the dispatcher's start (in this process, NOTIFY listener on, the
   production ``Dispatcher`` with its fan-out, claims, per-endpoint cap of 4 and recording) until the
   receiver holds all 10,000. Against a raw ``httpx`` loop posting the same bodies, pre-signed, with the
   same concurrency (4 per endpoint, 16 in all) to the same receiver. Target: at least 0.5x.
2. **Latency** at a steady 200 events/s for 10 s, each event its own committed transaction: commit to
   receipt, p50 and p99. Targets: p50 < 250 ms, p99 < 1 s.
3. **Isolation**: endpoint A stalls 15 s on every request; endpoint B's delivery rate for 2,000 events,
   with A stalling and without (alternated, twice each, medians). Target: B loses at most 10 %.

Invariants (a failure exits non-zero): every event arrives, every signature verifies. The speed targets
are printed, never fatal (CI machines are shared).
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import secrets
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from sqlalchemy import insert
from standardwebhooks.webhooks import Webhook

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import webhook_receiver

from nimbus_api.config import Settings
from nimbus_api.credentials.vault import Actor, Vault
from nimbus_api.events.service import timestamp
from nimbus_api.kit.crypto import MasterKeyring, generate_master_key
from nimbus_api.kit.db import make_engine, make_sessionmaker
from nimbus_api.kit.ids import new_id
from nimbus_api.kit.migrate import upgrade_head
from nimbus_api.kit.net import build_net_context
from nimbus_api.models import Event, Workspace
from nimbus_api.webhooks import service as endpoints
from nimbus_api.webhooks.runtime import build_dispatcher, build_kit
from nimbus_api.webhooks.schemas import WebhookEndpointCreate

ADMIN = os.environ.get("NIMBUS_BENCH_PG_ADMIN", "postgresql://postgres@127.0.0.1:5432/postgres")
EVENTS = 10_000
ENDPOINTS = 4
PER_ENDPOINT = 4
STEADY_RATE, STEADY_SECONDS = 200, 10
ISOLATION_EVENTS = 2_000
STALL_SECONDS = 15.0


class Receiver:
    def __init__(self) -> None:
        self.control, child = multiprocessing.Pipe()
        self.proc = multiprocessing.get_context("spawn").Process(target=webhook_receiver.run, args=(child,))
        self.proc.start()
        ready = self.control.recv()
        self.port = int(ready[1])

    def ask(self, *command: Any) -> Any:
        self.control.send(command)
        return self.control.recv()

    def received(self, path: str) -> int:
        counts = self.ask("counts")
        return int(counts.get(path, (0, 0, 0))[1])

    def close(self) -> None:
        self.ask("quit")
        self.proc.join(5)


async def wait_for(receiver: Receiver, path: str, count: int, timeout: float, label: str) -> float:
    deadline = time.monotonic() + timeout
    last = 0.0
    while True:
        got = receiver.received(path)
        if got >= count:
            return time.monotonic()
        if time.monotonic() > deadline:
            raise SystemExit(f"INVARIANT FAILED: {label}: {got} of {count} events arrived in {timeout:g} s")
        if time.monotonic() - last > 3:
            print(f"  ... {label}: {got}/{count}", file=sys.stderr, flush=True)
            last = time.monotonic()
        await asyncio.sleep(0.02)


async def commit_events(sm: Any, workspace_ids: list[Any], count: int, label: str) -> list[str]:
    now = datetime.now(UTC)
    ids: list[str] = []
    rows = []
    for n in range(count):
        event_id = new_id()
        ids.append(str(event_id))
        data = {"n": n, "phase": label, "note": "a body of a typical size " * 8}
        rows.append(
            {
                "id": event_id,
                "workspace_id": workspace_ids[n % len(workspace_ids)],
                "type": "webhook.test",
                "payload": {"type": "webhook.test", "timestamp": timestamp(now), "data": data},
                "created_at": now,
            }
        )
    for start in range(0, len(rows), 1000):
        async with sm() as session, session.begin():
            await session.execute(insert(Event), rows[start : start + 1000])
    return ids


def check(result: dict[str, Any], path: str, wanted: int) -> dict[str, Any]:
    got = result.get(path, {"ids": set(), "bad": 0, "bad_sample": None, "latencies": []})
    if len(got["ids"]) < wanted:
        raise SystemExit(f"INVARIANT FAILED: {path}: {len(got['ids'])} of {wanted} events arrived")
    if got["bad"]:
        raise SystemExit(f"INVARIANT FAILED: {path}: {got['bad']} bad signatures, e.g. {got['bad_sample']}")
    return got


async def raw_httpx(port: int, bodies: dict[str, list[tuple[bytes, dict[str, str]]]]) -> float:
    async with httpx.AsyncClient(limits=httpx.Limits(max_connections=64, max_keepalive_connections=64)) as client:

        async def lane(path: str, items: list[tuple[bytes, dict[str, str]]]) -> None:
            for body, headers in items:
                r = await client.post(f"http://127.0.0.1:{port}{path}", content=body, headers=headers)
                r.raise_for_status()

        lanes = []
        for path, items in bodies.items():
            for k in range(PER_ENDPOINT):
                lanes.append(lane(path, items[k::PER_ENDPOINT]))
        started = time.monotonic()
        await asyncio.gather(*lanes)
        return time.monotonic() - started


async def main() -> None:
    name = f"nimbus_bench_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(ADMIN)
    await admin.execute(f'CREATE DATABASE "{name}" TEMPLATE template0')
    await admin.close()
    dsn = ADMIN.rsplit("/", 1)[0] + "/" + name
    receiver = Receiver()
    failed = False
    try:
        await asyncio.to_thread(upgrade_head, dsn)
        master_key = generate_master_key()
        settings = Settings(
            database_url=dsn,
            redis_url="redis://127.0.0.1:6379/15",
            master_keys=[master_key],  # type: ignore[list-item]
            egress_allow=["127.0.0.0/8", f":{receiver.port}"],
            webhook_allow_http=True,
            webhook_max_in_flight=PER_ENDPOINT,
        )
        vault = Vault(MasterKeyring.from_strings([master_key]))
        engine = make_engine(dsn, pool_size=10, max_overflow=10)
        sm = make_sessionmaker(engine)
        net = build_net_context(settings)
        rules = endpoints.UrlRules(
            policy=net.policy, resolver=net.resolver, allow_http=True, overlap=timedelta(hours=24)
        )
        workspaces, secrets_by_path = [], {}
        async with sm() as session, session.begin():
            for i in range(ENDPOINTS + 2):
                ws = Workspace(name=f"bench-{i}-{secrets.token_hex(3)}")
                session.add(ws)
                await session.flush()
                path = f"/e{i}"
                body = WebhookEndpointCreate(url=f"http://127.0.0.1:{receiver.port}{path}", event_types=["*"])
                _, secret = await endpoints.create(session, vault, rules, ws.id, body)
                workspaces.append(ws.id)
                secrets_by_path[path] = secret.reveal()
        paths = [f"/e{i}" for i in range(ENDPOINTS)]

        # 1. throughput: the outbox backlog drained by the dispatcher
        print(f"committing {EVENTS:,} events to the outbox ...", file=sys.stderr, flush=True)
        ids = await commit_events(sm, workspaces[:ENDPOINTS], EVENTS, "throughput")
        kit = build_kit(settings, net, vault, Actor.system("webhook_dispatcher"))
        dispatcher = build_dispatcher(settings, kit, sm)
        receiver.ask("reset")
        started = time.monotonic()
        dispatcher.start()
        for path in paths:
            await wait_for(receiver, path, EVENTS // ENDPOINTS, 300, f"throughput {path}")
        product_s = time.monotonic() - started
        result = receiver.ask("finish", secrets_by_path)
        for path in paths:
            check(result, path, EVENTS // ENDPOINTS)
        product_rate = EVENTS / product_s

        # the raw loop: the same bodies, signed beforehand, the same concurrency
        now = datetime.now(UTC)
        bodies: dict[str, list[tuple[bytes, dict[str, str]]]] = {p: [] for p in paths}
        for n, event_id in enumerate(ids):
            path = paths[n % ENDPOINTS]
            body = (b'{"data": {"n": %d, "note": "' % n) + b"a body of a typical size " * 8 + b'"}}'
            sig = Webhook(secrets_by_path[path]).sign(event_id, now, body.decode())
            headers = {
                "webhook-id": event_id,
                "webhook-timestamp": str(int(now.timestamp())),
                "webhook-signature": sig,
                "content-type": "application/json",
            }
            bodies[path].append((body, headers))
        receiver.ask("reset")
        raw_s = await raw_httpx(receiver.port, bodies)
        raw_rate = EVENTS / raw_s
        ratio = product_rate / raw_rate
        print(f"throughput, {EVENTS:,} events over {ENDPOINTS} endpoints ({PER_ENDPOINT} in flight each):")
        print(f"  outbox + dispatcher + signing: {product_rate:8.0f} deliveries/s ({product_s:.1f} s)")
        print(f"  raw httpx, pre-signed bodies:  {raw_rate:8.0f} posts/s ({raw_s:.1f} s)")
        print(f"  ratio {ratio:.2f} (target >= 0.50: {'met' if ratio >= 0.5 else 'missed'})", flush=True)

        # 2. latency at a steady rate, one transaction per event
        receiver.ask("reset")
        total = STEADY_RATE * STEADY_SECONDS
        print(f"steady {STEADY_RATE}/s for {STEADY_SECONDS} s ...", file=sys.stderr, flush=True)
        tick = time.monotonic()
        for n in range(total):
            async with sm() as session, session.begin():
                data = {"n": n, "committed_at": time.time()}
                session.add(
                    Event(
                        workspace_id=workspaces[n % ENDPOINTS],
                        type="webhook.test",
                        payload={"type": "webhook.test", "timestamp": timestamp(datetime.now(UTC)), "data": data},
                    )
                )
                data["committed_at"] = time.time()
            tick += 1 / STEADY_RATE
            await asyncio.sleep(max(0.0, tick - time.monotonic()))
        for path in paths:
            await wait_for(receiver, path, total // ENDPOINTS, 60, f"steady {path}")
        result = receiver.ask("finish", secrets_by_path)
        lat: list[float] = []
        for path in paths:
            lat += check(result, path, total // ENDPOINTS)["latencies"]
        lat.sort()
        p50, p99 = statistics.median(lat) * 1000, lat[int(len(lat) * 0.99) - 1] * 1000
        print(f"latency, commit to receipt at {STEADY_RATE} events/s ({len(lat)} events):")
        print(f"  p50 {p50:6.0f} ms (target < 250: {'met' if p50 < 250 else 'missed'})")
        print(f"  p99 {p99:6.0f} ms (target < 1000: {'met' if p99 < 1000 else 'missed'})", flush=True)

        # 3. isolation: A stalls, B's rate with and without
        a_ws, b_ws = workspaces[ENDPOINTS], workspaces[ENDPOINTS + 1]
        a_path, b_path = f"/e{ENDPOINTS}", f"/e{ENDPOINTS + 1}"
        runs: dict[str, list[float]] = {"A answering": [], "A stalling 15 s": []}
        # alternated, twice each: on a shared machine one run of each is noise against a 10 % target
        for label, stall in [("A answering", 0.0), ("A stalling 15 s", STALL_SECONDS)] * 2:
            receiver.ask("reset")
            receiver.ask("stall", a_path, stall)
            await commit_events(sm, [a_ws], 40, f"a-{label}")
            started = time.monotonic()
            await commit_events(sm, [b_ws], ISOLATION_EVENTS, f"b-{label}")
            done = await wait_for(receiver, b_path, ISOLATION_EVENTS, 120, f"isolation {label}")
            runs[label].append(ISOLATION_EVENTS / (done - started))
            receiver.ask("stall", a_path, 0)
            await wait_for(receiver, a_path, 40, 120, f"isolation A after {label}")
            check(receiver.ask("finish", secrets_by_path), b_path, ISOLATION_EVENTS)
        rates = {label: statistics.median(values) for label, values in runs.items()}
        drop = (1 - rates["A stalling 15 s"] / rates["A answering"]) * 100
        print("isolation, endpoint B's rate while endpoint A stalls 15 s per request:")
        for label, rate in rates.items():
            each = ", ".join(f"{r:.0f}" for r in runs[label])
            print(f"  {label:<16} B: {rate:7.0f} deliveries/s (median of {each})")
        print(f"  B's drop {drop:.1f} % (target <= 10 %: {'met' if drop <= 10 else 'missed'})", flush=True)
        await dispatcher.stop()
        await kit.close()
        await engine.dispose()
    except SystemExit as exc:
        print(exc, file=sys.stderr)
        failed = True
    finally:
        receiver.close()
        admin = await asyncpg.connect(ADMIN)
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
    if failed:
        raise SystemExit(1)


if __name__ == "__main__":
    asyncio.run(main())
