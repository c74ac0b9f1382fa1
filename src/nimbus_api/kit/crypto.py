"""Opaque secrets and the envelope-encryption keyring.

Envelope scheme:

* Operator **master keys** come from ``NIMBUS_MASTER_KEYS`` (Fernet keys, first is primary). They never
  touch the database. Each has a short public id (a hash prefix) so a row records which key wrapped it.
* Each workspace has **data keys** (Fernet), stored only *wrapped* (encrypted) by a master key.
* Mailbox secrets are encrypted with a workspace data key; the ciphertext row names the data key.

A database dump therefore holds only ciphertext of ciphertext: without a master key nothing opens.
Decrypting a mailbox secret is done by ``credentials.vault`` only, which writes an audit row each time.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from typing import NoReturn

from cryptography.fernet import Fernet, InvalidToken, MultiFernet


class Secret:
    """A string that refuses to be shown: masked ``repr``/``str``, not picklable, explicit ``reveal``.

    Refusing pickling means a secret can never ride along in an arq job argument or a cache by
    accident: the serializer raises instead of writing it to Redis.
    """

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')"

    __str__ = __repr__

    def __bool__(self) -> bool:
        return bool(self._value)

    def __reduce__(self) -> NoReturn:
        raise TypeError("Secret values cannot be serialized")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(("Secret", self._value))


class KeyringError(Exception):
    """The keyring cannot do what was asked (no master key, or a wrapped key no master key opens)."""


def key_id(key: bytes) -> str:
    """Public id of a Fernet key: safe to store and log, reveals nothing of the key."""
    return hashlib.sha256(b"nimbus-key-id:" + key).hexdigest()[:16]


def validate_fernet_key(raw: str) -> bytes:
    key = raw.strip().encode()
    try:
        Fernet(key)
    except (ValueError, TypeError) as exc:
        raise KeyringError("a master key is not a valid Fernet key (32 url-safe base64 bytes)") from exc
    return key


class MasterKeyring:
    """The operator's master keys: wraps and unwraps workspace data keys."""

    def __init__(self, keys: Sequence[bytes]) -> None:
        if not keys:
            raise KeyringError("no master key configured (set NIMBUS_MASTER_KEYS)")
        self._keys = list(keys)
        self._fernets = [Fernet(k) for k in self._keys]
        self._multi = MultiFernet(self._fernets)
        self._ids = [key_id(k) for k in self._keys]

    @classmethod
    def from_strings(cls, raw_keys: Sequence[str]) -> MasterKeyring:
        return cls([validate_fernet_key(raw) for raw in raw_keys])

    @property
    def primary_id(self) -> str:
        return self._ids[0]

    @property
    def key_ids(self) -> list[str]:
        return list(self._ids)

    def wrap(self, data_key: bytes) -> tuple[bytes, str]:
        """Wrap a data key under the primary master key; returns (wrapped, master key id)."""
        return self._fernets[0].encrypt(data_key), self._ids[0]

    def derive(self, label: str) -> list[bytes]:
        """A 32-byte key per master key (primary first) for ``label``, e.g. for a MAC: HMAC-SHA256 of the label
        under each master key. The master keys stay here; a derived key opens nothing they wrap."""
        return [hmac.new(k, b"nimbus-derive:" + label.encode(), hashlib.sha256).digest() for k in self._keys]

    def unwrap(self, wrapped: bytes) -> bytes:
        try:
            return self._multi.decrypt(wrapped)
        except InvalidToken as exc:
            raise KeyringError("no configured master key opens this data key") from exc


def new_data_key() -> bytes:
    return Fernet.generate_key()


def encrypt(data_key: bytes, plaintext: str) -> bytes:
    return Fernet(data_key).encrypt(plaintext.encode("utf-8"))


def decrypt(data_key: bytes, token: bytes) -> str:
    try:
        return Fernet(data_key).decrypt(token).decode("utf-8")
    except InvalidToken as exc:
        raise KeyringError("ciphertext does not open with its data key") from exc


def generate_master_key() -> str:
    return Fernet.generate_key().decode()
