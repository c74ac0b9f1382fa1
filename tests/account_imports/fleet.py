"""A fleet of mailboxes in the mail world, spread over several SMTP and IMAP host names, each name its own
server door so that concurrency per host is measured where the logins arrive:

* SMTP: one ``TestSmtpServer`` per host name (``smtp-N.fleet.example.test``), sharing the world's users and
  delivery; ``peak_connections`` is its high-water mark of open sessions;
* IMAP: one TCP door per host name (``imap-N.fleet.example.test``) in front of the world's Dovecot: it
  forwards the TLS stream untouched and counts the connections open through it at once (Dovecot itself
  cannot tell which name a client used);
* ``down.fleet.example.test``: a host whose SMTP and IMAP ports refuse connections.

``rows`` builds import rows (CSV column names) for good mailboxes, wrong passwords and the unreachable
host, and adds the mailboxes in bulk to the SMTP users and Dovecot's passwd files.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import secrets
from dataclasses import dataclass, field

from aiosmtpd.smtp import Envelope

from tests.servers.dns_server import make_zone
from tests.servers.dovecot import free_port
from tests.servers.mail_world import DKIM_SELECTOR, MailWorld
from tests.servers.smtp_server import TestSmtpServer

ZONE = "fleet.example.test"
GOOD_PASSWORD = "fleet-s3cret"


class CountingDoor:
    """A TCP forwarder on 127.0.0.1 that counts the connections open through it (``peak``)."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.open = 0
        self.peak = 0
        self.total = 0
        self._server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)

    def reset_peak(self) -> None:
        self.peak = self.open

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.open += 1
        self.total += 1
        self.peak = max(self.peak, self.open)
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            self.open -= 1
            writer.close()
            return

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(Exception):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            with contextlib.suppress(Exception):
                dst.close()

        try:
            await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        finally:
            self.open -= 1


@dataclass
class Host:
    index: int
    smtp: TestSmtpServer
    imap: CountingDoor

    @property
    def smtp_name(self) -> str:
        return f"smtp-{self.index}.{ZONE}"

    @property
    def imap_name(self) -> str:
        return f"imap-{self.index}.{ZONE}"


@dataclass
class Fleet:
    world: MailWorld
    hosts: list[Host] = field(default_factory=list)
    down_port: int = 0

    @classmethod
    async def start(cls, world: MailWorld, count: int = 3, *, delivery_delay: float = 0.0) -> Fleet:
        """``delivery_delay``: accept a message at once and hand it to Dovecot this many seconds later, as a
        provider's queue does (the benchmark; the tests deliver before answering the DATA)."""
        fleet = cls(world=world, down_port=free_port())
        deliver = world._deliver
        pending: set[asyncio.Task[None]] = set()
        if delivery_delay > 0:

            async def later(envelope: Envelope) -> None:
                await asyncio.sleep(delivery_delay)
                await world._deliver(envelope)

            async def deliver(envelope: Envelope) -> None:
                task = asyncio.create_task(later(envelope))
                pending.add(task)
                task.add_done_callback(pending.discard)

        records = ["down IN A 127.0.0.1"]
        for index in range(1, count + 1):
            smtp = TestSmtpServer(
                users={},
                tls_context=world.certs.server_context(),
                auth_require_tls=True,
                deliver=deliver,
            )
            smtp.users = world.smtp.users  # one table of logins for the whole world
            await smtp.start()
            door = CountingDoor(world.dovecot.ports.imaps)
            await door.start()
            fleet.hosts.append(Host(index=index, smtp=smtp, imap=door))
            records += [f"smtp-{index} IN A 127.0.0.1", f"imap-{index} IN A 127.0.0.1"]
        world.dns.add_zone(make_zone(ZONE, "\n".join(records) + "\n"), ZONE)
        return fleet

    async def stop(self) -> None:
        for host in self.hosts:
            await host.smtp.stop()
            await host.imap.stop()
        self.world.dns.remove_zone(ZONE)

    def reset_peaks(self) -> None:
        for host in self.hosts:
            host.smtp.reset_peak()
            host.imap.reset_peak()

    def peaks(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for host in self.hosts:
            out[host.smtp_name] = host.smtp.peak_connections
            out[host.imap_name] = host.imap.peak
        return out

    def add_mailboxes(self, emails: list[str], password: str = GOOD_PASSWORD) -> None:
        """Many mailboxes at once: SMTP users and Dovecot passwd files (one file each, read at first login)."""
        for email in emails:
            self.world.add_mailbox(email, smtp_password=password, imap_password=password)

    def rows(self, *, good: int, wrong_password: int, unreachable: int) -> tuple[list[dict[str, str]], dict[str, str]]:
        """Rows (CSV columns) and the state each address must end in, hosts assigned round robin."""
        domain = f"fleet{secrets.token_hex(3)}.test"
        rows: list[dict[str, str]] = []
        expected: dict[str, str] = {}
        total = good + wrong_password + unreachable
        emails = [f"box{n:04d}@{domain}" for n in range(total)]
        self.add_mailboxes(emails)
        for n, email in enumerate(emails):
            host = self.hosts[n % len(self.hosts)]
            row = {
                "email": email,
                "first_name": "Box",
                "last_name": str(n),
                "smtp_host": host.smtp_name,
                "smtp_port": str(host.smtp.port),
                "smtp_username": email,
                "smtp_password": GOOD_PASSWORD,
                "imap_host": host.imap_name,
                "imap_port": str(host.imap.port),
                "imap_mode": "ssl",
                "imap_password": GOOD_PASSWORD,
                "daily_limit": "25",
                "warmup": "yes" if n % 2 else "no",
                "dkim_selector": DKIM_SELECTOR,
            }
            expected[email] = "connected"
            if n >= good and n < good + wrong_password:
                row["smtp_password"] = row["imap_password"] = "wrong-password"
                expected[email] = "failed:smtp.auth_failed"
            elif n >= good + wrong_password:
                row.update(
                    smtp_host=f"down.{ZONE}",
                    smtp_port=str(self.down_port),
                    imap_host=f"down.{ZONE}",
                    imap_port=str(self.down_port),
                )
                expected[email] = "failed:smtp.connection_refused"
            rows.append(row)
        return rows, expected


def to_csv(rows: list[dict[str, str]]) -> bytes:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue().encode()
