"""The planner: each warming inbox's day, spread over the window, to other domains where possible,
within ``warmup_daily_limit`` (leaving room for replies), within the pool's scope, and planned once."""

from __future__ import annotations

import random
import secrets
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nimbus_api.config import Settings
from nimbus_api.models import EmailAccount, WarmupMessage
from nimbus_api.warmup import planner
from tests.warmup.conftest import MakeInbox, isolate, warmup_settings


def _config(settings: Settings, **overrides: object) -> planner.PlanConfig:
    return planner.PlanConfig.of(warmup_settings(settings, **overrides))


def _day(offset: int) -> datetime:
    """A distinct future day per test (rows of other tests' days never count), at 05:00 UTC."""
    base = datetime(2030, 1, 1, 5, 0, tzinfo=UTC)
    return base + timedelta(days=offset)


async def _rows(sessionmaker: async_sessionmaker[AsyncSession], ids: list[uuid.UUID]) -> list[WarmupMessage]:
    async with sessionmaker() as session:
        found = await session.scalars(
            select(WarmupMessage).where(WarmupMessage.sender_id.in_(ids)).order_by(WarmupMessage.send_at)
        )
        return list(found)


async def _plan(sessionmaker: async_sessionmaker[AsyncSession], config: planner.PlanConfig, now: datetime) -> int:
    async with sessionmaker() as session, session.begin():
        return await planner.plan(session, config, now, random.Random(7))


async def test_sends_are_spread_over_the_window_within_the_limit_and_planned_once(
    sessionmaker: async_sessionmaker[AsyncSession], settings: Settings, make_inbox: MakeInbox, new_workspace
) -> None:
    await isolate(sessionmaker)
    ws = await new_workspace()
    tag = secrets.token_hex(3)
    inboxes = [await make_inbox(ws, f"w{i}@d{i}-{tag}.test") for i in range(4)]
    await make_inbox(ws, f"limit@d9-{tag}.test", warmup_daily_limit=10)
    ids = [a.id for a in inboxes]
    config = _config(settings, warmup_daily_limit=8, warmup_reply_share=0.25, warmup_window_start_hour=8)
    now = _day(0)
    await _plan(sessionmaker, config, now)
    rows = await _rows(sessionmaker, ids)
    per_sender = Counter(r.sender_id for r in rows)
    assert set(per_sender.values()) == {6}  # 8 a day, 2 of them left for replies
    for sender_id in ids:
        times = sorted(r.send_at for r in rows if r.sender_id == sender_id)
        start, end = now.replace(hour=8), now.replace(hour=21)
        assert start <= times[0] and times[-1] < end
        # one send in each sixth of the window: spread, not bunched
        part = (end - start) / 6
        assert [int((t - start) / part) for t in times] == list(range(6))
        assert len({r.message_id_header for r in rows}) == len(rows)
    limited = await _rows(sessionmaker, [(await _account(sessionmaker, f"limit@d9-{tag}.test")).id])
    assert len(limited) == 8  # its own warmup_daily_limit: 10, 2 left for replies
    # running it again (or on another worker) plans nothing more
    assert await _plan(sessionmaker, config, now + timedelta(minutes=10)) == 0
    assert len(await _rows(sessionmaker, ids)) == len(rows)
    # nobody writes to itself; the load is even (every inbox receives about as much)
    assert all(r.sender_id != r.recipient_id for r in rows)
    received = Counter(r.recipient_id for r in rows if r.recipient_id in ids)
    assert max(received.values()) - min(received.values()) <= 3


async def _account(sessionmaker: async_sessionmaker[AsyncSession], email: str) -> EmailAccount:
    async with sessionmaker() as session:
        return (await session.scalars(select(EmailAccount).where(EmailAccount.email == email))).one()


async def test_other_domains_are_preferred(
    sessionmaker: async_sessionmaker[AsyncSession], settings: Settings, make_inbox: MakeInbox, new_workspace
) -> None:
    await isolate(sessionmaker)
    ws = await new_workspace()
    tag = secrets.token_hex(3)
    same = [await make_inbox(ws, f"s{i}@same-{tag}.test") for i in range(3)]
    other = await make_inbox(ws, f"o@other-{tag}.test")
    await _plan(sessionmaker, _config(settings, warmup_daily_limit=3, warmup_reply_share=0), _day(1))
    rows = await _rows(sessionmaker, [a.id for a in same])
    assert rows and {r.recipient_id for r in rows} == {other.id}  # never the same domain while another exists
    # the inbox on the other domain has only same-domain peers elsewhere: it writes to them
    assert {r.recipient_id for r in await _rows(sessionmaker, [other.id])} <= {a.id for a in same}


async def test_the_pool_scope_setting(
    sessionmaker: async_sessionmaker[AsyncSession], settings: Settings, make_inbox: MakeInbox, new_workspace
) -> None:
    await isolate(sessionmaker)
    ws_a, ws_b = await new_workspace(), await new_workspace()
    tag = secrets.token_hex(3)
    a = [await make_inbox(ws_a, f"a{i}@a{i}-{tag}.test") for i in range(2)]
    b = [await make_inbox(ws_b, f"b{i}@b{i}-{tag}.test") for i in range(2)]
    workspace_of = {x.id: x.workspace_id for x in [*a, *b]}
    await _plan(sessionmaker, _config(settings, warmup_pool="workspace", warmup_daily_limit=6), _day(2))
    rows = await _rows(sessionmaker, list(workspace_of))
    assert rows and all(workspace_of[r.sender_id] == workspace_of[r.recipient_id] for r in rows)

    await _plan(sessionmaker, _config(settings, warmup_pool="platform", warmup_daily_limit=6), _day(3))
    rows = [r for r in await _rows(sessionmaker, list(workspace_of)) if r.day == _day(3).date()]
    crossing = [r for r in rows if workspace_of[r.sender_id] != workspace_of[r.recipient_id]]
    assert crossing  # the platform pool mixes workspaces


async def test_paused_or_left_inboxes_plan_nothing(
    sessionmaker: async_sessionmaker[AsyncSession], settings: Settings, make_inbox: MakeInbox, new_workspace
) -> None:
    await isolate(sessionmaker)
    ws = await new_workspace()
    tag = secrets.token_hex(3)
    ok = await make_inbox(ws, f"ok@ok-{tag}.test")
    other = await make_inbox(ws, f"other@other-{tag}.test")
    bouncing = await make_inbox(ws, f"bouncing@b-{tag}.test", bounce_rate_7d=20.0)
    complained = await make_inbox(ws, f"complained@c-{tag}.test", complaint_rate_7d=1.0)
    off = await make_inbox(ws, f"off@off-{tag}.test", warmup_enabled=False)
    cooling = await make_inbox(ws, f"cooling@cool-{tag}.test", cooldown_until=_day(4) + timedelta(hours=3))
    late = _day(4).replace(hour=22)
    assert await _plan(sessionmaker, _config(settings), late) == 0  # the day's window is over
    await _plan(sessionmaker, _config(settings), _day(4))
    everyone = [ok.id, other.id, bouncing.id, complained.id, off.id, cooling.id]
    senders = {r.sender_id for r in await _rows(sessionmaker, everyone)}
    assert senders == {ok.id, other.id}
    recipients = {r.recipient_id for r in await _rows(sessionmaker, [ok.id, other.id])}
    assert off.id not in recipients


def test_new_threads_leave_room_for_replies() -> None:
    assert planner.new_threads(5, 0.4) == 3
    assert planner.new_threads(1, 0.9) == 1
    assert planner.new_threads(0, 0.4) == 0
    assert planner.new_threads(10, 0) == 10
