"""An SMTP sink in a separate process, for tests that kill workers or wipe Redis and then count deliveries.

The child runs aiosmtpd on loopback: STARTTLS with the test CA's certificate (required before anything
else), AUTH PLAIN/LOGIN after TLS (any login and password, or only the ``users`` given). Every accepted
message is appended to the log file *before* the final dot is answered, one line each::

    <unix time of MAIL FROM>\t<MAIL FROM address>\t<Message-ID header>

so a worker killed between the server's acceptance and its own bookkeeping leaves a line for a message
the product must record as ``unknown``. ``delay`` (seconds) is slept between writing the line and
answering 250, widening that window on purpose. ``refuse={address: reply}`` answers RCPT for that one
recipient with the reply (a policy refusal such as Postfix's ``550 5.7.1 ... Recipient address
rejected``), accepting every other recipient on the same connection.

Use from a test (synchronous; the child is always terminated by ``stop``/the context manager)::

    with SinkProcess(certs.server_cert, certs.server_key, tmp_path / "sink.log") as sink:
        ... point inboxes at 127.0.0.1:sink.port ...
        sink.records()  # [SinkRecord(at, sender, message_id), ...]

Run directly: ``python tests/servers/sink_process.py --cert C --key K --log FILE --ready PORTFILE [--delay S]
[--user L:P]``; the listening port is written to PORTFILE once it listens.
"""

from __future__ import annotations

import argparse
import asyncio
import email.parser
import email.policy
import os
import signal
import ssl
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

START_TIMEOUT = 15.0


@dataclass(frozen=True)
class SinkRecord:
    at: float
    sender: str
    message_id: str


class SinkProcess:
    def __init__(
        self,
        cert: Path,
        key: Path,
        log_file: Path,
        *,
        delay: float = 0.0,
        users: dict[str, str] | None = None,
        refuse: dict[str, str] | None = None,
    ) -> None:
        self.cert, self.key, self.log_file = cert, key, log_file
        self.delay = delay
        self.users = users
        self.refuse = refuse or {}
        self.port = 0
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> SinkProcess:
        args = [
            sys.executable,
            str(Path(__file__).resolve()),
            "--cert",
            str(self.cert),
            "--key",
            str(self.key),
            "--log",
            str(self.log_file),
            "--delay",
            str(self.delay),
        ]
        for login, password in (self.users or {}).items():
            args += ["--user", f"{login}:{password}"]
        for address, reply in self.refuse.items():
            args += ["--refuse", f"{address}={reply}"]
        ready = self.log_file.with_name(self.log_file.name + ".port")
        ready.unlink(missing_ok=True)
        args += ["--ready", str(ready)]
        self.log_file.touch()
        self._proc = subprocess.Popen(args)
        try:
            deadline = time.monotonic() + START_TIMEOUT
            while time.monotonic() < deadline:
                if self._proc.poll() is not None:
                    raise RuntimeError(f"the sink process exited with {self._proc.returncode}")
                if ready.exists():
                    self.port = int(ready.read_text())
                    return self
                time.sleep(0.02)
            raise TimeoutError("the sink process did not start listening in time")
        except BaseException:
            self.stop()  # never an orphan, whatever went wrong
            raise

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)

    def __enter__(self) -> SinkProcess:
        return self.start()

    def __exit__(self, *exc: object | TracebackType | None) -> None:
        self.stop()

    def records(self) -> list[SinkRecord]:
        out: list[SinkRecord] = []
        for line in self.log_file.read_text().splitlines():
            parts = line.split("\t")
            if len(parts) == 3:  # a line being written right now is skipped until complete
                out.append(SinkRecord(float(parts[0]), parts[1], parts[2]))
        return out


# --- the child process -------------------------------------------------------------------------------


def _serve(
    cert: str,
    key: str,
    log_path: str,
    ready: str,
    delay: float,
    users: dict[str, str] | None,
    refuse: dict[str, str] | None = None,
) -> None:
    from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(cert, key)
    fd = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    parser = email.parser.BytesHeaderParser(policy=email.policy.compat32)

    def authenticate(server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any) -> AuthResult:
        if not isinstance(data, LoginPassword):
            return AuthResult(success=False, handled=False)
        if users is None or users.get(data.login.decode(errors="replace")) == data.password.decode(errors="replace"):
            return AuthResult(success=True, auth_data=data)
        return AuthResult(success=False, handled=False)

    class Handler:
        async def handle_MAIL(
            self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
        ) -> str:
            envelope.mail_from = address
            envelope.mail_options.extend(options)
            session.mail_at = time.time()  # type: ignore[attr-defined]
            return "250 OK"

        async def handle_RCPT(
            self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
        ) -> str:
            refused = (refuse or {}).get(address.lower())
            if refused is not None:
                return refused
            envelope.rcpt_tos.append(address)
            return "250 OK"

        async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
            headers = parser.parsebytes(envelope.original_content or b"")
            message_id = (headers.get("Message-ID") or "").strip() or "-"
            at = getattr(session, "mail_at", time.time())
            # One write(2) per line on an O_APPEND descriptor: whole lines, in order, even if we are killed.
            os.write(fd, f"{at:.6f}\t{envelope.mail_from}\t{message_id}\n".encode())
            if delay:
                await asyncio.sleep(delay)
            return "250 2.0.0 queued"

    async def main() -> None:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        handler = Handler()
        server = await loop.create_server(
            lambda: SMTP(
                handler,
                hostname="sink.example.test",
                tls_context=tls,
                require_starttls=True,
                auth_require_tls=True,
                authenticator=authenticate,
                loop=loop,
            ),
            "127.0.0.1",
            0,
        )
        _announce(ready, server.sockets[0].getsockname()[1])
        await stop.wait()
        server.close()

    asyncio.run(main())


def _announce(ready: str, port: int) -> None:
    Path(ready + ".tmp").write_text(str(port))
    os.replace(ready + ".tmp", ready)  # atomic: the parent never reads half a number


def _main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cert", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--log", required=True)
    parser.add_argument("--ready", required=True, help="file the listening port is written to")
    parser.add_argument("--delay", type=float, default=0.0)
    parser.add_argument("--user", action="append", default=[], help="LOGIN:PASSWORD (default: accept any)")
    parser.add_argument("--refuse", action="append", default=[], help="ADDRESS=REPLY: refuse that recipient")
    args = parser.parse_args()
    users = dict(u.split(":", 1) for u in args.user) or None
    refuse = {a.lower(): r for a, _, r in (entry.partition("=") for entry in args.refuse)}
    _serve(args.cert, args.key, args.log, args.ready, args.delay, users, refuse)


if __name__ == "__main__":
    _main()
