"""The connect-time validation flow, on values only (no ORM): a draft account in, every check out.

Each check moves ``pending -> passed | failed | skipped`` once:

    dns        runs concurrently with smtp and imap (it needs nothing from them but the SMTP host's
               addresses, which it resolves itself);
    smtp       connect in the account's mode, TLS verified, EHLO, AUTH, send a one-line test message to
               the account's own address carrying a unique token (header and subject);
    imap       connect, LOGIN, LIST, SELECT the configured folder (message count and UIDNEXT);
    roundtrip  only when smtp and imap passed: look for the token over IMAP (configured folder and the
               junk folder) until ``NIMBUS_ROUNDTRIP_TIMEOUT``; found in junk is a warning; found is
               deleted. ``skipped`` when smtp or imap failed, or the account has no IMAP. The message is
               read whole before it is deleted and kept on the result (``captured_message``, never
               serialized): domain health judges DMARC alignment on it.

The whole flow is bounded by ``verification_timeout``: a check still running then fails with its
``*.timeout`` code and its connection is closed by cancellation.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from email import policy
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime

from nimbus_api.dns_checks.checks import run_dns_checks
from nimbus_api.imap import ImapServer, find_message, imap_session
from nimbus_api.imap.errors import ImapError
from nimbus_api.kit.addresses import ascii_domain, needs_smtputf8
from nimbus_api.kit.egress import EgressError, resolve_addresses
from nimbus_api.kit.net import NetContext
from nimbus_api.smtp.client import SmtpServer, send_test_message
from nimbus_api.smtp.errors import SmtpError
from nimbus_api.validation.schemas import CHECK_ORDER, CheckName, CheckResult, ServerReplyOut, VerificationResult

TOKEN_HEADER = "X-Nimbus-Verification"
MAX_CAPTURE_BYTES = 256 * 1024  # the test message is a few KB; what a provider adds stays far below this


@dataclass(frozen=True)
class MailboxUnderTest:
    """Everything the flow needs, with secrets still opaque."""

    email: str
    domain: str
    from_name: str | None
    dkim_selector: str | None
    smtp: SmtpServer
    imap: ImapServer | None


@dataclass(frozen=True)
class FlowLimits:
    roundtrip_timeout: float
    overall_timeout: float


def _ms(start: float) -> int:
    return int((time.monotonic() - start) * 1000)


def build_test_message(mailbox: MailboxUnderTest, token: str) -> bytes:
    """A one-line message from the account to itself. ``Auto-Submitted`` keeps vacation responders quiet.

    The address's domain is written in IDNA A-labels; a non-ASCII local part makes the header fields UTF-8
    (RFC 6532), and the SMTP check then needs the server's SMTPUTF8 (``kit.addresses``)."""
    utf8 = needs_smtputf8(mailbox.email)
    local, _, domain = mailbox.email.rpartition("@")
    address = Address(username=local, domain=ascii_domain(domain))
    msg = EmailMessage(policy=policy.SMTPUTF8 if utf8 else policy.SMTP)
    msg["From"] = Address(display_name=mailbox.from_name or "", username=address.username, domain=address.domain)
    msg["To"] = address
    msg["Subject"] = f"nimbus_api connection test {token}"
    msg["Date"] = format_datetime(datetime.now(UTC))
    msg["Message-ID"] = f"<nimbus-verify-{token}@{mailbox.domain}>"
    msg[TOKEN_HEADER] = token
    msg["Auto-Submitted"] = "auto-generated"
    msg.set_content(f"nimbus_api sent this message to verify the mailbox connection ({token}). It is deleted.\n")
    return msg.as_bytes()


async def _dns_check(mailbox: MailboxUnderTest, net: NetContext) -> CheckResult:
    start = time.monotonic()
    sending_ips: list[str] = []
    # An unresolvable SMTP host is the smtp check's to report; SPF alignment is then not assessed.
    # Only addresses the egress policy allows are assessed: the report must not reveal where a refused
    # (internal) host name points.
    with contextlib.suppress(EgressError):
        sending_ips = [
            str(a)
            for a in await resolve_addresses(net.resolver, mailbox.smtp.host)
            if net.policy.address_allowed(a, mailbox.smtp.host)
        ]
    report = await run_dns_checks(
        mailbox.domain, resolver=net.resolver, dkim_selector=mailbox.dkim_selector, sending_ips=sending_ips
    )
    return CheckResult(
        name="dns",
        status=report.status,
        code=report.code,
        detail=report.detail,
        duration_ms=_ms(start),
        warnings=report.warnings,
        data=report.records,
    )


def _smtp_failure(exc: SmtpError, start: float) -> CheckResult:
    reply = exc.reply
    return CheckResult(
        name="smtp",
        status="failed",
        code=exc.code,
        detail=exc.detail,
        hint=exc.hint,
        server_reply=ServerReplyOut(code=reply.code, enhanced=reply.enhanced, text=reply.text) if reply else None,
        duration_ms=_ms(start),
        data={"stage": exc.stage},
    )


async def _smtp_check(mailbox: MailboxUnderTest, net: NetContext, message: bytes) -> CheckResult:
    start = time.monotonic()
    try:
        result = await send_test_message(
            mailbox.smtp, net, sender=mailbox.email, recipient=mailbox.email, message=message
        )
    except SmtpError as exc:
        return _smtp_failure(exc, start)
    return CheckResult(
        name="smtp",
        status="passed",
        detail=f"test message accepted by {mailbox.smtp.host}",
        server_reply=ServerReplyOut(code=result.reply.code, enhanced=result.reply.enhanced, text=result.reply.text),
        duration_ms=_ms(start),
        warnings=result.warnings,
        data={"tls_version": result.tls_version, "auth_mechanism": result.auth_mechanism},
    )


async def _imap_check(imap: ImapServer, net: NetContext) -> tuple[CheckResult, list[str]]:
    """Returns the result and the folders to search in the roundtrip (configured folder, then junk)."""
    start = time.monotonic()
    try:
        async with imap_session(imap, net) as session:
            folders = await session.list_folders()
            status = await session.select(imap.folder, readonly=True)
            junk = session.special_use(folders, "\\Junk")
    except ImapError as exc:
        return (
            CheckResult(
                name="imap",
                status="failed",
                code=exc.code,
                detail=exc.detail,
                hint=exc.data.get("hint") if isinstance(exc.data.get("hint"), str) else None,
                duration_ms=_ms(start),
                data=dict(exc.data),
            ),
            [],
        )
    search = [imap.folder] + ([junk.name] if junk and junk.name != imap.folder else [])
    return (
        CheckResult(
            name="imap",
            status="passed",
            detail=f"logged in; {imap.folder} holds {status.exists} message(s)",
            duration_ms=_ms(start),
            data={
                "folder": imap.folder,
                "messages": status.exists,
                "uidnext": status.uidnext,
                "uidvalidity": status.uidvalidity,
                "folders": [f.name for f in folders],
                "junk_folder": junk.name if junk else None,
            },
        ),
        search,
    )


async def _roundtrip(imap: ImapServer, net: NetContext, token: str, folders: list[str], timeout: float) -> CheckResult:
    start = time.monotonic()
    try:
        found = await find_message(
            imap,
            net,
            header=TOKEN_HEADER,
            token=token,
            folders=folders,
            timeout=timeout,
            delete=True,
            capture=MAX_CAPTURE_BYTES,
        )
    except ImapError as exc:
        return CheckResult(
            name="roundtrip",
            status="failed",
            code="roundtrip.timeout" if exc.code == "imap.timeout" else exc.code,
            detail=f"the IMAP server stopped answering while looking for the test message: {exc.detail}",
            duration_ms=_ms(start),
        )
    if found is None:
        return CheckResult(
            name="roundtrip",
            status="failed",
            code="roundtrip.not_found",
            detail=(
                f"the test message did not arrive in {', '.join(folders)} within {timeout:g} s: the SMTP and IMAP "
                "credentials may not belong to the same mailbox, or mail to this address is not arriving"
            ),
            duration_ms=_ms(start),
        )
    warnings = []
    if found.junk or found.folder != imap.folder:
        warnings.append(f"the test message landed in {found.folder!r} (spam), not in {imap.folder!r}")
    result = CheckResult(
        name="roundtrip",
        status="passed",
        detail=f"test message found in {found.folder} after {found.seconds:.1f} s and deleted",
        duration_ms=_ms(start),
        warnings=warnings,
        data={"folder": found.folder, "seconds": round(found.seconds, 3)},
    )
    result._captured = found.raw
    return result


def _skipped(name: CheckName, detail: str, warnings: list[str] | None = None) -> CheckResult:
    return CheckResult(name=name, status="skipped", detail=detail, duration_ms=0, warnings=warnings or [])


def _timed_out(name: CheckName, limit: float) -> CheckResult:
    code = "dns.timeout" if name == "dns" else f"{name}.timeout"
    return CheckResult(
        name=name,
        status="failed",
        code=code,
        detail=f"no result within the {limit:g} s verification limit",
        duration_ms=int(limit * 1000),
    )


async def run_flow(mailbox: MailboxUnderTest, net: NetContext, limits: FlowLimits) -> VerificationResult:
    started = time.monotonic()
    token = secrets.token_hex(12)
    message = build_test_message(mailbox, token)
    results: dict[CheckName, CheckResult] = {}

    async def smtp_then_roundtrip(imap_done: asyncio.Future[list[str] | None]) -> None:
        results["smtp"] = await _smtp_check(mailbox, net, message)
        folders = await imap_done
        if mailbox.imap is None:
            results["roundtrip"] = _skipped("roundtrip", "no IMAP settings: the test message cannot be read back")
        elif results["smtp"].status != "passed":
            results["roundtrip"] = _skipped("roundtrip", "skipped: the SMTP test send failed")
        elif folders is None:
            results["roundtrip"] = _skipped("roundtrip", "skipped: the IMAP check failed")
        else:
            remaining = limits.overall_timeout - (time.monotonic() - started) - 1
            results["roundtrip"] = await _roundtrip(
                mailbox.imap, net, token, folders, max(0.5, min(limits.roundtrip_timeout, remaining))
            )

    async def imap_part(imap_done: asyncio.Future[list[str] | None]) -> None:
        if mailbox.imap is None:
            results["imap"] = _skipped(
                "imap", "no IMAP settings", ["without IMAP, replies and bounces of this account will not be seen"]
            )
            imap_done.set_result(None)
            return
        result, folders = await _imap_check(mailbox.imap, net)
        results["imap"] = result
        imap_done.set_result(folders if result.status == "passed" else None)

    async def dns_part() -> None:
        results["dns"] = await _dns_check(mailbox, net)

    imap_done: asyncio.Future[list[str] | None] = asyncio.get_running_loop().create_future()
    tasks = [
        asyncio.create_task(dns_part()),
        asyncio.create_task(imap_part(imap_done)),
        asyncio.create_task(smtp_then_roundtrip(imap_done)),
    ]
    _, pending = await asyncio.wait(tasks, timeout=limits.overall_timeout)
    for task in pending:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    for name in CHECK_ORDER:
        if name not in results:
            started_roundtrip = name == "roundtrip" and "smtp" in results and "imap" in results
            results[name] = (
                _timed_out(name, limits.overall_timeout)
                if name != "roundtrip" or started_roundtrip
                else _skipped("roundtrip", "not reached within the verification time limit")
            )
    for task in tasks:
        if not task.cancelled() and task.exception() is not None:
            raise task.exception()  # type: ignore[misc]  # a bug, not a mailbox problem: let it surface

    checks = [results[name] for name in CHECK_ORDER]
    first = next((c for c in checks if c.status == "failed"), None)
    return VerificationResult(
        status="failed" if first else "passed",
        code=first.code if first else None,
        check=first.name if first else None,
        checks=checks,
        verified_at=datetime.now(UTC),
        duration_ms=_ms(started),
    )


__all__ = ["TOKEN_HEADER", "FlowLimits", "MailboxUnderTest", "build_test_message", "run_flow"]
