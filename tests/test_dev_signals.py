"""``nimbus dev`` as a real process with embedded stores: every stop signal stops the API, the worker and
the embedded PostgreSQL and Redis; a killed run's servers are replaced by the next start."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psutil  # type: ignore[import-untyped]
import pytest

pytestmark = pytest.mark.slow

READY_TIMEOUT = 60.0
EXIT_TIMEOUT = 15.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _alive(pid: int) -> bool:
    try:
        return bool(psutil.Process(pid).status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False


def _processes_using(data_dir: Path) -> list[int]:
    """Live processes whose command line or working directory is inside ``data_dir`` (``pgrep -f`` and more)."""
    found = []
    for proc in psutil.process_iter(["pid", "cmdline", "cwd", "status"]):
        if proc.info["status"] == psutil.STATUS_ZOMBIE or proc.pid == os.getpid():
            continue
        text = " ".join(proc.info["cmdline"] or []) + " " + (proc.info["cwd"] or "")
        if str(data_dir) in text:
            found.append(proc.pid)
    return found


@dataclass
class DevRun:
    """One ``nimbus dev`` process and the server processes it started."""

    process: subprocess.Popen[bytes]
    port: int
    data_dir: Path
    log_path: Path
    server_pids: list[int] = field(default_factory=list)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            assert self.process.poll() is None, f"nimbus dev exited with {self.process.returncode}:\n{self.log()}"
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=1) as response:
                    if response.status == 200:
                        break
            except OSError:
                time.sleep(0.1)
        else:
            pytest.fail(f"nimbus dev was not ready within {READY_TIMEOUT} s:\n{self.log()}")
        self.server_pids = self._read_server_pids()
        assert self.server_pids and all(_alive(pid) for pid in self.server_pids)

    def _read_server_pids(self) -> list[int]:
        postmaster = int((self.data_dir / "postgres" / "postmaster.pid").read_text().splitlines()[0])
        redis_server = int((self.data_dir / "redis" / "redis.pid").read_text().strip())
        children = [child.pid for child in psutil.Process(postmaster).children(recursive=True)]
        return [postmaster, *children, redis_server]

    def wait_exit(self) -> int:
        try:
            return self.process.wait(timeout=EXIT_TIMEOUT)
        except subprocess.TimeoutExpired:
            pytest.fail(f"nimbus dev did not exit within {EXIT_TIMEOUT} s:\n{self.log()}")

    def assert_stopped_cleanly(self, *, quiet: bool = True) -> None:
        returncode = self.wait_exit()
        assert returncode == 0, self.log()
        deadline = time.monotonic() + 5
        while any(_alive(pid) for pid in self.server_pids) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not [pid for pid in self.server_pids if _alive(pid)], self.log()
        assert _processes_using(self.data_dir) == [], self.log()
        assert not (self.data_dir / "postgres" / "postmaster.pid").exists()
        assert not (self.data_dir / "redis" / "redis.pid").exists()
        if quiet:
            assert "Traceback" not in self.log()


@pytest.fixture
def start_dev(tmp_path: Path) -> Iterator[Callable[[], DevRun]]:
    """Starts ``nimbus dev`` in ``tmp_path`` with embedded stores in ``tmp_path/.nimbus``; kills leftovers."""
    runs: list[DevRun] = []
    data_dir = tmp_path / ".nimbus"

    def start() -> DevRun:
        env = {k: v for k, v in os.environ.items() if not k.startswith("NIMBUS_")}
        env.update(NIMBUS_EMBEDDED="always", NIMBUS_DATA_DIR=str(data_dir), NIMBUS_LOG_FORMAT="console")
        port = _free_port()
        log_path = tmp_path / f"dev-{len(runs)}.log"
        with log_path.open("wb") as log_file:
            process = subprocess.Popen(
                [sys.executable, "-m", "nimbus_api.cli", "dev", "--port", str(port)],
                cwd=tmp_path,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # signals reach it only from this test
            )
        run = DevRun(process=process, port=port, data_dir=data_dir, log_path=log_path)
        runs.append(run)
        return run

    yield start

    for run in runs:  # a failed test must not leave servers behind
        if run.process.poll() is None:
            run.process.kill()
            run.process.wait()
    for pid in [pid for run in runs for pid in run.server_pids] + _processes_using(data_dir):
        if pid > 0 and _alive(pid):
            psutil.Process(pid).kill()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=lambda s: s.name)
def test_a_stop_signal_stops_the_api_the_worker_and_the_embedded_servers(
    start_dev: Callable[[], DevRun], sig: signal.Signals
) -> None:
    run = start_dev()
    run.wait_ready()

    run.process.send_signal(sig)

    run.assert_stopped_cleanly()
    assert "dev_stopped" in run.log()


def test_more_signals_during_the_shutdown_leave_no_server_behind(start_dev: Callable[[], DevRun]) -> None:
    run = start_dev()
    run.wait_ready()

    run.process.send_signal(signal.SIGHUP)  # the terminal closed
    # keep signalling through every step of the shutdown (API, worker, PostgreSQL, Redis)
    storm = [signal.SIGINT, signal.SIGTERM, signal.SIGHUP]
    deadline = time.monotonic() + EXIT_TIMEOUT
    sent = 0
    while run.process.poll() is None and time.monotonic() < deadline:
        with_signal = storm[sent % len(storm)]
        try:
            run.process.send_signal(with_signal)
        except ProcessLookupError:
            break
        sent += 1
        time.sleep(0.02)

    assert sent > 3
    run.assert_stopped_cleanly()
    assert "dev_stopped" in run.log() and "signal=SIGHUP" in run.log()
    assert "dev_already_stopping" in run.log()


def test_a_signal_to_every_process_at_once_still_stops_cleanly(start_dev: Callable[[], DevRun]) -> None:
    # what systemd does by default (KillMode=control-group): the embedded servers get SIGTERM too
    run = start_dev()
    run.wait_ready()

    for pid in [run.process.pid, *run.server_pids]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)

    run.assert_stopped_cleanly(quiet=False)  # the worker may log that its stores went away first


def test_a_signal_while_starting_stops_what_was_started(start_dev: Callable[[], DevRun]) -> None:
    run = start_dev()
    deadline = time.monotonic() + READY_TIMEOUT
    while "embedded PostgreSQL ready" not in run.log() and time.monotonic() < deadline:
        assert run.process.poll() is None, run.log()
        time.sleep(0.02)
    # (during initdb postmaster.pid names a standalone backend, as a negative pid)
    run.server_pids = [int((run.data_dir / "postgres" / "postmaster.pid").read_text().splitlines()[0])]

    run.process.send_signal(signal.SIGTERM)

    run.assert_stopped_cleanly()
    assert "dev_ready" not in run.log()


def test_servers_of_a_killed_run_are_stopped_by_the_next_start(start_dev: Callable[[], DevRun]) -> None:
    killed = start_dev()
    killed.wait_ready()
    killed.process.send_signal(signal.SIGKILL)  # no handler, no finally, no atexit
    assert killed.wait_exit() == -signal.SIGKILL
    # nothing could stop the servers (the backends of its connections end with the connections)
    killed.server_pids = [pid for pid in killed.server_pids if _alive(pid)]
    assert len(killed.server_pids) >= 2

    again = start_dev()
    again.wait_ready()
    assert not [pid for pid in killed.server_pids if _alive(pid)]
    assert "left running by an earlier run" in again.log()

    again.process.send_signal(signal.SIGTERM)
    again.assert_stopped_cleanly()
