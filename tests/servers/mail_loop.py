"""A private Postfix and a Sieve-enabled Dovecot wired together: real DSNs and real vacation replies.

``MailLoop(certs)`` (a context manager) starts:

* a ``Dovecot`` with Sieve on LMTP delivery, whose ``submission_host`` is the Postfix listener, so
  Sieve's vacation replies go out through Postfix;
* a ``Postfix`` delivering the ``mailbox_domains`` (default ``MAILBOX_DOMAIN``) over LMTP into that
  Dovecot, and routing any other domain as told (``routes`` / ``route``): ``error:5.7.1 text`` bounces
  with that status, ``remote:NAME`` goes to an SMTP hop answering RCPT with the reply given in
  ``remotes`` (``451 4.2.1 ...``: delayed, ``550 5.2.1 ...``: failed, quoted as "host said"),
  ``deferred_transport()`` points at a closed loopback port (``Action: delayed`` warnings within a
  second; after ``queue_lifetime`` a failed DSN).

Mail from ``someone@MAILBOX_DOMAIN`` (a Dovecot user, ``add_user``) that Postfix cannot deliver comes
back as Postfix's own RFC 3464 report into that user's maildir; ``wait_for_messages`` polls for it.
An unknown user of a mailbox domain is refused by Dovecot's LMTP (``550 5.1.1``), which Postfix turns
into a failed DSN. ``send`` submits over SMTP to the Postfix listener.

Postfix needs root: ``MailLoop.start`` raises ``PostfixUnavailable`` otherwise (``mail_loop_or_skip``
turns that into a pytest skip).
"""

from __future__ import annotations

import smtplib
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from email.message import EmailMessage
from email.utils import make_msgid

from tests.servers.certs import TestCerts
from tests.servers.dovecot import HOST, Dovecot, free_port
from tests.servers.postfix import Postfix, PostfixUnavailable, postfix_unavailable_reason

MAILBOX_DOMAIN = "mailloop.test"
PASSWORD = "s3cret-loop"


class MailLoop:
    def __init__(
        self,
        certs: TestCerts,
        *,
        mailbox_domains: Iterable[str] = (MAILBOX_DOMAIN,),
        routes: Mapping[str, str] | None = None,
        remotes: Mapping[str, str] | None = None,
        deferred_domains: Iterable[str] = (),
        delay_warning_time: str = "1s",
        queue_lifetime: str = "1d",
    ) -> None:
        """``routes``: domain -> Postfix transport (or ``remote:NAME``); ``remotes``: name -> the reply
        that SMTP hop gives every RCPT (``Postfix(remotes=...)``); ``deferred_domains``: domains routed to
        ``deferred_transport()`` (every attempt refused, so ``Action: delayed`` reports);
        ``queue_lifetime``: Postfix's ``maximal_queue_lifetime`` and ``bounce_queue_lifetime`` (a
        deferred message is returned as failed, ``Action: failed``, once it is that old)."""
        self.closed_port = free_port()  # nothing listens here: connections are refused (4.4.1)
        all_routes = dict(routes or {})
        all_routes.update({domain: self.deferred_transport() for domain in deferred_domains})
        self.postfix = Postfix(
            virtual_domains=mailbox_domains,
            routes=all_routes,
            remotes=remotes,
            port=free_port(),
            delay_warning_time=delay_warning_time,
            maximal_queue_lifetime=queue_lifetime,
            bounce_queue_lifetime=queue_lifetime,
        )
        self.dovecot = Dovecot(certs, sieve=True, submission_host=f"{HOST}:{self.postfix.port}")

    def __enter__(self) -> MailLoop:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        reason = postfix_unavailable_reason()
        if reason:
            raise PostfixUnavailable(reason)
        self.dovecot.start()
        try:
            self.postfix.lmtp = f"inet:{HOST}:{self.dovecot.ports.lmtp}"
            self.postfix.start()
        except BaseException:
            self.dovecot.stop()
            raise

    def stop(self) -> None:
        try:
            self.postfix.stop()
        finally:
            self.dovecot.stop()

    # --- set-up

    def add_user(self, address: str) -> str:
        """A Dovecot user (login = the address) that mail can be sent from and delivered to."""
        self.dovecot.add_user(address.lower(), PASSWORD)
        return address.lower()

    def route(self, domain: str, transport: str) -> None:
        """Route a domain after start (reloads Postfix; prefer ``routes`` at construction)."""
        self.postfix.route(domain, transport)

    def deferred_transport(self) -> str:
        """A transport whose every attempt fails with a connection refused (deferral, 4.4.1)."""
        return f"smtp:[{HOST}]:{self.closed_port}"

    # --- mail

    def send(self, message: EmailMessage | bytes, *, sender: str, recipients: Iterable[str]) -> None:
        raw = message.as_bytes() if isinstance(message, EmailMessage) else message
        with smtplib.SMTP(HOST, self.postfix.port, timeout=10) as smtp:
            smtp.sendmail(sender, list(recipients), raw)

    def messages(self, user: str) -> list[bytes]:
        return self.dovecot.maildir_messages(user)

    def wait_for_messages(self, user: str, count: int = 1, *, timeout: float = 20.0) -> list[bytes]:
        """Poll the user's INBOX until it holds ``count`` messages; raise ``TimeoutError`` with both
        servers' logs otherwise."""
        deadline = time.monotonic() + timeout
        while True:
            found = self.messages(user)
            if len(found) >= count:
                return found
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"{user} has {len(found)} of {count} messages after {timeout} s\n"
                    f"{self.postfix.diagnostics()}\n{self.dovecot.diagnostics()}"
                )
            time.sleep(0.05)


def plain_message(sender: str, to: str, subject: str = "Hello", body: str = "Hi there.\n") -> EmailMessage:
    """A person-to-person message (no List-* headers, not bulk) with a fresh Message-ID."""
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = to
    msg["Subject"] = subject
    msg["Message-ID"] = make_msgid(domain=sender.rpartition("@")[2] or "nimbus.test")
    msg["Date"] = time.strftime("%a, %d %b %Y %H:%M:%S +0000", time.gmtime())
    msg.set_content(body)
    return msg


@contextmanager
def mail_loop_or_skip(certs: TestCerts, **kwargs: object) -> Iterator[MailLoop]:
    """``with mail_loop_or_skip(certs) as loop:`` in a fixture: skips the tests when Postfix cannot run."""
    import pytest

    loop = MailLoop(certs, **kwargs)  # type: ignore[arg-type]
    try:
        loop.start()
    except PostfixUnavailable as exc:
        loop.stop()  # removes the temporary directories
        pytest.skip(f"real Postfix DSNs: {exc}")
    try:
        yield loop
    finally:
        loop.stop()
