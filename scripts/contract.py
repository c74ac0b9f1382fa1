"""`make contract`: schemathesis against the real `nimbus api`, on the document the server serves.

A throwaway migrated database on the shared PostgreSQL (random name, dropped at the end) and a Redis index
of its own (flushed before and after), one workspace with an API key, `nimbus api` on a free loopback port,
then `st run <server>/openapi.json` with every check and the examples, coverage, fuzzing and stateful
phases, a fixed seed and a bounded number of cases. Exits non-zero on any failure or error, after a
summary of the cases run per phase.

Environment: NIMBUS_TEST_PG_ADMIN (admin DSN, as the tests), NIMBUS_TEST_REDIS (Redis base URL),
NIMBUS_TEST_REDIS_INDEX (the index, else a random one of 1..15), CONTRACT_SEED, CONTRACT_MAX_EXAMPLES,
CONTRACT_WORKERS, CONTRACT_REPORT_DIR (where the schemathesis reports go; default a temporary folder).
"""

from __future__ import annotations

import asyncio
import contextlib
import http.server
import json
import os
import re
import secrets
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from redis.asyncio import Redis

from nimbus_api.kit.crypto import generate_master_key
from nimbus_api.kit.migrate import upgrade_head

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
PG_ADMIN_DSN = os.environ.get("NIMBUS_TEST_PG_ADMIN", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_BASE = os.environ.get("NIMBUS_TEST_REDIS", "redis://127.0.0.1:6379")
SEED = int(os.environ.get("CONTRACT_SEED", "20261202"))
MAX_EXAMPLES = int(os.environ.get("CONTRACT_MAX_EXAMPLES", "100"))
WORKERS = os.environ.get("CONTRACT_WORKERS", "2")
# The origin the contract server lets the OAuth callback send browsers back to (contract_hooks.py uses it).
CONTRACT_FRONTEND_ORIGIN = "https://app.contract.test"
PHASES = "examples,coverage,fuzzing,stateful"

# Operations left out, each only because it needs the outside world: connecting or re-verifying an
# account logs in to the account's SMTP and IMAP servers, looks its domain up in public DNS and waits
# for a test message to come back. Nothing of that is reachable from CI; the tests cover these operations
# against a mail world on loopback (tests/accounts, tests/validation, tests/api/test_openapi.py).
OUTSIDE_WORLD = {
    "email_accounts_create": "verifies the mailbox live (DNS, SMTP login and test send, IMAP read-back)",
    "email_accounts_verify": "verifies the stored mailbox live",
    "email_accounts_update": "a change of connection settings is verified live before it is saved",
}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def _admin(sql: str) -> None:
    conn = await asyncpg.connect(PG_ADMIN_DSN)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def _flush(url: str) -> None:
    client = Redis.from_url(url)
    try:
        await client.flushdb()
    finally:
        await client.aclose()


@contextlib.contextmanager
def database() -> Iterator[str]:
    name = f"nimbus_contract_{secrets.token_hex(4)}"
    asyncio.run(_admin(f'CREATE DATABASE "{name}" TEMPLATE template0'))
    try:
        url = f"{PG_ADMIN_DSN.rpartition('/')[0]}/{name}"
        upgrade_head(url)
        yield url
    finally:
        asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@contextlib.contextmanager
def redis_index() -> Iterator[str]:
    chosen = os.environ.get("NIMBUS_TEST_REDIS_INDEX")
    url = f"{REDIS_BASE}/{int(chosen) if chosen else 1 + secrets.randbelow(15)}"
    asyncio.run(_flush(url))
    try:
        yield url
    finally:
        asyncio.run(_flush(url))


def _nimbus(env: dict[str, str], *args: str) -> str:
    result = subprocess.run(
        [str(BIN / "nimbus"), *args], env=env, capture_output=True, text=True, check=False, timeout=120
    )
    if result.returncode != 0:
        raise SystemExit(f"nimbus {' '.join(args)} failed:\n{result.stdout}{result.stderr}")
    return result.stdout


class _Receiver(http.server.BaseHTTPRequestHandler):
    """The webhook receiver of the run: ``POST .../test`` deliveries land here, on loopback."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length") or 0))
        self.send_response(204)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        return None


@contextlib.contextmanager
def webhook_receiver() -> Iterator[int]:
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield int(httpd.server_address[1])
    finally:
        httpd.shutdown()
        httpd.server_close()


@contextlib.contextmanager
def server(env: dict[str, str], port: int, log_path: Path) -> Iterator[str]:
    base = f"http://127.0.0.1:{port}"
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            [str(BIN / "nimbus"), "api", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + 60
            while True:
                if proc.poll() is not None:
                    raise SystemExit(f"nimbus api exited ({proc.returncode}):\n{log_path.read_text()}")
                try:
                    if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise SystemExit(f"nimbus api did not become ready:\n{log_path.read_text()}")
                time.sleep(0.2)
            yield base
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _schemathesis(base: str, token: str, report_dir: Path) -> int:
    command = [
        str(BIN / "st"),
        "run",
        f"{base}/openapi.json",
        "--checks",
        "all",
        "--phases",
        PHASES,
        "--seed",
        str(SEED),
        "--max-examples",
        str(MAX_EXAMPLES),
        "--workers",
        WORKERS,
        "--header",
        f"Authorization: Bearer {token}",
        "--report",
        "ndjson,junit",
        "--report-dir",
        str(report_dir),
        "--request-timeout",
        "30",
        "--suppress-health-check",
        "too_slow,filter_too_much",
        "--output-truncate",
        "false",
        "--warnings",
        "off",
    ]
    for operation_id in OUTSIDE_WORLD:
        command += ["--exclude-operation-id", operation_id]
    print("$", " ".join(c if "Bearer" not in c else "Authorization: Bearer ***" for c in command), flush=True)
    env = {
        **os.environ,
        "NO_COLOR": "1",
        "SCHEMATHESIS_HOOKS": "contract_hooks",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(Path(__file__).parent), os.environ.get("PYTHONPATH")])),
    }
    # schemathesis keeps a cache in its working directory: the report folder, not the checkout.
    return subprocess.run(command, check=False, env=env, cwd=report_dir).returncode


def _summary(report_dir: Path) -> dict[str, Any]:
    """Cases and failures per phase, read from schemathesis's ndjson event log."""
    cases: Counter[str] = Counter()
    failures: Counter[str] = Counter()
    for path in report_dir.rglob("*.ndjson"):
        for line in path.read_text().splitlines():
            with contextlib.suppress(ValueError):
                event = json.loads(line)
                _count(event, cases, failures)
    return {"cases": dict(cases), "failures": dict(failures)}


def _count(event: Any, cases: Counter[str], failures: Counter[str]) -> None:
    if not isinstance(event, dict):
        return
    for kind, body in event.items():
        if kind != "ScenarioFinished" or not isinstance(body, dict):
            continue
        phase = str(body.get("phase", "?")).lower()
        recorder = body.get("recorder") or {}
        interactions = recorder.get("interactions") or {}
        cases[phase] += len(interactions)
        checks = recorder.get("checks") or {}
        for results in checks.values():
            for result in results:
                if result.get("status", "").lower() == "failure":
                    failures[phase] += 1


def main() -> int:
    report_dir = Path(os.environ.get("CONTRACT_REPORT_DIR") or tempfile.mkdtemp(prefix="nimbus-contract-"))
    report_dir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with database() as db_url, redis_index() as redis_url, webhook_receiver() as hook_port:
        os.environ["CONTRACT_WEBHOOK_URL"] = f"http://127.0.0.1:{hook_port}/hooks/contract"
        env = {
            **os.environ,
            "NIMBUS_DATABASE_URL": db_url,
            "NIMBUS_REDIS_URL": redis_url,
            "NIMBUS_MASTER_KEYS": generate_master_key(),
            "NIMBUS_LOG_LEVEL": "warning",
            # webhook URLs: only the run's own receiver is reachable
            "NIMBUS_EGRESS_ALLOW": f"127.0.0.1/32,:{hook_port}",
            "NIMBUS_WEBHOOK_ALLOW_HTTP": "true",
            # OAuth: both providers configured (an authorize URL needs no network), one frontend origin
            "NIMBUS_OAUTH_GOOGLE_CLIENT_ID": "contract-google",
            "NIMBUS_OAUTH_GOOGLE_CLIENT_SECRET": "contract-google-secret",
            "NIMBUS_OAUTH_MICROSOFT_CLIENT_ID": "contract-microsoft",
            "NIMBUS_OAUTH_MICROSOFT_CLIENT_SECRET": "contract-microsoft-secret",
            "NIMBUS_OAUTH_FRONTEND_ORIGINS": CONTRACT_FRONTEND_ORIGIN,
        }
        out = _nimbus(env, "workspace", "create", "contract")
        match = re.search(r"^\s+(\S+)\s*$", out, re.MULTILINE)
        if not match:
            raise SystemExit(f"no API key in the output of `nimbus workspace create`:\n{out}")
        token = match.group(1)
        with server(env, _free_port(), report_dir / "api.log") as base:
            code = _schemathesis(base, token, report_dir)
    summary = _summary(report_dir)
    elapsed = time.monotonic() - started
    print("\n== contract summary")
    for phase in PHASES.split(","):
        print(f"  {phase:<10} {summary['cases'].get(phase, 0):>6} cases  {summary['failures'].get(phase, 0):>4} failed")
    total = sum(summary["cases"].values())
    print(f"  {'total':<10} {total:>6} cases in {elapsed:.0f} s (seed {SEED}); reports in {report_dir}")
    print("  left out (need the outside world):")
    for operation_id, reason in OUTSIDE_WORLD.items():
        print(f"    {operation_id}: {reason}")
    return code


if __name__ == "__main__":
    sys.exit(main())
