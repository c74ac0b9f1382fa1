"""The message a domain's alignment is judged on, captured at verification, and the alignment read then.

At every passing verification (connect, re-verify, settings change) the roundtrip's test message, as
the mailbox received it, replaces the domain's sample (``models.domain_sample``), and its alignment is
read at once and stored as the domain's ``alignment`` record: the person connecting an inbox sees
"DMARC not aligned" on the domain right away. Pausing is left to the domain check (nightly or
``POST /v1/domains/{id}/check``), which reads the same sample again with everything else: a pause
decided on part of the picture would have to be undone by the next full check.

The sample never holds a secret: it is our own test message plus what the servers on the way added.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass

import structlog
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from nimbus_api.credentials.vault import Actor, Vault
from nimbus_api.domains.alignment import AlignmentReport, captured_headers, check_alignment
from nimbus_api.domains.health import address_checker, alignment_result
from nimbus_api.domains.pause import store_record
from nimbus_api.imap import ImapServer
from nimbus_api.imap.errors import ImapError
from nimbus_api.imap.finding import latest_sent
from nimbus_api.kit.db import utcnow
from nimbus_api.kit.net import NetContext
from nimbus_api.models import Domain, DomainCheck, DomainSample, EmailAccount
from nimbus_api.models.domain_sample import MAX_SAMPLE_BYTES
from nimbus_api.validation.schemas import VerificationResult

ALIGNMENT_TIMEOUT = 10.0
SENT_READ_TIMEOUT = 30.0
log = structlog.get_logger(__name__)


async def store_sample(
    session: AsyncSession, domain_id: uuid.UUID, account_id: uuid.UUID | None, raw: bytes, *, source: str
) -> None:
    """Replace the domain's sample (one per domain; the newest capture wins)."""
    values = {
        "account_id": account_id,
        "source": source,
        "raw": raw,
        "headers": captured_headers(raw),
        "captured_at": utcnow(),
    }
    await session.execute(
        insert(DomainSample)
        .values(domain_id=domain_id, **values)
        .on_conflict_do_update(index_elements=[DomainSample.domain_id], set_=values)
    )


@dataclass(frozen=True)
class Sample:
    """A verification's test message and its alignment, read before any row lock is taken."""

    raw: bytes
    report: AlignmentReport


async def prepare(net: NetContext, result: VerificationResult) -> Sample | None:
    """The DNS half of ``capture``: run it before taking locks (a new account's insert holds its
    workspace's lock until commit; DNS answers must not be waited for under it)."""
    raw = result.captured_message
    if raw is None or len(raw) > MAX_SAMPLE_BYTES:
        return None
    report = await check_alignment(
        raw, resolver=net.resolver, address_ok=address_checker(net), timeout=ALIGNMENT_TIMEOUT
    )
    return Sample(raw, report)


async def store(session: AsyncSession, account: EmailAccount, sample: Sample | None) -> None:
    """Keep ``sample`` for ``account``'s domain and store its alignment, under the domain's row lock (the
    order ``domains.pause`` takes them in: DNS first, then the lock; two verifications of one domain
    cannot both create its alignment row)."""
    if sample is None:
        return
    await session.execute(select(Domain.id).where(Domain.id == account.domain_id).with_for_update())
    await store_sample(session, account.domain_id, account.id, sample.raw, source="roundtrip")
    row = await session.scalar(
        select(DomainCheck)
        .where(DomainCheck.domain_id == account.domain_id, DomainCheck.record == "alignment")
        .with_for_update()
    )
    store_record(session, row, account.domain_id, "alignment", alignment_result(sample.report), utcnow())
    await session.flush()


async def capture(session: AsyncSession, net: NetContext, account: EmailAccount, result: VerificationResult) -> None:
    """Keep the verification's test message for ``account``'s domain and store its alignment."""
    await store(session, account, await prepare(net, result))


async def refresh_from_sent(session: AsyncSession, vault: Vault, net: NetContext, domain_id: uuid.UUID) -> bool:
    """Replace the sample with the newest signed message of an inbox's Sent folder, when there is one.

    Read before each domain check: the roundtrip message is as old as the last verification, the Sent
    folder shows how the domain sends today. Only a message carrying a DKIM-Signature replaces the sample
    (a client's own unsigned copy would read as misaligned although receivers see it signed); the newest
    such message is always newer than the stored one. The inbox's IMAP password is revealed
    for it (audited, purpose ``sync``: it is a read of the mailbox, as the sync does). IMAP failures are the
    sync's to report: here they only mean the stored sample is used. Returns whether it replaced it.
    """
    account = await session.scalar(
        select(EmailAccount)
        .where(EmailAccount.domain_id == domain_id, EmailAccount.imap_host.is_not(None))
        .order_by(EmailAccount.last_verified_at.desc().nulls_last(), EmailAccount.id)
        .limit(1)
    )
    if account is None or account.imap_host is None or account.imap_port is None or account.imap_mode is None:
        return False
    password = await vault.reveal_for_account(
        session, account.id, "imap_password", actor=Actor.system("domain_check"), purpose="sync"
    )
    if password is None:
        return False
    server = ImapServer(
        host=account.imap_host,
        port=account.imap_port,
        mode=account.imap_mode,  # type: ignore[arg-type]  # the column holds a validated mode
        username=account.imap_username or account.email,
        password=password,
        folder=account.imap_folder or "INBOX",
        allow_plaintext_auth=account.imap_allow_plaintext_auth,
    )
    try:
        async with asyncio.timeout(SENT_READ_TIMEOUT):
            raw = await latest_sent(server, net, max_bytes=MAX_SAMPLE_BYTES, want_header="DKIM-Signature")
    except (ImapError, TimeoutError) as exc:
        log.info("domain_sent_sample_unavailable", domain_id=str(domain_id), reason=getattr(exc, "code", "timeout"))
        return False
    if raw is None:
        return False
    await store_sample(session, domain_id, account.id, raw, source="sent")
    return True


__all__ = ["capture", "refresh_from_sent", "store_sample"]
