"""A connected mailbox: one sending address with its SMTP (and optional IMAP) settings.

Secrets are not columns here: they live encrypted in ``credentials`` (one row per kind). Health fields
start at the values a new custom-SMTP inbox gets and are owned by the health engine later.

Account status: ``is_active`` is the person's switch (pause/resume); ``disabled_at``/``disabled_reason``
is the platform's (credential failures, bounce rate). An account sends only when active and not disabled.

Verification: ``last_verification`` holds the latest result of the connect-time checks.
``verification_locked_at`` is set after too many failed logins and cleared when a person changes the
connection settings; ``credentials_version`` goes up whenever they change, so pooled connections built
with older credentials are retired (sends already handed to SMTP finish on them).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, Integer, String, Text, false, text
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import Mapped, mapped_column

from nimbus_api.kit.db import Base, utcnow
from nimbus_api.kit.ids import new_id


class EmailAccount(Base):
    __tablename__ = "email_accounts"
    __table_args__ = (
        Index("uq_email_accounts_workspace_email", "workspace_id", text("lower(email)"), unique=True),
        # The rotation order of a workspace's inboxes, least recently used first (``sending.rotation``): a
        # pick walks it from the front and stops at the first eligible inboxes of the pool instead of
        # reading and sorting the whole pool, and each pick's stamp (``max(last_sent_at) + n us`` of the
        # workspace) is one lookup at its back. It also serves as the workspace foreign key's index.
        Index("ix_email_accounts_rotation", "workspace_id", text("last_sent_at NULLS FIRST"), "id"),
        # The inboxes waiting for a health recompute (``health.requests``): partial, so only they are in it.
        Index(
            "ix_email_accounts_health_requested",
            "health_requested_at",
            postgresql_where=text("health_requested_at IS NOT NULL"),
        ),
        # The provider-quota refresh: accounts with SES credentials, least recently checked first.
        Index(
            "ix_email_accounts_quota_due",
            text("provider_quota_checked_at NULLS FIRST"),
            postgresql_where=text("ses_region IS NOT NULL"),
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    workspace_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    domain_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("domains.id"), index=True)

    email: Mapped[str] = mapped_column(String(320))
    from_name: Mapped[str | None] = mapped_column(String(200))
    reply_to: Mapped[str | None] = mapped_column(String(320))
    label: Mapped[str | None] = mapped_column(String(200))
    description: Mapped[str | None] = mapped_column(Text)
    provider: Mapped[str] = mapped_column(String(40), default="custom")

    smtp_host: Mapped[str] = mapped_column(String(253))
    smtp_port: Mapped[int] = mapped_column(Integer)
    smtp_mode: Mapped[str] = mapped_column(String(10))
    smtp_username: Mapped[str | None] = mapped_column(String(320))
    smtp_allow_plaintext_auth: Mapped[bool] = mapped_column(default=False, server_default=false())

    imap_host: Mapped[str | None] = mapped_column(String(253))
    imap_port: Mapped[int | None] = mapped_column(Integer)
    imap_mode: Mapped[str | None] = mapped_column(String(10))
    imap_username: Mapped[str | None] = mapped_column(String(320))
    imap_folder: Mapped[str | None] = mapped_column(String(200))
    imap_allow_plaintext_auth: Mapped[bool] = mapped_column(default=False, server_default=false())

    dkim_selector: Mapped[str | None] = mapped_column(String(63))
    daily_send_limit: Mapped[int] = mapped_column(Integer, default=100)
    daily_new_contacts_limit: Mapped[int | None] = mapped_column(Integer, default=None)
    max_connections: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    min_send_interval_seconds: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # The last pick's stamp (``sending.rotation``); indexed by ix_email_accounts_rotation.
    last_sent_at: Mapped[datetime | None] = mapped_column(default=None)
    sync_interval_seconds: Mapped[int] = mapped_column(Integer, default=120)
    campaign_types: Mapped[list[str]] = mapped_column(ARRAY(String(20)))
    is_active: Mapped[bool] = mapped_column(default=True)

    overall_score: Mapped[float] = mapped_column(default=50.0)
    reputation_score: Mapped[float] = mapped_column(default=50.0)
    warmup_progress: Mapped[float] = mapped_column(default=0.0)
    current_stage: Mapped[int] = mapped_column(Integer, default=0)
    #: a person's stage (an inbox warmed elsewhere): while set, the platform never changes the stage
    #: (``stages.service``); NULL: the stage follows the stage table
    stage_override: Mapped[int | None] = mapped_column(Integer, default=None)
    bounce_rate_7d: Mapped[float] = mapped_column(default=0.0)
    complaint_rate_7d: Mapped[float] = mapped_column(default=0.0)
    cooldown_until: Mapped[datetime | None] = mapped_column(default=None)
    #: the inbox takes part in the native warmup exchange
    warmup_enabled: Mapped[bool] = mapped_column(default=False, server_default=false())
    #: warmup messages sent in all: stages are earned on it (with healthy indicators), never on age
    warmup_sent_total: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    #: the band of the last recompute (``health.score``: healthy | watch | at_risk | blocked)
    health_band: Mapped[str] = mapped_column(String(10), default="watch", server_default="watch")
    #: every component of the last recompute: value, score, weight and the data behind it
    health_components: Mapped[dict[str, Any] | None] = mapped_column(JSONB, default=None)
    health_computed_at: Mapped[datetime | None] = mapped_column(default=None)
    #: something that moves the health happened (a bounce, a complaint, a login failure, a listing) and
    #: the inbox waits for its own recompute (``health.requests``); cleared by that recompute
    health_requested_at: Mapped[datetime | None] = mapped_column(default=None)
    #: warmup messages a day (sent apart from the campaign budget); NULL: ``NIMBUS_WARMUP_DAILY_LIMIT``
    warmup_daily_limit: Mapped[int | None] = mapped_column(Integer, default=None)
    disabled_at: Mapped[datetime | None] = mapped_column(default=None)
    disabled_reason: Mapped[str | None] = mapped_column(String(200), default=None)

    last_verification: Mapped[dict[str, Any] | None] = mapped_column(JSONB, default=None)
    last_verified_at: Mapped[datetime | None] = mapped_column(default=None)
    verification_locked_at: Mapped[datetime | None] = mapped_column(default=None)
    credentials_version: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    #: "password": the stored SMTP/IMAP passwords log in; "oauth2": an OAuth access token does (``oauth``)
    auth_method: Mapped[str] = mapped_column(String(10), default="password", server_default="password")

    # Provider send quota (``provider_quotas``): the SES region of the stored SES API credentials (NULL:
    # none), what GetSendQuota said and when, and why the last read failed. ``checked_at`` NULL: due now.
    ses_region: Mapped[str | None] = mapped_column(String(30), default=None)
    provider_quota_max_24h: Mapped[float | None] = mapped_column(default=None)
    provider_quota_sent_24h: Mapped[float | None] = mapped_column(default=None)
    provider_quota_max_rate: Mapped[float | None] = mapped_column(default=None)
    provider_quota_read_at: Mapped[datetime | None] = mapped_column(default=None)
    provider_quota_checked_at: Mapped[datetime | None] = mapped_column(default=None)
    provider_quota_error_code: Mapped[str | None] = mapped_column(String(60), default=None)
    provider_quota_error_detail: Mapped[str | None] = mapped_column(Text, default=None)

    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
