"""One alert: a rule's condition held for one subject (an inbox or a domain) from ``since`` until
``resolved_at``. The state machine is in ``alerts`` (the package docstring): at most one active row per
(rule, subject), enforced by a partial unique index, which is what makes a trigger happen once.

Rows outlive their rule (``rule_id`` is set NULL when it is deleted) and their subject (no foreign key),
so the alert history keeps what was alerted on; ``kind``, ``threshold`` and ``subject_name`` are copied
from the rule and the subject at trigger time for that reason.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import ForeignKey, Index, String, text
from sqlalchemy.orm import Mapped, mapped_column

from nimbus_api.kit.db import Base, utcnow
from nimbus_api.kit.ids import new_id


class AlertState(Base):
    __tablename__ = "alert_states"
    __table_args__ = (
        # The compare-and-set of a trigger: a second active row for the same pair is a conflict.
        Index("uq_alert_states_active", "rule_id", "subject_id", unique=True, postgresql_where=text("active")),
        # What an evaluation resolves: the active alerts of one kind.
        Index("ix_alert_states_active_kind", "kind", postgresql_where=text("active")),
        # The alert list of a workspace, newest first (and its foreign key's index).
        Index("ix_alert_states_workspace", "workspace_id", "id"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    workspace_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    rule_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("alert_rules.id", ondelete="SET NULL"), index=True)
    kind: Mapped[str] = mapped_column(String(30))
    severity: Mapped[str] = mapped_column(String(10))
    subject_type: Mapped[str] = mapped_column(String(10))
    subject_id: Mapped[uuid.UUID] = mapped_column()
    subject_name: Mapped[str] = mapped_column(String(320))
    threshold: Mapped[float | None] = mapped_column(default=None)
    #: the measured value when it triggered, and at the latest evaluation (``None`` for yes/no kinds)
    value: Mapped[float | None] = mapped_column(default=None)
    last_value: Mapped[float | None] = mapped_column(default=None)
    active: Mapped[bool] = mapped_column(default=True)
    since: Mapped[datetime] = mapped_column(default=utcnow)
    resolved_at: Mapped[datetime | None] = mapped_column(default=None)
    #: condition_ended | rule_disabled | rule_deleted
    resolved_reason: Mapped[str | None] = mapped_column(String(20), default=None)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
