"""The alert rule kinds: what each watches, its threshold's unit and bounds, and the defaults.

    kind                  subject  condition                                              threshold
    score_below           account  email_accounts.overall_score < threshold              points, 0 < t <= 100
    bounce_rate_above     account  email_accounts.bounce_rate_7d > threshold             percent, 0 <= t < 100
    complaint_rate_above  account  email_accounts.complaint_rate_7d > threshold          percent, 0 <= t < 100
    sync_lag_above        account  now - mailbox_syncs.last_success_at > threshold, or   seconds, 60..604800
                                   the sync failing and already reported as such
                                   (``account.sync_failed`` sent: ``failure_notified_at``)
    listed                domain   domains.blocklist_status = 'listed'                    none
    domain_unhealthy      domain   domains.dns_status = 'fail' or domains.is_paused        none

A mailbox never synced counts its lag from when its sync row was created. A rule scoped to one inbox
watches that inbox, or, for the domain kinds, that inbox's domain.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from nimbus_api.events.catalogue import AlertRuleKind as AlertKind
from nimbus_api.events.catalogue import AlertSeverity
from nimbus_api.events.catalogue import AlertSubject as AlertSubjectType

__all__ = ["DEFAULTS", "KINDS", "AlertKind", "AlertSeverity", "AlertSubjectType", "Kind", "describe"]


@dataclass(frozen=True)
class Kind:
    name: AlertKind
    subject: AlertSubjectType
    unit: Literal["points", "percent", "seconds"] | None
    minimum: float | None
    maximum: float | None
    minimum_inclusive: bool
    maximum_inclusive: bool
    integer: bool
    default_threshold: float | None
    default_severity: AlertSeverity
    summary: str

    def bounds(self) -> str:
        low = "<=" if self.minimum_inclusive else "<"
        high = "<=" if self.maximum_inclusive else "<"
        whole = "a whole number of " if self.integer else ""
        return f"{whole}{self.unit}, {self.minimum:g} {low} threshold {high} {self.maximum:g}"

    def check(self, threshold: float | None) -> str | None:
        """Why ``threshold`` is not valid for this kind, or ``None`` when it is."""
        if self.unit is None:
            return None if threshold is None else f"`{self.name}` takes no threshold"
        if threshold is None:
            return f"`{self.name}` needs a threshold: {self.bounds()}"
        assert self.minimum is not None
        assert self.maximum is not None
        low_ok = threshold >= self.minimum if self.minimum_inclusive else threshold > self.minimum
        high_ok = threshold <= self.maximum if self.maximum_inclusive else threshold < self.maximum
        if not (low_ok and high_ok) or (self.integer and not float(threshold).is_integer()):
            return f"`{self.name}` takes {self.bounds()}"
        return None


KINDS: dict[str, Kind] = {
    k.name: k
    for k in (
        Kind("score_below", "account", "points", 0, 100, False, True, False, 40.0, "warning", "score below"),
        Kind("bounce_rate_above", "account", "percent", 0, 100, True, False, False, 5.0, "critical", "bounce rate"),
        Kind(
            "complaint_rate_above", "account", "percent", 0, 100, True, False, False, 0.3, "critical", "complaint rate"
        ),
        Kind("sync_lag_above", "account", "seconds", 60, 604800, True, True, True, 3600.0, "warning", "sync lag"),
        Kind("listed", "domain", None, None, None, True, True, False, None, "critical", "blocklisted"),
        Kind("domain_unhealthy", "domain", None, None, None, True, True, False, None, "critical", "domain unhealthy"),
    )
}

DEFAULTS: tuple[tuple[AlertKind, float | None, AlertSeverity], ...] = tuple(
    (k.name, k.default_threshold, k.default_severity) for k in KINDS.values()
)
"""The rules a workspace starts with: every kind once, at its default threshold and severity, for all
of its inboxes (the migration ``6f15a8b9c0d1`` copies these values)."""


def describe(kind: str, subject_name: str, value: float | None, threshold: float | None) -> str:
    """The one-line message of an alert, for people (``alert.triggered``'s ``message``)."""
    k = KINDS[kind]
    if k.name == "score_below":
        return f"{subject_name}: score {value:g} is below {threshold:g}"
    if k.name in ("bounce_rate_above", "complaint_rate_above"):
        return f"{subject_name}: {k.summary} over 7 days {value:.2f}% is above {threshold:g}%"
    if k.name == "sync_lag_above":
        return f"{subject_name}: last successful IMAP sync {value:.0f} s ago (limit {threshold:g} s), or sync failing"
    if k.name == "listed":
        return f"{subject_name}: the domain or a sending IP is on a blocklist"
    return f"{subject_name}: the domain's DNS checks fail or the domain is paused"
