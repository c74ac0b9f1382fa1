"""Verification as a service: limits around the flow, and the problems it raises.

Limits (Redis counters, fixed windows):

* per subject (a saved account, or an address being connected) and per workspace: verifications per
  window (``NIMBUS_VERIFY_LIMIT_PER_ACCOUNT`` / ``..._PER_WORKSPACE`` per ``NIMBUS_VERIFY_WINDOW_SECONDS``);
  over it, 429 ``verification.rate_limited`` with ``Retry-After``;
* authentication failures per subject: after ``NIMBUS_AUTH_FAILURE_LIMIT`` failed logins (SMTP or IMAP)
  within ``NIMBUS_AUTH_FAILURE_WINDOW_SECONDS`` the subject stops trying: a saved account is locked in
  Postgres until a person updates its settings; a new address is refused until the window passes.
  Providers (Microsoft, Google) block addresses that keep failing logins: we must not be the reason.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis

from nimbus_api.config import Settings
from nimbus_api.kit import ratelimit
from nimbus_api.kit.net import NetContext, build_net_context
from nimbus_api.kit.problems import Problem
from nimbus_api.validation.flow import FlowLimits, MailboxUnderTest, run_flow
from nimbus_api.validation.schemas import VerificationResult

AUTH_FAILURE_CODES = frozenset({"smtp.auth_failed", "imap.auth_failed"})


class VerificationFailed(Problem):
    """422 carrying the whole verification: ``code`` is the first failure's, ``checks`` every check."""

    status = 422
    code = "verification.failed"
    title = "The mailbox did not pass verification; nothing was saved"

    def __init__(self, result: VerificationResult) -> None:
        first = next(c for c in result.checks if c.status == "failed")
        super().__init__(first.detail)
        self.result = result
        self.first_code = first.code or self.code

    def to_body(self, instance: str | None = None) -> dict[str, Any]:
        body = super().to_body(instance)
        body["type"] = f"urn:nimbus:problem:{self.first_code}"
        body["code"] = self.first_code
        body["check"] = self.result.check
        body["checks"] = [c.model_dump(mode="json") for c in self.result.checks]
        return body


class VerificationRateLimited(Problem):
    status = 429
    code = "verification.rate_limited"
    title = "Too many verifications; try again later"

    def __init__(self, detail: str, retry_after: int) -> None:
        super().__init__(detail, headers={"Retry-After": str(retry_after)}, extra={"retry_after": retry_after})


class VerificationLocked(Problem):
    status = 409
    code = "verification.locked"
    title = "Too many failed logins: update the credentials before verifying again"


@dataclass(frozen=True)
class VerificationLimits:
    per_subject: int = 5
    per_workspace: int = 30
    window_seconds: int = 600
    auth_failures: int = 5
    auth_failure_window_seconds: int = 1800


@dataclass(frozen=True)
class Verifier:
    """Everything a verification needs from the process: network context, Redis, limits."""

    net: NetContext
    redis: Redis
    flow_limits: FlowLimits
    limits: VerificationLimits

    @staticmethod
    def subject_for_address(workspace_id: uuid.UUID, email: str) -> str:
        return f"address:{workspace_id}:{email.lower()}"

    @staticmethod
    def subject_for_account(account_id: uuid.UUID) -> str:
        return f"account:{account_id}"

    async def auth_locked_for(self, subject: str) -> int | None:
        """Seconds until a subject may try again after too many auth failures (None: not locked)."""
        return await ratelimit.peek(self.redis, f"authfail:{subject}", limit=self.limits.auth_failures)

    async def verify(self, mailbox: MailboxUnderTest, *, workspace_id: uuid.UUID, subject: str) -> VerificationResult:
        retry = await self.auth_locked_for(subject)
        if retry is not None:
            raise VerificationRateLimited(
                f"{self.limits.auth_failures} failed logins in a row: fix the credentials, then retry", retry
            )
        for key, limit in (
            (f"verify:{subject}", self.limits.per_subject),
            (f"verify:ws:{workspace_id}", self.limits.per_workspace),
        ):
            retry = await ratelimit.hit(self.redis, key, limit=limit, window=self.limits.window_seconds)
            if retry is not None:
                raise VerificationRateLimited(
                    f"at most {limit} verifications per {self.limits.window_seconds} s", retry
                )
        result = await run_flow(mailbox, self.net, self.flow_limits)
        if result.code in AUTH_FAILURE_CODES or any(c.code in AUTH_FAILURE_CODES for c in result.checks):
            await ratelimit.hit(
                self.redis,
                f"authfail:{subject}",
                limit=self.limits.auth_failures,
                window=self.limits.auth_failure_window_seconds,
            )
        elif result.status == "passed":
            await ratelimit.reset(self.redis, f"authfail:{subject}")
        return result

    async def clear(self, subject: str) -> None:
        await ratelimit.reset(self.redis, f"authfail:{subject}")


def build_verifier(settings: Settings, redis: Redis) -> Verifier:
    return Verifier(
        net=build_net_context(settings),
        redis=redis,
        flow_limits=FlowLimits(
            roundtrip_timeout=settings.roundtrip_timeout, overall_timeout=settings.verification_timeout_seconds
        ),
        limits=VerificationLimits(
            per_subject=settings.verify_limit_per_account,
            per_workspace=settings.verify_limit_per_workspace,
            window_seconds=settings.verify_window_seconds,
            auth_failures=settings.auth_failure_limit,
            auth_failure_window_seconds=settings.auth_failure_window_seconds,
        ),
    )
