"""Signing deliveries (Standard Webhooks v1) with secrets opened at most once per process.

``sign`` uses the ``standardwebhooks`` reference implementation: the signature is HMAC-SHA256 over
``{webhook-id}.{webhook-timestamp}.{body}`` with the exact body bytes sent. During a rotation overlap
the header carries one ``v1,`` signature per valid secret, space-separated, current first.

``SecretBook`` keeps the secrets a process has opened, by secret row (a rotation adds a row, so a new
version is a new key here). The first use of a version decrypts it through the vault, which writes the
audit row in the caller's transaction; every later delivery signs from memory. A version that is no
longer valid simply stops being asked for.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from standardwebhooks.webhooks import Webhook

from nimbus_api.credentials.vault import Actor, Vault
from nimbus_api.models import WebhookSecret


@dataclass(frozen=True)
class Signer:
    """The valid secrets of one endpoint, current first."""

    hooks: tuple[Webhook, ...]

    def headers(self, webhook_id: str, moment: datetime, body: bytes) -> list[tuple[bytes, bytes]]:
        text = body.decode("utf-8")
        signatures = " ".join(hook.sign(webhook_id, moment, text) for hook in self.hooks)
        return [
            (b"webhook-id", webhook_id.encode("ascii")),
            (b"webhook-timestamp", str(int(moment.timestamp())).encode("ascii")),
            (b"webhook-signature", signatures.encode("ascii")),
        ]


class SecretBook:
    def __init__(self, vault: Vault, actor: Actor) -> None:
        self.vault = vault
        self.actor = actor
        self._open: dict[uuid.UUID, Webhook] = {}
        self._unconfirmed: set[uuid.UUID] = set()

    @property
    def opened(self) -> int:
        """How many secret versions this process has decrypted (each audited once)."""
        return len(self._open)

    def confirm(self) -> None:
        """The transaction holding the audit rows of the versions opened since the last call committed."""
        self._unconfirmed.clear()

    def forget_unconfirmed(self) -> None:
        """That transaction rolled back: drop what it opened, so the next use decrypts and audits again."""
        for secret_id in self._unconfirmed:
            self._open.pop(secret_id, None)
        self._unconfirmed.clear()

    async def signers(
        self, session: AsyncSession, endpoint_ids: Sequence[uuid.UUID], now: datetime, *, actor: Actor | None = None
    ) -> dict[uuid.UUID, Signer]:
        """A signer per endpoint with at least one valid secret; opens (and audits) unseen versions."""
        if not endpoint_ids:
            return {}
        rows = await session.scalars(
            select(WebhookSecret)
            .where(
                WebhookSecret.endpoint_id.in_(list(endpoint_ids)),
                or_(WebhookSecret.expires_at.is_(None), WebhookSecret.expires_at > now),
            )
            .order_by(WebhookSecret.endpoint_id, WebhookSecret.expires_at.desc().nulls_first())
        )
        hooks: dict[uuid.UUID, list[Webhook]] = {}
        for row in list(rows):
            hook = self._open.get(row.id)
            if hook is None:
                secret = await self.vault.reveal_webhook_secret(
                    session, row, actor=actor or self.actor, purpose="webhook_signing"
                )
                hook = self._open[row.id] = Webhook(secret.reveal())
                self._unconfirmed.add(row.id)
            hooks.setdefault(row.endpoint_id, []).append(hook)
        return {endpoint_id: Signer(tuple(found)) for endpoint_id, found in hooks.items()}
