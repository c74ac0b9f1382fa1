"""Throwaway TLS material for the test servers (trustme).

``TestCerts.ca_file`` is what the product learns through ``NIMBUS_EXTRA_CA_FILE``; ``server`` is a
certificate for every test host name and 127.0.0.1 signed by that CA; ``untrusted`` is a self-signed
certificate for the same names, which verification must refuse.
"""

from __future__ import annotations

import datetime
import ipaddress
import ssl
from dataclasses import dataclass
from pathlib import Path

import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

# ``*.fleet.example.test``: the account-import tests' many SMTP/IMAP host names (tests/account_imports)
TEST_HOSTS = (
    "mail.example.test",
    "smtp.example.test",
    "imap.example.test",
    "localhost",
    "127.0.0.1",
    "*.fleet.example.test",
)


@dataclass(frozen=True)
class TestCerts:
    ca_file: Path
    server_cert: Path
    server_key: Path
    untrusted_cert: Path
    untrusted_key: Path

    def server_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(str(self.server_cert), str(self.server_key))
        return ctx

    def untrusted_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(str(self.untrusted_cert), str(self.untrusted_key))
        return ctx


def _self_signed(names: tuple[str, ...]) -> tuple[bytes, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
    alt: list[x509.GeneralName] = []
    for name in names:
        try:
            alt.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            alt.append(x509.DNSName(name))
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName(alt), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def make_test_certs(directory: Path) -> TestCerts:
    directory.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA()
    leaf = ca.issue_cert(*TEST_HOSTS)
    paths = TestCerts(
        ca_file=directory / "ca.pem",
        server_cert=directory / "server.pem",
        server_key=directory / "server.key",
        untrusted_cert=directory / "untrusted.pem",
        untrusted_key=directory / "untrusted.key",
    )
    ca.cert_pem.write_to_path(str(paths.ca_file))
    leaf.private_key_pem.write_to_path(str(paths.server_key))
    paths.server_cert.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
    cert, key = _self_signed(TEST_HOSTS)
    paths.untrusted_cert.write_bytes(cert)
    paths.untrusted_key.write_bytes(key)
    for key_path in (paths.server_key, paths.untrusted_key):
        key_path.chmod(0o644)  # Dovecot reads it as root; aiosmtpd in-process
    return paths
