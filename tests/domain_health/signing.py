"""Test keys and signed messages: DKIM signatures made with dkimpy, keys published in the test zones."""

from __future__ import annotations

import base64

import dkim
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.servers.dns_server import txt


class TestKey:
    __test__ = False

    def __init__(self) -> None:
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.pem = self._key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        der = self._key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        self.public_b64 = base64.b64encode(der).decode()

    def record(self, selector: str, *, under: str = "") -> str:
        """The zone line publishing this key under ``selector`` (of the origin, or of its name ``under``)."""
        owner = f"{selector}._domainkey" + (f".{under}" if under else "")
        return f"{owner} IN TXT {txt('v=DKIM1; k=rsa; p=' + self.public_b64)}"


def message(
    from_addr: str,
    *,
    received: list[str] = (),  # type: ignore[assignment]
    return_path: str | None = None,
    body: str = "Hello there.\r\n",
) -> bytes:
    head = [f"Received: {r}" for r in received]
    if return_path:
        head.insert(0, f"Return-Path: <{return_path}>")
    head += [
        f"From: Ada <{from_addr}>",
        f"To: {from_addr}",
        "Subject: connection test",
        "Date: Fri, 04 Dec 2026 20:00:00 +0000",
        "Message-ID: <t1@example.test>",
    ]
    return ("\r\n".join(head) + "\r\n\r\n" + body).encode()


def sign(raw: bytes, key: TestKey, *, domain: str, selector: str) -> bytes:
    """``raw`` with a DKIM-Signature for ``d=domain`` prepended, as the sending server would add it."""
    signature = dkim.sign(
        raw, selector.encode(), domain.encode(), key.pem, include_headers=[b"from", b"to", b"subject", b"date"]
    )
    return bytes(signature) + raw
