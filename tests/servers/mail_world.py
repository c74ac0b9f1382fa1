"""A small mail world on loopback, shared by the API tests: every account they connect is real.

* DNS (``TestDnsServer``): zone ``example.test`` with ``smtp``/``imap``/``mail`` hosts at 127.0.0.1, and
  every sending domain added with ``add_domain``: MX, one SPF record authorizing 127.0.0.1, a DKIM key
  under selector ``s1`` and DMARC ``p=reject``.
* SMTP (aiosmtpd, ``TestSmtpServer``): STARTTLS with the test CA's certificate, AUTH required after TLS,
  one user per mailbox; every accepted message is handed to Dovecot over LMTP, recipient = Dovecot user.
* IMAP (``Dovecot``): one user per mailbox, login = the address.
* OAuth (``OAuthTestServer``, optional): its port is reserved up front and Dovecot and the SMTP server
  accept XOAUTH2/OAUTHBEARER tokens through its introspection URL, each asking for a mail scope of
  either provider: the SMTP server Google's ``https://mail.google.com/`` or Microsoft's
  ``https://outlook.office.com/SMTP.Send``, Dovecot Google's or ``.../IMAP.AccessAsUser.All`` (the
  server's ``introspections`` tell which of them, ``smtp`` or ``imap``, checked a token);
  ``enable_oauth()`` starts it when a test asks (the ``oauth_server`` fixture), so worlds that never use
  OAuth never run it (an XOAUTH2 login then fails: nothing answers introspection).

``account_payload`` builds a create body for a fresh mailbox (or the address given) whose checks all
pass, which is what "connect a mailbox" means from the API's side.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import secrets
from pathlib import Path
from typing import Any
from urllib.parse import quote

from aiosmtpd.smtp import Envelope
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.servers.certs import TestCerts, make_test_certs
from tests.servers.dns_server import TestDnsServer, make_zone, txt
from tests.servers.dovecot import Dovecot, free_port
from tests.servers.oauth_server import MS_IMAP_SCOPE, MS_SMTP_SCOPE, OAuthTestServer
from tests.servers.smtp_server import OAUTH_SCOPE, TestSmtpServer

BASE_DOMAIN = "example.test"
SMTP_HOST = "smtp.example.test"
IMAP_HOST = "imap.example.test"
SMTP_PASSWORD = "s3cret"
IMAP_PASSWORD = "s3cret-imap"
DKIM_SELECTOR = "s1"


def _dkim_public_key() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    der = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(der).decode()


class MailWorld:
    def __init__(self, directory: Path) -> None:
        self.certs: TestCerts = make_test_certs(directory / "certs")
        self.dns = TestDnsServer()
        self.oauth = OAuthTestServer(port=free_port())
        self.dovecot = Dovecot(self.certs, oauth2_introspection_url=self._introspect_url("imap", MS_IMAP_SCOPE))
        self.smtp = TestSmtpServer(
            users={},
            tls_context=self.certs.server_context(),
            auth_require_tls=True,
            deliver=self._deliver,
            oauth_introspection_url=self._introspect_url("smtp", MS_SMTP_SCOPE),
        )
        self._oauth_started = False
        self._dkim = _dkim_public_key()
        self._domains: set[str] = set()
        self._mailboxes: set[str] = set()
        #: a spam filter for the tests: mail to these mailboxes is delivered into their Junk folder
        self.junk_for: set[str] = set()

    async def start(self) -> None:
        await self.dns.start()
        await asyncio.to_thread(self.dovecot.start)
        await self.smtp.start()
        hosts = "\n".join(f"{name} IN A 127.0.0.1" for name in ("smtp", "imap", "mail", "ns"))
        self.dns.add_zone(make_zone(BASE_DOMAIN, hosts + "\n" + self._mail_records("@")), BASE_DOMAIN)
        self._domains.add(BASE_DOMAIN)

    def _introspect_url(self, caller: str, microsoft_scope: str) -> str:
        scopes = "&".join(f"scope={quote(scope, safe='')}" for scope in (OAUTH_SCOPE, microsoft_scope))
        return f"{self.oauth.introspect_url}?caller={caller}&{scopes}"

    def enable_oauth(self) -> OAuthTestServer:
        """Start the world's OAuth server (once) and return it; its tokens log in to SMTP and IMAP."""
        if not self._oauth_started:
            self.oauth.start()
            self._oauth_started = True
        return self.oauth

    async def stop(self) -> None:
        if self._oauth_started:
            await asyncio.to_thread(self.oauth.stop)
            self._oauth_started = False
        await self.smtp.stop()
        await asyncio.to_thread(self.dovecot.stop)
        await self.dns.stop()

    async def _deliver(self, envelope: Envelope) -> None:
        # Mail to a mailbox of this world lands in Dovecot; mail to anyone else (campaign recipients) is
        # accepted and kept in ``smtp.messages`` only, like a relay handing it to the internet.
        for rcpt in envelope.rcpt_tos:
            if rcpt.lower() in self._mailboxes:
                folder = "Junk" if rcpt.lower() in self.junk_for else None
                await asyncio.to_thread(
                    self.dovecot.deliver_lmtp, rcpt.lower(), envelope.original_content or b"", folder=folder
                )

    def _mail_records(self, owner: str) -> str:
        return (
            f"{owner} IN MX 10 mail.{BASE_DOMAIN}.\n"
            f"{owner} IN TXT {txt('v=spf1 ip4:127.0.0.0/8 -all')}\n"
            f"{DKIM_SELECTOR}._domainkey{'' if owner == '@' else '.' + owner} IN TXT "
            f"{txt('v=DKIM1; k=rsa; p=' + self._dkim)}\n"
            f"_dmarc{'' if owner == '@' else '.' + owner} IN TXT "
            f"{txt('v=DMARC1; p=reject; rua=mailto:d@example.test')}\n"
        )

    def add_domain(self, domain: str) -> None:
        """Serve a sending domain whose DNS checks all pass."""
        domain = domain.lower().rstrip(".")
        if domain in self._domains:
            return
        self.dns.add_zone(make_zone(domain, self._mail_records("@")), domain)
        self._domains.add(domain)

    def add_mailbox(
        self, email: str, *, smtp_password: str = SMTP_PASSWORD, imap_password: str = IMAP_PASSWORD
    ) -> None:
        login = email.lower()
        assert self.smtp.users is not None
        self.smtp.users[login] = smtp_password
        self.dovecot.add_user(login, imap_password)
        self._mailboxes.add(login)
        self.add_domain(login.rpartition("@")[2])

    def settings_overrides(self) -> dict[str, Any]:
        return {
            "dns_nameservers": [self.dns.nameserver],
            "egress_allow": ["127.0.0.0/8", ":1024-65535"],
            "extra_ca_file": self.certs.ca_file,
        }

    def account_payload(self, **overrides: object) -> dict[str, object]:
        """A create body for a mailbox that exists in this world (usernames follow ``email``)."""
        email = str(overrides.pop("email", None) or f"sender-{secrets.token_hex(4)}@{BASE_DOMAIN}")
        smtp_password = str(overrides.pop("smtp_password", SMTP_PASSWORD))
        imap_password = str(overrides.pop("imap_password", IMAP_PASSWORD))
        # An address the tests use to provoke a 422 is refused here; it never reaches the servers.
        with contextlib.suppress(ValueError):
            self.add_mailbox(email, smtp_password=smtp_password, imap_password=imap_password)
        login = email.lower()
        body: dict[str, object] = {
            "email": email,
            "from_name": "Ada Lovelace",
            "dkim_selector": DKIM_SELECTOR,
            "smtp": {
                "host": SMTP_HOST,
                "port": self.smtp.port,
                "mode": "starttls",
                "username": login,
                "password": smtp_password,
            },
            "imap": {
                "host": IMAP_HOST,
                "port": self.dovecot.ports.imaps,
                "mode": "ssl",
                "username": login,
                "password": imap_password,
            },
        }
        body.update(overrides)
        return body
