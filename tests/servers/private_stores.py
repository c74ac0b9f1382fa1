"""A PostgreSQL and a Redis of a test's own, on free loopback ports, that the test may stop and restart.

The shared servers on 5432 and 6379 serve every test run on the machine; the outage tests need stores
they can take away. Both use the machine's own server binaries (Debian's ``postgresql`` and
``redis-server`` packages; ``scripts/install-test-deps`` installs them when missing).

* ``PrivateRedis``: ``redis-server`` with no persistence, so a restart is the hard case: the queue,
  the wake-up keys and the pacing schedules are gone, as after a failover to an empty replica.
* ``PrivatePostgres``: ``initdb`` into a temporary folder (run as the ``postgres`` user when the tests
  run as root, since PostgreSQL refuses to run as root), then ``pg_ctl``. ``stop("immediate")`` is a
  crash (every backend killed at once, crash recovery on the next start); ``stop("fast")`` a clean
  shutdown that disconnects every client.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Literal


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _wait_for_port(port: int, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not listen on 127.0.0.1:{port} within {timeout:g} s")
        time.sleep(0.05)


class PrivateRedis:
    def __init__(self, directory: Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed (Debian: apt-get install redis-server)")
        self.binary = binary
        self.directory = directory
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.restarts = 0

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        log = (self.directory / "redis.log").open("ab")
        self.proc = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.directory),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        _wait_for_port(self.port, 10, "redis-server")

    def stop(self) -> None:
        """SIGKILL: the server is gone at once, with everything it held."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.proc = None

    def restart(self, down_for: float) -> None:
        self.stop()
        time.sleep(down_for)
        self.start()
        self.restarts += 1

    def __enter__(self) -> PrivateRedis:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()


def _postgres_bindir() -> Path:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"), key=lambda p: int(p.parts[-3]))
    if not found:
        raise RuntimeError("the PostgreSQL server binaries are not installed (Debian: apt-get install postgresql)")
    return found[-1].parent


class PrivatePostgres:
    def __init__(self) -> None:
        self.bindir = _postgres_bindir()
        # Not under pytest's tmp_path: that is private to root, and the server runs as ``postgres``.
        self.root = Path(tempfile.mkdtemp(prefix="nimbus-pg-"))
        self.root.chmod(0o755)
        self.data = self.root / "data"
        self.port = free_port()
        self.user: str | None = "postgres" if os.geteuid() == 0 else None
        self.restarts = 0

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def _run(self, *args: str) -> None:
        command = [str(self.bindir / args[0]), *args[1:]]
        if self.user is not None:
            command = ["runuser", "-u", self.user, "--", *command]
        result = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"{args[0]} failed ({result.returncode}): {result.stderr or result.stdout}")

    def init(self) -> None:
        self.data.mkdir()
        if self.user is not None:
            entry = pwd.getpwnam(self.user)
            os.chown(self.root, entry.pw_uid, entry.pw_gid)
            os.chown(self.data, entry.pw_uid, entry.pw_gid)
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust", "--no-sync", "-E", "UTF8")

    def start(self) -> None:
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.root} -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
        )
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.root / "postgres.log"), "-o", options, "-w", "start")

    def stop(self, mode: Literal["fast", "immediate"] = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def restart(self, down_for: float, mode: Literal["fast", "immediate"] = "immediate") -> None:
        self.stop(mode)
        time.sleep(down_for)
        self.start()
        self.restarts += 1

    def log_tail(self) -> str:
        with contextlib.suppress(OSError):
            return (self.root / "postgres.log").read_text(errors="replace")[-3000:]
        return ""

    def __enter__(self) -> PrivatePostgres:
        self.init()
        self.start()
        return self

    def __exit__(self, _t: type[BaseException] | None, _e: BaseException | None, _tb: TracebackType | None) -> None:
        with contextlib.suppress(Exception):
            self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)
