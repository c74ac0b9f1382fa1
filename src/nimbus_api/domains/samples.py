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

import uuid

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from nimbus_api.domains.alignment import captured_headers, check_alignment
from nimbus_api.domains.health import address_checker, alignment_result
from nimbus_api.domains.pause import store_record
from nimbus_api.kit.db import utcnow
from nimbus_api.kit.net import NetContext
from nimbus_api.models import Domain, DomainCheck, DomainSample, EmailAccount
from nimbus_api.models.domain_sample import MAX_SAMPLE_BYTES
from nimbus_api.validation.schemas import VerificationResult

ALIGNMENT_TIMEOUT = 10.0


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


async def capture(session: AsyncSession, net: NetContext, account: EmailAccount, result: VerificationResult) -> None:
    """Keep the verification's test message for ``account``'s domain and store its alignment."""
    raw = result.captured_message
    if raw is None or len(raw) > MAX_SAMPLE_BYTES:
        return
    # DNS first, then the domain's row lock (the order ``domains.pause`` takes them in): no lock is held
    # while DNS answers, and two verifications of one domain cannot both create its alignment row.
    report = await check_alignment(
        raw, resolver=net.resolver, address_ok=address_checker(net), timeout=ALIGNMENT_TIMEOUT
    )
    await session.execute(select(Domain.id).where(Domain.id == account.domain_id).with_for_update())
    await store_sample(session, account.domain_id, account.id, raw, source="roundtrip")
    row = await session.scalar(
        select(DomainCheck)
        .where(DomainCheck.domain_id == account.domain_id, DomainCheck.record == "alignment")
        .with_for_update()
    )
    store_record(session, row, account.domain_id, "alignment", alignment_result(report), utcnow())
    await session.flush()


__all__ = ["capture", "store_sample"]
