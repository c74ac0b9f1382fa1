"""Several real processes, one scrape: counters summed over the box's processes (dead ones' counts kept),
the live-summed pool gauge only over processes still running, served by `nimbus metrics` on its own port."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from nimbus_api.config import Settings
from tests.metrics.conftest import parse, value

NIMBUS = str(Path(sys.executable).with_name("nimbus"))

# A process of the box: records through the real hooks (SendReport.add, the pool gauge), then says so.
RECORDER = """
import sys
from nimbus_api.kit import metrics
from nimbus_api.sending.sender import SendReport
sent, bounced, leased, how = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
report = SendReport()
for _ in range(sent):
    report.add("sent")
for _ in range(bounced):
    report.add("hard_bounce")
metrics.pool_connections(leased, 1, 0)
if how == "exit":
    metrics.process_exit()
    print("done", flush=True)
    sys.exit(0)
print("done", flush=True)
sys.stdin.readline()  # stays alive (or is killed) until the test is done
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _env(settings: Settings, directory: Path, **extra: str) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("NIMBUS_", "PROMETHEUS_"))}
    return (
        base | {"PROMETHEUS_MULTIPROC_DIR": str(directory), "NIMBUS_DATABASE_URL": settings.database_url or ""} | extra
    )


def _recorder(env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", RECORDER, *args],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "done"
    return proc


def _wait_for(url: str, headers: dict[str, str] | None = None) -> httpx.Response:
    deadline = time.monotonic() + 30
    while True:
        try:
            return httpx.get(url, headers=headers, timeout=5)
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def test_one_scrape_sums_several_processes_and_drops_dead_ones_live_gauges(settings: Settings, tmp_path: Path) -> None:
    env = _env(settings, tmp_path)
    exited = _recorder(env, "3", "0", "2", "exit")
    exited.wait(timeout=30)
    alive = _recorder(env, "4", "1", "5", "stay")
    killed = _recorder(env, "2", "0", "7", "stay")
    killed.send_signal(signal.SIGKILL)  # no chance to clean up: the scrape finds its pid gone
    killed.wait(timeout=30)
    assert any(name.startswith("gauge_livesum_") and str(killed.pid) in name for name in os.listdir(tmp_path))
    port = _free_port()
    server = subprocess.Popen(
        [NIMBUS, "metrics", "--port", str(port)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    try:
        r = _wait_for(f"http://127.0.0.1:{port}/metrics")
        assert r.status_code == 200, r.text
        samples = parse(r.text)
    finally:
        server.terminate()
        server.wait(timeout=30)
        alive.communicate("\n", timeout=30)
    assert value(samples, "nimbus_sends_total", outcome="sent") == 3 + 4 + 2  # the dead processes' counts stay
    assert value(samples, "nimbus_sends_total", outcome="hard_bounce") == 1
    assert value(samples, "nimbus_smtp_pool_connections", state="leased") == 5  # only the live process
    assert value(samples, "nimbus_smtp_pool_connections", state="idle") == 1
    assert value(samples, "nimbus_metrics_postgres_up") == 1  # the PostgreSQL gauges, from another process
    assert ("nimbus_queue_messages", frozenset({("state", "queued")})) in samples
    assert not any(str(killed.pid) in name and "live" in name for name in os.listdir(tmp_path))


def test_the_separate_bind_checks_the_token_when_one_is_set(settings: Settings, tmp_path: Path) -> None:
    env = _env(settings, tmp_path, NIMBUS_METRICS_TOKEN="sidecar-token", NIMBUS_METRICS_POSTGRES="false")
    port = _free_port()
    server = subprocess.Popen(
        [NIMBUS, "metrics", "--port", str(port)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    try:
        refused = _wait_for(f"http://127.0.0.1:{port}/metrics")
        allowed = httpx.get(
            f"http://127.0.0.1:{port}/metrics", headers={"Authorization": "Bearer sidecar-token"}, timeout=5
        )
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert refused.status_code == 401
    assert refused.json()["code"] == "metrics.unauthorized"
    assert allowed.status_code == 200
    assert "nimbus_metrics_postgres_up" not in allowed.text  # turned off: no database read
