"""What a worker knows about a mailbox it holds: where to log in, how often, and its folder cursors.

Loaded when the mailbox is claimed and again when its account's settings change
(``credentials_version`` or the IMAP fields), so a long-held mailbox follows edits within one renewal.
``register`` keeps the ``mailbox_syncs`` row in step with the account: created (due at a spread offset
within its interval) when IMAP is set, removed when IMAP is removed.
"""

from __future__ import annotations

import uuid
import zlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from nimbus_api.imap import ImapServer, Mode
from nimbus_api.kit.crypto import Secret
from nimbus_api.kit.db import utcnow
from nimbus_api.models import EmailAccount, MailboxFolder, MailboxSync
from nimbus_api.sync.cursor import Cursor, State


def spread_offset(account_id: uuid.UUID, interval: int) -> float:
    """A stable offset in ``[0, interval)`` seconds: mailboxes with the same interval poll spread out."""
    return (zlib.crc32(account_id.bytes) % (max(interval, 1) * 1000)) / 1000.0


@dataclass
class Mailbox:
    account_id: uuid.UUID
    workspace_id: uuid.UUID
    email: str
    host: str
    port: int
    mode: Mode
    username: str
    folder: str
    allow_plaintext_auth: bool
    interval: int
    credentials_version: int
    created_at: datetime
    next_poll_at: datetime
    consecutive_failures: int
    failure_notified: bool
    cursors: dict[str, Cursor] = field(default_factory=dict)
    #: "oauth2": the password is the account's OAuth access token (``oauth.tokens``)
    auth_method: str = "password"

    @property
    def settings_key(self) -> tuple[object, ...]:
        """Changes when a reconnect is needed."""
        return (self.host, self.port, self.mode, self.username, self.allow_plaintext_auth, self.credentials_version)

    def server(self, password: Secret) -> ImapServer:
        return ImapServer(
            host=self.host,
            port=self.port,
            mode=self.mode,
            username=self.username,
            password=password,
            folder=self.folder,
            allow_plaintext_auth=self.allow_plaintext_auth,
            auth_mechanism="oauth2" if self.auth_method == "oauth2" else "password",
        )


async def load(session: AsyncSession, ids: list[uuid.UUID]) -> dict[uuid.UUID, Mailbox]:
    if not ids:
        return {}
    rows = await session.execute(
        select(EmailAccount, MailboxSync)
        .join(MailboxSync, MailboxSync.account_id == EmailAccount.id)
        .where(EmailAccount.id.in_(ids), EmailAccount.imap_host.is_not(None))
    )
    out: dict[uuid.UUID, Mailbox] = {}
    for account, sync in rows.all():
        assert account.imap_host is not None
        out[account.id] = Mailbox(
            account_id=account.id,
            workspace_id=account.workspace_id,
            email=account.email,
            host=account.imap_host,
            port=account.imap_port or 993,
            mode=account.imap_mode or "ssl",  # type: ignore[arg-type]
            username=account.imap_username or account.email,
            folder=account.imap_folder or "INBOX",
            allow_plaintext_auth=account.imap_allow_plaintext_auth,
            interval=account.sync_interval_seconds,
            credentials_version=account.credentials_version,
            created_at=account.created_at,
            next_poll_at=sync.next_poll_at,
            consecutive_failures=sync.consecutive_failures,
            failure_notified=sync.failure_notified_at is not None,
            auth_method=account.auth_method,
        )
    folders = await session.scalars(select(MailboxFolder).where(MailboxFolder.account_id.in_(list(out))))
    for row in folders:
        state: State = "polling" if row.state == "polling" else "initial"
        out[row.account_id].cursors[row.name] = Cursor(state, row.uidvalidity, row.last_uid, row.resets)
    return out


async def register(session: AsyncSession, account: EmailAccount) -> None:
    """Create or remove the account's sync row to match whether it has IMAP (call after a flush)."""
    if account.imap_host is None:
        await session.execute(delete(MailboxSync).where(MailboxSync.account_id == account.id))
        return
    now = utcnow()
    due = now + timedelta(seconds=spread_offset(account.id, account.sync_interval_seconds))
    await session.execute(
        insert(MailboxSync)
        .values(
            account_id=account.id,
            workspace_id=account.workspace_id,
            status="pending",
            next_poll_at=due,
            consecutive_failures=0,
            messages_stored=0,
            created_at=now,
            updated_at=now,
        )
        .on_conflict_do_nothing(index_elements=["account_id"])
    )
