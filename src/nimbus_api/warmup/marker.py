"""The warmup marker: ``X-Nimbus-Warmup: v1.<mac>``, an HMAC-SHA256 of the Message-ID.

The key is derived from the operator's master keys (``MasterKeyring.derive("warmup-marker")``), so only
this deployment can mint a marker and anyone can be told apart from it: a copied header on another
Message-ID, a made-up value, or a marker from another deployment does not verify, and such a message is
ordinary inbound mail. Every master key verifies (the primary one signs), so a master-key rotation does not
orphan the warmup mail in flight.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Sequence

from nimbus_api.kit.crypto import MasterKeyring

HEADER = "X-Nimbus-Warmup"
VERSION = "v1"
_LABEL = "warmup-marker"
_MAC_BYTES = 18


def _normal(message_id: str) -> bytes:
    return message_id.strip().strip("<>").strip().encode("utf-8", "surrogateescape")


class Marker:
    def __init__(self, keys: Sequence[bytes]) -> None:
        if not keys:
            raise ValueError("a marker needs at least one key")
        self._keys = list(keys)

    @classmethod
    def from_keyring(cls, keyring: MasterKeyring) -> Marker:
        return cls(keyring.derive(_LABEL))

    def _mac(self, key: bytes, message_id: str) -> str:
        digest = hmac.new(key, VERSION.encode() + b"|" + _normal(message_id), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest[:_MAC_BYTES]).decode()

    def sign(self, message_id: str) -> str:
        """The header value for a message with this Message-ID."""
        return f"{VERSION}.{self._mac(self._keys[0], message_id)}"

    def verify(self, value: str | None, message_id: str | None) -> bool:
        """Whether ``value`` is our marker for ``message_id`` (constant-time comparison)."""
        if not value or not message_id or not _normal(message_id):
            return False
        version, _, mac = value.strip().partition(".")
        if version != VERSION or not mac:
            return False
        return any(hmac.compare_digest(mac, self._mac(key, message_id)) for key in self._keys)
