"""Fleet imports: one upload of up to 1,000 mailboxes (``account_imports``) and its rows
(``account_import_rows``), each verified on its own in the workers (``nimbus_api.account_imports``).

A row keeps the account's settings without secrets (``settings``, JSON) and its passwords encrypted under
the workspace's data key (``data_key_id``, ``smtp_ciphertext``, ``imap_ciphertext``), sealed as soon as the
upload was read; the ciphertexts are erased when the row reaches a final state. ``account_id`` links the
row to the account it created, written in the transaction that creates the account: a row retried after a
crash either finds its link or finds nothing written, never half of it.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, Integer, LargeBinary, String, Text, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from nimbus_api.kit.db import Base, utcnow
from nimbus_api.kit.ids import new_id


class AccountImport(Base):
    __tablename__ = "account_imports"
    __table_args__ = (Index("ix_account_imports_workspace_id_id", "workspace_id", "id"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    workspace_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    status: Mapped[str] = mapped_column(String(20), default="running")
    source: Mapped[str] = mapped_column(String(10))
    filename: Mapped[str | None] = mapped_column(String(255))
    total_rows: Mapped[int] = mapped_column(Integer)
    created_by: Mapped[str] = mapped_column(String(100))
    # the one runner working on the import holds this lease and renews it; expired: a cron resumes it
    runner_lease_until: Mapped[datetime | None] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column()


class AccountImportRow(Base):
    __tablename__ = "account_import_rows"
    __table_args__ = (
        Index("ix_account_import_rows_import_id_row", "import_id", "row_number"),
        Index(
            "ix_account_import_rows_open",
            "import_id",
            "state",
            postgresql_where=text("state IN ('pending', 'verifying')"),
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    import_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("account_imports.id", ondelete="CASCADE"))
    workspace_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"), index=True)
    row_number: Mapped[int] = mapped_column(Integer)
    email: Mapped[str | None] = mapped_column(String(320))
    state: Mapped[str] = mapped_column(String(20))
    code: Mapped[str | None] = mapped_column(String(80))
    field: Mapped[str | None] = mapped_column(String(100))
    detail: Mapped[str | None] = mapped_column(Text)
    hint: Mapped[str | None] = mapped_column(Text)
    smtp_host: Mapped[str | None] = mapped_column(String(253))
    imap_host: Mapped[str | None] = mapped_column(String(253))
    settings: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    data_key_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("data_keys.id"))
    smtp_ciphertext: Mapped[bytes | None] = mapped_column(LargeBinary)
    imap_ciphertext: Mapped[bytes | None] = mapped_column(LargeBinary)
    account_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("email_accounts.id", ondelete="SET NULL"))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    lease_until: Mapped[datetime | None] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
