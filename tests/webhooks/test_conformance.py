"""Standard Webhooks conformance, checked with the reference verifier (``standardwebhooks``).

1,000 random payloads (unicode, big numbers, nesting) delivered through the real dispatcher to a real
HTTPS receiver verify; during a rotation overlap a receiver holding only the old or only the new secret
verifies; a signature made 301 s ago is refused by the reference verifier.
"""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from nimbus_api.config import Settings
from nimbus_api.credentials.vault import Vault
from nimbus_api.models import Event
from tests.conftest import Tenant
from tests.servers.http_receiver import HttpReceiver
from tests.webhooks.harness import add_endpoint, commit_events, make_rig, url_of

# JSONB keeps no U+0000 in text, and surrogates are not characters: every other code point may appear.
_ALPHABET = [chr(c) for c in (*range(0x20, 0x7F), 0xE9, 0x2713, 0x1F600, 0x4E2D, 0x0627, 0xFEFF, 0x200D, 0x10FFFF)]


def _text(rng: random.Random) -> str:
    return "".join(rng.choice(_ALPHABET) for _ in range(rng.randint(0, 24))) + rng.choice(["", "\n", "\t", '"\\'])


def _value(rng: random.Random, depth: int) -> Any:
    kind = rng.randrange(9 if depth < 6 else 6)
    if kind == 0:
        return _text(rng)
    if kind == 1:
        return rng.randint(-(10**30), 10**30)  # past 2^64: JSONB numeric keeps every digit
    if kind == 2:
        return rng.choice([0, -1, 2**53 + 1, 2**63, -(2**63) - 1])
    if kind == 3:
        return round(rng.uniform(-1e6, 1e6), rng.randint(0, 9))
    if kind == 4:
        return rng.choice([True, False, None])
    if kind == 5:
        return rng.choice(["", "évènement ✓ 😀 中文 عربى", "a\u2028b\u2029c", "</script>"])
    if kind in (6, 7):
        return {_text(rng) or "k": _value(rng, depth + 1) for _ in range(rng.randint(0, 4))}
    return [_value(rng, depth + 1) for _ in range(rng.randint(0, 4))]


def payloads(count: int, seed: int = 20261202) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    return [{"n": n, "value": _value(rng, 0), "deep": _nested(rng, rng.randint(1, 12))} for n in range(count)]


def _nested(rng: random.Random, depth: int) -> Any:
    value: Any = _text(rng)
    for _ in range(depth):
        value = {"in": value} if rng.random() < 0.5 else [value]
    return value


async def test_a_thousand_random_payloads_verify_with_the_reference_verifier(
    tenant: Tenant,
    receiver: HttpReceiver,
    settings: Settings,
    sessionmaker: async_sessionmaker[AsyncSession],
    vault: Vault,
) -> None:
    _, secret = await add_endpoint(tenant.client, url_of(receiver))
    events = await commit_events(sessionmaker, tenant.workspace_id, payloads(1000))
    rig = make_rig(settings, sessionmaker, vault, webhook_max_in_flight=32, webhook_worker_concurrency=32)
    try:
        while len(receiver.requests) < 1000:
            report = await rig.step()
            assert report.claimed or len(receiver.requests) >= 1000, "nothing left to claim before all arrived"
    finally:
        await rig.close()
    async with sessionmaker() as session:
        stored = {
            str(e.id): e.payload
            for e in await session.scalars(select(Event).where(Event.id.in_([e.id for e in events])))
        }
    verifier = Webhook(secret)
    seen = set()
    for got in receiver.requests:
        parsed = verifier.verify(got.body, got.headers)  # raises on any mismatch
        assert parsed == stored[got.headers["webhook-id"]] == json.loads(got.body)
        seen.add(got.headers["webhook-id"])
    assert seen == set(stored) and len(receiver.requests) == 1000


async def test_during_a_rotation_overlap_either_secret_verifies(
    tenant: Tenant, receiver: HttpReceiver, rig: Any, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    endpoint_id, old = await add_endpoint(tenant.client, url_of(receiver))
    rotated = await tenant.client.post(f"/v1/webhook-endpoints/{endpoint_id}/rotate-secret")
    new = rotated.json()["secret"]
    assert new != old
    await commit_events(sessionmaker, tenant.workspace_id, [{"after": "rotation"}])
    await rig.step()
    (got,) = await receiver.wait_for(1)
    signatures = got.headers["webhook-signature"].split(" ")
    assert len(signatures) == 2 and all(s.startswith("v1,") for s in signatures)
    assert Webhook(old).verify(got.body, got.headers) == Webhook(new).verify(got.body, got.headers)
    stranger = Webhook("whsec_" + "A" * 43 + "=")
    with pytest.raises(WebhookVerificationError):
        stranger.verify(got.body, got.headers)

    # once the overlap is over, only the new secret signs
    rig.clock.advance(timedelta(hours=24, seconds=1))
    await commit_events(sessionmaker, tenant.workspace_id, [{"after": "overlap"}])
    await rig.step()
    later = (await receiver.wait_for(2))[1]
    assert len(later.headers["webhook-signature"].split(" ")) == 1
    # the clock moved a day ahead of the verifier's: verify as of the signing time
    assert later.headers["webhook-id"] != got.headers["webhook-id"]
    signed_at = int(later.headers["webhook-timestamp"])
    text = later.body.decode()
    assert later.headers["webhook-signature"] == Webhook(new).sign(
        later.headers["webhook-id"], datetime.fromtimestamp(signed_at, UTC), text
    )
    assert later.headers["webhook-signature"] != Webhook(old).sign(
        later.headers["webhook-id"], datetime.fromtimestamp(signed_at, UTC), text
    )


async def test_a_signature_301_seconds_old_is_refused_by_the_reference_verifier(
    tenant: Tenant, receiver: HttpReceiver, rig: Any, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    _, secret = await add_endpoint(tenant.client, url_of(receiver))
    rig.clock.advance(timedelta(seconds=-301))  # the dispatcher signs at its clock's time
    await commit_events(sessionmaker, tenant.workspace_id, [{"late": True}])
    await rig.step()
    (got,) = await receiver.wait_for(1)
    with pytest.raises(WebhookVerificationError, match="too old"):
        Webhook(secret).verify(got.body, got.headers)
    # the same body signed now verifies: only the age was refused
    fresh = Webhook(secret)
    stamp = rig.clock.now + timedelta(seconds=301)
    headers = {
        "webhook-id": got.headers["webhook-id"],
        "webhook-timestamp": str(int(stamp.timestamp())),
        "webhook-signature": fresh.sign(got.headers["webhook-id"], stamp, got.body.decode()),
    }
    assert fresh.verify(got.body, headers) == json.loads(got.body)
