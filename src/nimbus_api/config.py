"""Settings, read once from the environment (prefix ``NIMBUS_``) by pydantic-settings.

Every setting is listed with its default in the README ("Settings"). Secrets (master keys) are held as
``SecretStr`` so that a settings dump, a traceback or a log line never shows them.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

# The default blocklists (read by ``blocklists.lists``, whose docstring says how each one's answers read).
DEFAULT_BLOCKLISTS: tuple[str, ...] = (
    "zen.spamhaus.org:ip:blocking",
    "b.barracudacentral.org:ip:blocking",
    "bl.spamcop.net:ip:info",
    "dbl.spamhaus.org:domain:blocking",
    "multi.surbl.org:domain:blocking",
    "multi.uribl.com:domain:blocking",
)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="NIMBUS_", extra="ignore", env_file=None)

    # --- stores -------------------------------------------------------------------------------
    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL of PostgreSQL, e.g. postgresql+asyncpg://user@host:5432/nimbus.",
    )
    redis_url: str | None = Field(default=None, description="Redis URL for arq, e.g. redis://host:6379/0.")
    db_pool_size: int = Field(default=10, ge=1, le=200)
    db_max_overflow: int = Field(default=10, ge=0, le=200)

    # --- secrets ------------------------------------------------------------------------------
    master_keys: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated Fernet master keys; the first is primary (wraps new data keys).",
    )

    # --- HTTP ---------------------------------------------------------------------------------
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    public_url: str = "http://127.0.0.1:8000"
    max_body_bytes: int = Field(
        default=1_048_576,
        ge=1024,
        description="Largest request body accepted (bytes); a larger one is a 413 before it is read.",
    )
    max_import_body_bytes: int = Field(
        default=20 * 1_048_576,
        ge=1024,
        description="Largest body of the contact imports (`/v1/contacts/import`, `/v1/contacts/import/csv`).",
    )

    # --- outbound connections to user-supplied hosts ------------------------------------------
    egress_allow: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated CIDRs, host names and `:PORT` entries the egress policy lets through "
        "although they are private/loopback or on a non-standard port. Metadata addresses never pass.",
    )
    dns_nameservers: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated `IP[:PORT]` resolvers for DNS checks and host resolution; "
        "empty = the system's resolv.conf.",
    )
    dns_timeout_seconds: float = Field(default=5.0, gt=0, le=60)
    extra_ca_file: Path | None = Field(default=None, description="PEM file of extra trusted CA certificates.")
    connect_timeout_seconds: float = Field(default=10.0, gt=0, le=120)
    command_timeout_seconds: float = Field(default=20.0, gt=0, le=300)
    roundtrip_timeout: float = Field(default=60.0, gt=0, le=600, description="Seconds to wait for the test message.")
    verification_timeout_seconds: float = Field(default=120.0, gt=0, le=900)
    verify_limit_per_account: int = Field(default=5, ge=1, description="Verifications per window per account.")
    verify_limit_per_workspace: int = Field(default=30, ge=1)
    verify_window_seconds: int = Field(default=600, ge=1)
    auth_failure_limit: int = Field(default=5, ge=1, description="Failed logins before an account stops trying.")
    auth_failure_window_seconds: int = Field(default=1800, ge=1)

    # --- sending ------------------------------------------------------------------------------
    smtp_rate_per_connection: float = Field(
        default=5.0,
        ge=0,
        le=1000,
        description=(
            "Sends per second per SMTP connection, all workers together; 0 turns pacing off, but an inbox's"
            " connections still stay within its max_connections across all workers."
        ),
    )
    send_lease_seconds: int = Field(default=300, ge=10, le=3600)
    send_batch: int = Field(
        default=1000,
        ge=1,
        le=5000,
        description="Due enrollments a dispatch transaction takes from one campaign; a tick repeats full "
        "batches (round-robin over campaigns) for up to 4 s, so this sets the size of a commit, not a rate.",
    )
    send_commit_every: int = Field(
        default=25,
        ge=1,
        le=500,
        description="Messages per connection between commits of the sender (attempts started, outcomes "
        "recorded). Larger is faster; a worker killed mid-chunk leaves up to this many messages per "
        "connection recorded 'unknown', sent or not. With pacing on, a chunk is at most one second of sends.",
    )

    # --- behaviour ----------------------------------------------------------------------------
    data_key_max_age_days: int = Field(
        default=90,
        ge=0,
        le=3650,
        description="The worker rotates a workspace's data key (hourly check) once it is older than this; "
        "0 turns scheduled rotation off.",
    )
    max_accounts_per_workspace: int = Field(
        default=1000,
        ge=0,
        le=1_000_000,
        description="Email accounts a workspace may hold, unless `nimbus workspace set-limit` gave it its own.",
    )
    allow_special_use_domains: bool = Field(
        default=False,
        description="Accept addresses under .test, .invalid and .localhost (RFC 6761), for a staging or local "
        "mail world; logged as a warning at start. Off in production.",
    )
    idempotency_ttl_hours: int = Field(default=24, ge=1, le=24 * 30)
    event_retention_days: int = Field(
        default=30, ge=1, le=3650, description="Events older than this are purged by the worker (hourly)."
    )
    webhook_allow_http: bool = Field(
        default=False,
        description="Accept `http://` webhook endpoint URLs (internal receivers); otherwise `https://` only.",
    )
    webhook_secret_overlap_hours: int = Field(
        default=24,
        ge=0,
        le=24 * 30,
        description="After a webhook secret rotation, the previous secret stays valid (deliveries are signed "
        "with both) for this long.",
    )
    webhook_timeout_seconds: float = Field(
        default=15.0,
        gt=0,
        le=60,
        description="A delivery succeeds only with a 2xx answer within this time (connect to last byte).",
    )
    webhook_max_in_flight: int = Field(
        default=4, ge=1, le=100, description="At most this many concurrent requests to one endpoint, across workers."
    )
    webhook_worker_concurrency: int = Field(
        default=64, ge=1, le=1000, description="At most this many webhook requests in flight per worker process."
    )
    webhook_disable_after_days: float = Field(
        default=5.0,
        gt=0,
        le=60,
        description="An endpoint whose every attempt has failed for this long is disabled, with a reason.",
    )
    webhook_retry_after_cap_seconds: int = Field(
        default=3600,
        ge=0,
        le=86400,
        description="A `Retry-After` on 429/502/503/504 is honoured up to this many seconds.",
    )
    webhook_dispatcher: bool = Field(
        default=True, description="Run the webhook dispatcher in this worker process (every worker may)."
    )
    webhook_poll_seconds: float = Field(
        default=1.0,
        gt=0,
        le=60,
        description="The dispatcher looks for due retries at least this often (new events wake it at once).",
    )
    bounce_min_sample: int = Field(
        default=20,
        ge=1,
        le=100000,
        description="The bounce guard judges an inbox's bounce rate in a campaign only after this many of its "
        "SMTP transactions in that campaign.",
    )
    sync_enabled: bool = Field(
        default=True, description="Run the IMAP sync in this worker process (every worker may; leases share the work)."
    )
    sync_max_connections: int = Field(
        default=500,
        ge=1,
        le=20000,
        description="A worker process holds at most this many mailboxes (one persistent IMAP connection each).",
    )
    sync_concurrency: int = Field(
        default=32, ge=1, le=1000, description="At most this many mailbox polls in flight per worker process."
    )
    sync_lease_seconds: float = Field(
        default=45.0,
        ge=5,
        le=600,
        description="A worker's hold on a mailbox lasts this long unless renewed (every third of it); a dead "
        "worker's mailboxes are taken over after it.",
    )
    sync_max_message_bytes: int = Field(
        default=2 * 1024 * 1024,
        ge=64 * 1024,
        le=50 * 1024 * 1024,
        description="A bigger message is stored as its header and first part only, marked truncated.",
    )
    sync_window_days: int = Field(
        default=14,
        ge=1,
        le=90,
        description="After a UIDVALIDITY change (and on a mailbox's first sync) the sync re-reads this many "
        "days (SEARCH SINCE); Message-IDs already stored are skipped.",
    )
    sync_idle_close_seconds: float = Field(
        default=900.0, ge=30, le=86400, description="A sync connection unused for this long is closed."
    )
    sync_backoff_max_seconds: float = Field(
        default=1800.0,
        ge=30,
        le=86400,
        description="After failures a mailbox is retried later and later (its interval doubled per failure, "
        "with jitter), at most this long apart.",
    )
    # --- health scores (health/) -------------------------------------------------------------
    deliverability_enabled: bool = Field(
        default=True,
        description="Run the deliverability crons in this worker process: health recompute, stage table, "
        "warmup exchange, nightly domain checks, alert rules, provider quotas (every worker may: the runs lock "
        "the rows they write, and arq runs each cron once per tick).",
    )
    health_recompute_seconds: int = Field(
        default=300,
        ge=60,
        le=3600,
        description="Every inbox's health is recomputed this often (whole minutes; a worker cron).",
    )
    health_request_seconds: int = Field(
        default=10,
        ge=1,
        le=59,
        description="Inboxes whose health an event moved (a bounce, a complaint, a login failure, a listing) "
        "are recomputed at most this long after it.",
    )
    health_batch: int = Field(
        default=2000,
        ge=1,
        le=100000,
        description="Inboxes per health recompute statement (and transaction).",
    )
    health_concurrency: int = Field(
        default=2,
        ge=1,
        le=16,
        description="Health recompute batches run at once by the periodic recompute (one connection each).",
    )

    # --- warmup stages, warmup pause and cooldown (stages/) -----------------------------------
    warmup_max_bounce_rate_7d: float = Field(
        default=3.0,
        ge=0,
        le=100,
        description="Percent. Over it, warmup pauses and the inbox's stage is 0 (no graduation) until the "
        "7-day bounce rate is back at or under it.",
    )
    warmup_max_complaint_rate_7d: float = Field(
        default=0.3,
        ge=0,
        le=100,
        description="Percent. Over it, warmup pauses and the stage is 0, as for the bounce rate.",
    )
    cooldown_bounce_burst: int = Field(
        default=3, ge=1, le=1000, description="Hard bounces within the window that put an inbox in cooldown."
    )
    cooldown_bounce_window_minutes: int = Field(
        default=60, ge=1, le=7 * 24 * 60, description="The window (minutes) the bounce burst is counted in."
    )
    cooldown_bounce_minutes: int = Field(
        default=720,
        ge=1,
        le=30 * 24 * 60,
        description="A bounce burst's cooldown lasts this long (minutes) after the burst's latest hard bounce.",
    )
    cooldown_complaint_minutes: int = Field(
        default=1440, ge=1, le=30 * 24 * 60, description="A complaint's cooldown lasts this long (minutes) after it."
    )

    # --- domain health (domains.health, blocklists) --------------------------------------------
    domain_check_timeout_seconds: float = Field(
        default=15.0,
        gt=0,
        le=120,
        description="A domain check's DNS part (MX, SPF, DKIM, DMARC) and its alignment part each finish within this.",
    )
    domain_check_hour: int = Field(
        default=3, ge=0, le=23, description="The nightly re-check of every sending domain starts at this hour (UTC)."
    )
    domain_check_limit: int = Field(
        default=6, ge=1, description="On-demand checks (`POST /v1/domains/{id}/check`) per domain per window."
    )
    domain_check_limit_per_workspace: int = Field(
        default=60, ge=1, description="On-demand checks per workspace per window."
    )
    domain_check_window_seconds: int = Field(default=3600, ge=1)
    blocklists: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: list(DEFAULT_BLOCKLISTS),
        description="Comma-separated `zone:ip|domain:blocking|info` DNS blocklists; a listing on a `blocking` "
        "list pauses the domain. Empty = none. The large lists refuse public resolvers: set NIMBUS_DNS_NAMESERVERS.",
    )
    blocklist_timeout_seconds: float = Field(
        default=5.0, gt=0, le=60, description="Every blocklist query of one check finishes within this (else unknown)."
    )
    blocklist_concurrency: int = Field(default=16, ge=1, le=256, description="Blocklist queries in flight per check.")
    blocklist_max_ttl_seconds: int = Field(
        default=3600, ge=0, le=86400, description="Blocklist answers are cached for their TTL, at most this long."
    )

    # --- warmup exchange (nimbus_api.warmup) ----------------------------------------------------
    warmup_pool: Literal["platform", "workspace"] = Field(
        default="platform",
        description="Who warming inboxes exchange warmup mail with: `platform`, every warming inbox of the "
        "deployment (a platform-wide pool); `workspace`, only the warming inboxes of their own workspace.",
    )
    warmup_daily_limit: int = Field(
        default=5,
        ge=0,
        le=500,
        description="Warmup messages a warming inbox sends a day unless its own `warmup_daily_limit` is set; "
        "counted apart from the campaign budget (replies included).",
    )
    warmup_window_start_hour: int = Field(
        default=7, ge=0, le=23, description="Warmup sends are spread over the UTC hours from this one ..."
    )
    warmup_window_end_hour: int = Field(
        default=21, ge=1, le=24, description="... to this one (exclusive); planned at random times within."
    )
    warmup_reply_share: float = Field(
        default=0.4,
        ge=0,
        le=1,
        description="Share of received warmup messages the receiving inbox answers in thread; as many of "
        "each inbox's daily warmup count are kept free for these replies.",
    )
    warmup_flag_share: float = Field(
        default=0.1, ge=0, le=1, description="Share of received warmup messages that are also flagged."
    )
    warmup_max_thread_depth: int = Field(
        default=2, ge=0, le=10, description="A warmup thread ends after this many replies."
    )
    warmup_reply_delay_max_minutes: int = Field(
        default=90, ge=0, le=24 * 60, description="A reply is sent within this many minutes of being decided."
    )
    warmup_lease_seconds: int = Field(
        default=300,
        ge=10,
        le=3600,
        description="A warmup send not recorded within this long after it began is recorded `unknown`, never "
        "sent again (at most once).",
    )
    warmup_max_attempts: int = Field(
        default=3, ge=1, le=20, description="A warmup message refused this many times (temporarily) is `failed`."
    )
    # --- end of warmup exchange -----------------------------------------------------------------

    # --- alerts and monitoring ----------------------------------------------------------------
    alert_evaluation_minutes: int = Field(
        default=1,
        ge=1,
        le=60,
        description="The worker evaluates every workspace's alert rules every this many minutes (at the "
        "minutes of the hour divisible by it).",
    )
    # --- metrics and provider quotas ----------------------------------------------------------
    metrics_token: SecretStr | None = Field(
        default=None,
        description="Bearer token `GET /metrics` requires (constant-time compare). Unset: the API has no "
        "/metrics (404); `nimbus metrics` (a bind of its own) then answers without one.",
    )
    metrics_postgres: bool = Field(
        default=True,
        description="/metrics also reads the PostgreSQL gauges (queue depth, IMAP sync lag) at scrape time; "
        "turn off on every scrape target but one if the duplicates bother you.",
    )
    metrics_host: str = Field(default="127.0.0.1", description="`nimbus metrics`: the interface to bind.")
    metrics_port: int = Field(default=9464, ge=1, le=65535, description="`nimbus metrics`: the port.")
    ses_endpoint_url: str | None = Field(
        default=None,
        description="Amazon SES API endpoint for quota reads (an SES-compatible service, or a test server); "
        "unset: `https://email.<region>.amazonaws.com`. The egress policy applies to it.",
    )
    ses_quota_refresh_seconds: int = Field(
        default=3600,
        ge=60,
        le=7 * 86400,
        description="An account's SES send quota is read again this long after the last read (and at once "
        "after its SES credentials are set).",
    )
    ses_timeout_seconds: float = Field(default=10.0, gt=0, le=120, description="Timeout of one SES API call.")

    # --- OAuth accounts (Google, Microsoft: oauth/) --------------------------------------------
    # An operator registers an app with each provider (README: OAuth accounts) and sets its client id and
    # secret; the endpoint URLs default to the providers' own and are overridden only to point elsewhere
    # (a test authorization server). The mail hosts are the providers'; tests point them at a mail world.
    oauth_google_client_id: str | None = Field(default=None, description="Google OAuth client id (unset: off).")
    oauth_google_client_secret: SecretStr | None = Field(default=None, description="Google OAuth client secret.")
    oauth_google_authorize_url: str = "https://accounts.google.com/o/oauth2/v2/auth"
    oauth_google_token_url: str = "https://oauth2.googleapis.com/token"
    oauth_google_revoke_url: str | None = "https://oauth2.googleapis.com/revoke"
    oauth_google_smtp_host: str = "smtp.gmail.com"
    oauth_google_smtp_port: int = Field(default=465, ge=1, le=65535)
    oauth_google_smtp_mode: Literal["ssl", "starttls"] = "ssl"
    oauth_google_imap_host: str = "imap.gmail.com"
    oauth_google_imap_port: int = Field(default=993, ge=1, le=65535)
    oauth_microsoft_client_id: str | None = Field(default=None, description="Microsoft (Entra) app id (unset: off).")
    oauth_microsoft_client_secret: SecretStr | None = Field(default=None, description="Microsoft client secret.")
    oauth_microsoft_authorize_url: str = "https://login.microsoftonline.com/common/oauth2/v2.0/authorize"
    oauth_microsoft_token_url: str = "https://login.microsoftonline.com/common/oauth2/v2.0/token"
    oauth_microsoft_revoke_url: str | None = None
    oauth_microsoft_smtp_host: str = "smtp.office365.com"
    oauth_microsoft_smtp_port: int = Field(default=587, ge=1, le=65535)
    oauth_microsoft_smtp_mode: Literal["ssl", "starttls"] = "starttls"
    oauth_microsoft_imap_host: str = "outlook.office365.com"
    oauth_microsoft_imap_port: int = Field(default=993, ge=1, le=65535)
    oauth_frontend_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated origins (`https://app.example.com`) the OAuth callback may send the "
        "browser back to; a `frontend_url` elsewhere is refused (422 `oauth.frontend_not_allowed`).",
    )
    oauth_state_ttl_seconds: int = Field(default=600, ge=60, le=3600, description="An authorize URL's lifetime.")
    oauth_refresh_margin_seconds: int = Field(
        default=300, ge=0, le=3000, description="Access tokens are refreshed this long before they expire."
    )
    oauth_http_timeout_seconds: float = Field(default=10.0, gt=0, le=60, description="Token endpoint timeout.")

    # --- provider webhooks: bounces and complaints from sending services (provider_hooks) ------
    provider_hooks_max_age_seconds: int = Field(
        default=900,
        ge=30,
        le=86400,
        description="A notification whose signed timestamp (SNS, SendGrid, Mailgun) is older, or further "
        "in the future, than this is refused as stale.",
    )
    provider_hooks_sns_url_pattern: str = Field(
        default=r"^https://sns\.[a-z0-9-]+\.amazonaws\.com(\.cn)?/",
        description="Regular expression the SNS SigningCertURL and SubscribeURL must match (from the start): "
        "by default Amazon SNS's own endpoints over https. The egress policy applies as well.",
    )
    provider_hooks_retention_days: int = Field(
        default=30,
        ge=1,
        le=3650,
        description="Accepted notifications (their event ids, which make a replay a no-op) are kept this long.",
    )
    provider_hooks_timeout_seconds: float = Field(
        default=10.0, gt=0, le=60, description="Timeout of a SNS certificate fetch or subscription confirmation."
    )

    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["console", "json"] = "console"

    # --- fleet imports (nimbus_api.account_imports) ----------------------------------------------
    account_import_max_rows: int = Field(default=1000, ge=1, le=10_000, description="Mailboxes per import.")
    account_import_max_bytes: int = Field(
        default=5 * 1024 * 1024, ge=1024, description="Largest import file (CSV or JSON) in bytes."
    )
    account_import_per_host: int = Field(
        default=4,
        ge=1,
        le=100,
        description="Verifications of imported rows running at once against one SMTP or IMAP host (all workers).",
    )
    account_import_per_workspace: int = Field(
        default=16, ge=1, le=200, description="Verifications of imported rows running at once per workspace."
    )
    account_import_lease_seconds: float = Field(
        default=30.0,
        gt=0,
        le=3600,
        description="A runner renews its leases (import, rows, Redis semaphore places) every third of this; a "
        "runner that died lets them expire after this long, and the rows are verified again.",
    )
    account_import_verify_limit_per_workspace: int = Field(
        default=5000,
        ge=1,
        description="Imported rows' verifications per workspace per `NIMBUS_VERIFY_WINDOW_SECONDS` (the "
        "per-address limit and the failed-login lock apply as to one account).",
    )

    # --- local development (make run) ---------------------------------------------------------
    data_dir: Path = Path(".nimbus")
    embedded: Literal["auto", "always", "never"] = Field(
        default="auto",
        description="`nimbus dev`: start embedded PostgreSQL/Redis when no URL is set and nothing listens.",
    )

    @field_validator("master_keys", mode="before")
    @classmethod
    def _split_keys(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator(
        "cors_origins", "egress_allow", "dns_nameservers", "blocklists", "oauth_frontend_origins", mode="before"
    )
    @classmethod
    def _split_origins(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
