"""An inbox's health: ten components, each scored 0..100, and two weighted means of them. A pure function.

Every number here lives in ``COMPONENTS``, ``BANDS`` and ``WINDOW_DAYS``: the set-based recompute in
PostgreSQL (``health.recompute``) takes them as bind parameters, so the SQL and ``compute`` cannot drift
apart (a test recomputes 1,000 random inboxes both ways and compares them to 1e-6).

The inputs (``Inputs``) are what the product already records, read with the product's own definitions:

* ``sends``, ``bounces``, ``complaints``: the 7-day sums of ``account_daily_usage`` (today and the 6 UTC days
  before), the same rows and window as ``inbox.rates`` (``bounce_rate_7d``, ``complaint_rate_7d``): a
  bounce there is a permanent refusal (a 5xx at send time, or a report failing the recipient permanently).
* ``accepted``: messages the inbox's server took (``messages.sent_at``) in the last 7 x 24 hours.
* ``failed_attempts``: the attempts that did not deliver (``send_attempts``, same window); among them
  ``connection_failures`` (``CONNECTION_FAILURE_CODES``: the connection or its TLS could not be made or was
  lost). ``attempted = accepted + failed_attempts``.
* ``auth_failures``: the pauses of the inbox for a refused login in the window (``account_events`` of kind
  ``paused`` whose ``reason`` is in ``AUTH_FAILURE_CODES``). A refused login stops the run and pauses the
  inbox (``sending.record.pause_inbox``), which writes that event once per pause; the attempt row itself
  may go with the step-1 messages handed to other inboxes, so the event is the record that stays.
* ``replies``: inbound messages classified ``reply`` in the same window.
* ``sync_status``/``sync_failures``: ``mailbox_syncs.status`` and ``consecutive_failures`` (``None``: no IMAP).
* ``dns_status`` and ``blocklist_status``: the inbox's domain's latest verdicts (``domains``).
* ``warmup_progress``: ``email_accounts.warmup_progress`` (0..100).

Scoring. Most components are a *ramp*: ``floor + (100 - floor) * clamp01((value - zero_at) / (full_at -
zero_at))``; the score is 100 at ``full_at`` and beyond, ``floor`` at ``zero_at`` and beyond (``full_at`` is
lower than ``zero_at`` where less is better). Others map a verdict to a score (``levels``).

Neutral below a minimum sample: a rate whose denominator is under ``min_sample`` scores ``NEUTRAL`` (50),
whatever its value (two sends and one bounce say nothing yet). A count (auth failures) below its sample
scores ``min(NEUTRAL, ramp)``: a clean record proves nothing yet, but failures count at once. Every verdict
that is not known yet (``unknown``, IMAP ``pending`` or absent) is also 50, and warmup progress ramps from 50
at 0 %. So an inbox with no data at all scores exactly 50 in every component, hence 50 overall and in
reputation.

``overall`` is the weighted mean of all ten components; ``reputation`` the weighted mean of the four that
reflect what receivers think of the inbox (bounces, complaints, blocklists, replies).

Bands (``band_of``): each score falls in ``healthy`` (>= 70), ``watch`` (>= 45), ``at_risk`` (>= 25) or
``blocked`` (< 25); the inbox's band is the worse of its overall and reputation bands, and ``blocked``
whenever its domain is listed on a blocklist. A new inbox (50, 50) is ``watch``: not proven yet.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

NEUTRAL = 50.0
WINDOW_DAYS = 7
"""The window of every rate and count: the same 7 days as ``inbox.rates.WINDOW_DAYS``."""

CONNECTION_FAILURE_CODES: tuple[str, ...] = (
    "smtp.connection_refused",
    "smtp.connection_lost",
    "smtp.host_unresolvable",
    "smtp.host_not_allowed",
    "smtp.timeout",
    "smtp.tls_handshake_failed",
    "smtp.tls_certificate_invalid",
)
"""The SMTP adapter's codes (``smtp.connection``) for a connection that could not be made, kept or secured:
no reply of the server's was judged, so they say nothing about the message or the recipient."""

AUTH_FAILURE_CODES: tuple[str, ...] = ("smtp.auth_failed",)
"""A refused login (530/534/535, ``smtp.classify``): the code ``validation.service.AUTH_FAILURE_CODES``
counts toward the verification lock, and one of the ``credential`` outcomes that pause the inbox."""

Band = Literal["healthy", "watch", "at_risk", "blocked"]
BANDS: tuple[tuple[Band, float], ...] = (("healthy", 70.0), ("watch", 45.0), ("at_risk", 25.0))
"""A score at or above a threshold is in that band (first match); below the last one: ``blocked``."""
BAND_ORDER: tuple[Band, ...] = ("healthy", "watch", "at_risk", "blocked")

ComponentKey = Literal[
    "bounce_rate",
    "complaint_rate",
    "blocklist",
    "reply_rate",
    "send_success",
    "connection_success",
    "auth_failures",
    "imap_sync",
    "dns",
    "warmup",
]
Kind = Literal["rate", "count", "levels", "sync", "progress"]


@dataclass(frozen=True)
class Component:
    """One component's weight and scoring parameters (see the module docstring for each kind)."""

    key: ComponentKey
    label: str
    weight: float
    reputation: bool
    kind: Kind
    min_sample: int = 0
    zero_at: float = 0.0
    full_at: float = 100.0
    floor: float = 0.0
    levels: dict[str, float] = field(default_factory=dict)
    step: float = 0.0
    """``sync``: points lost per consecutive failure, from ``NEUTRAL``."""


COMPONENTS: tuple[Component, ...] = (
    Component("bounce_rate", "Hard-bounce rate, 7 days (%)", 20, True, "rate", 20, zero_at=5.0, full_at=1.0),
    Component("complaint_rate", "Complaint rate, 7 days (%)", 15, True, "rate", 50, zero_at=0.3, full_at=0.05),
    Component("blocklist", "Domain blocklist status", 15, True, "levels", levels={"clean": 100.0, "listed": 0.0}),
    Component("reply_rate", "Reply rate, 7 days (%)", 10, True, "rate", 50, zero_at=0.0, full_at=3.0, floor=20.0),
    Component("send_success", "Send success rate, 7 days (%)", 8, False, "rate", 10, zero_at=70.0, full_at=98.0),
    Component(
        "connection_success",
        "SMTP connection success rate, 7 days (%)",
        8,
        False,
        "rate",
        10,
        zero_at=80.0,
        full_at=99.0,
    ),
    Component("auth_failures", "SMTP login failures, 7 days", 8, False, "count", 10, zero_at=3.0, full_at=0.0),
    Component("imap_sync", "IMAP sync health", 5, False, "sync", levels={"ok": 100.0}, step=10.0),
    Component("dns", "Domain DNS health", 6, False, "levels", levels={"pass": 100.0, "warn": 60.0, "fail": 0.0}),
    Component("warmup", "Warmup progress (%)", 5, False, "progress", zero_at=0.0, full_at=100.0, floor=50.0),
)
BY_KEY: dict[str, Component] = {c.key: c for c in COMPONENTS}
TOTAL_WEIGHT = sum(c.weight for c in COMPONENTS)
REPUTATION_WEIGHT = sum(c.weight for c in COMPONENTS if c.reputation)


@dataclass(frozen=True)
class Inputs:
    """The raw figures of one inbox over the window (see the module docstring for their sources)."""

    sends: int = 0
    bounces: int = 0
    complaints: int = 0
    accepted: int = 0
    failed_attempts: int = 0
    connection_failures: int = 0
    auth_failures: int = 0
    replies: int = 0
    sync_status: str | None = None
    sync_failures: int = 0
    dns_status: str = "unknown"
    blocklist_status: str = "unknown"
    warmup_progress: float = 0.0
    warmup_sent_total: int = 0

    @property
    def attempted(self) -> int:
        return self.accepted + self.failed_attempts


@dataclass(frozen=True)
class Scored:
    """One component's result: ``value`` is the rate, count or verdict it judged (``None``: nothing to
    judge yet), ``data`` what the value was computed from."""

    key: ComponentKey
    value: float | str | None
    score: float
    data: dict[str, float | int | str | None]


@dataclass(frozen=True)
class Health:
    overall: float
    reputation: float
    band: Band
    components: tuple[Scored, ...]


def ramp(value: float, c: Component) -> float:
    """``floor`` at ``zero_at``, 100 at ``full_at``, linear between (the same expression as the SQL)."""
    return c.floor + (100.0 - c.floor) * min(1.0, max(0.0, (value - c.zero_at) / (c.full_at - c.zero_at)))


def static_data(c: Component) -> dict[str, float | int | str | None]:
    """The part of a component's data that comes from this table, not from the inbox (the window and the
    minimum sample of rates and counts): the recompute stores only the rest, the API adds this back."""
    if c.kind in ("rate", "count"):
        return {"window_days": WINDOW_DAYS, "min_sample": c.min_sample}
    return {}


def _rate(c: Component, numerator: int, denominator: int) -> Scored:
    value = min(100.0, 100.0 * numerator / denominator) if denominator > 0 else None
    score = ramp(value, c) if value is not None and denominator >= c.min_sample else NEUTRAL
    data: dict[str, float | int | str | None] = {"numerator": numerator, "denominator": denominator}
    return Scored(c.key, value, score, data | static_data(c))


def _level(c: Component, verdict: str) -> Scored:
    return Scored(c.key, verdict, c.levels.get(verdict, NEUTRAL), {"verdict": verdict})


def score_component(c: Component, x: Inputs) -> Scored:
    """One component of ``x``."""
    if c.key == "bounce_rate":
        return _rate(c, x.bounces, x.sends)
    if c.key == "complaint_rate":
        return _rate(c, x.complaints, x.sends)
    if c.key == "reply_rate":
        return _rate(c, x.replies, x.accepted)
    if c.key == "send_success":
        return _rate(c, x.accepted, x.attempted)
    if c.key == "connection_success":
        return _rate(c, x.attempted - x.connection_failures, x.attempted)
    if c.key == "auth_failures":
        value = float(x.auth_failures)
        score = ramp(value, c) if x.attempted >= c.min_sample else min(NEUTRAL, ramp(value, c))
        data: dict[str, float | int | str | None] = {"numerator": x.auth_failures, "denominator": x.attempted}
        return Scored(c.key, value, score, data | static_data(c))
    if c.key == "imap_sync":
        status = x.sync_status or "none"
        failing = max(0.0, NEUTRAL - c.step * x.sync_failures)
        score = failing if status == "failing" else c.levels.get(status, NEUTRAL)
        return Scored(c.key, status, score, {"status": status, "consecutive_failures": x.sync_failures})
    if c.key == "dns":
        return _level(c, x.dns_status)
    if c.key == "blocklist":
        return _level(c, x.blocklist_status)
    # warmup
    progress = min(100.0, max(0.0, x.warmup_progress))
    return Scored(c.key, progress, ramp(progress, c), {"warmup_sent_total": x.warmup_sent_total})


def band_of(score: float) -> Band:
    for band, threshold in BANDS:
        if score >= threshold:
            return band
    return "blocked"


def band_for(overall: float, reputation: float, blocklist_status: str) -> Band:
    """The worse of the two scores' bands; ``blocked`` while the domain is listed."""
    if blocklist_status == "listed":
        return "blocked"
    return max(band_of(overall), band_of(reputation), key=BAND_ORDER.index)


def compute(x: Inputs) -> Health:
    """The health of one inbox: every component, the two weighted means (summed in ``COMPONENTS`` order,
    as the SQL does) and the band."""
    scored = tuple(score_component(c, x) for c in COMPONENTS)
    overall = 0.0
    reputation = 0.0
    for c, s in zip(COMPONENTS, scored, strict=True):
        overall += c.weight * s.score
        if c.reputation:
            reputation += c.weight * s.score
    overall /= TOTAL_WEIGHT
    reputation /= REPUTATION_WEIGHT
    return Health(overall, reputation, band_for(overall, reputation, x.blocklist_status), scored)
