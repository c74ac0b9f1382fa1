"""`/v1/provider-hooks`: the URL with its token is in the create answer only, secrets never; the public
path answers 404 for an unknown provider or token, and for a deleted hook."""

from __future__ import annotations

from datetime import timedelta
from types import SimpleNamespace

from sqlalchemy import select

from nimbus_api.config import Settings
from nimbus_api.credentials.rotation import rotate_data_key
from nimbus_api.credentials.vault import Vault
from nimbus_api.kit.db import utcnow
from nimbus_api.models import ProviderHook, ProviderHookEvent
from nimbus_api.provider_hooks import tasks
from nimbus_api.provider_hooks.service import token_digest
from tests.inbox.conftest import Loop
from tests.provider_hooks import samples
from tests.provider_hooks.conftest import create_hook, suppressed
from tests.provider_hooks.test_sendgrid_mailgun import MAILGUN_KEY, _mailgun


async def test_the_token_is_shown_once_and_stored_as_a_digest(loop: Loop, http) -> None:  # type: ignore[no-untyped-def]
    client = loop.tenant.client
    r = await client.post(
        "/v1/provider-hooks",
        json={"provider": "postmark", "basic_auth": {"username": "pm", "password": "s3cret-s3cret-s3cret"}},
    )
    assert r.status_code == 201, r.text
    created = r.json()
    token = created["url"].rsplit("/", 1)[1]
    assert created["url"] == f"http://127.0.0.1:8000/hooks/postmark/{token}"  # NIMBUS_PUBLIC_URL
    assert (created["signature"], created["basic_auth_username"]) == ("basic_auth", "pm")
    listed = (await client.get("/v1/provider-hooks")).json()["data"]
    read = (await client.get(f"/v1/provider-hooks/{created['id']}")).json()
    for shown in (listed, read):
        assert token not in str(shown) and "s3cret" not in str(shown) and "url" not in str(shown)
    async with loop.sessionmaker() as session:
        row = await session.get_one(ProviderHook, created["id"])
        assert row.token_hash == token_digest(token) and "s3cret" not in (row.basic_password_hash or "")
    assert (await client.delete(f"/v1/provider-hooks/{created['id']}")).status_code == 204
    gone = await http.post(f"/hooks/postmark/{token}", json={})
    assert gone.status_code == 404 and gone.json()["code"] == "provider_hook.not_found"
    async with loop.sessionmaker() as session:
        assert await session.scalar(select(ProviderHook.id).where(ProviderHook.id == created["id"])) is None


async def test_unknown_provider_or_token_is_404(loop: Loop, http) -> None:  # type: ignore[no-untyped-def]
    _, path = await create_hook(loop, "smtp2go")
    token = path.rsplit("/", 1)[1]
    for wrong in (f"/hooks/mailgun/{token}", f"/hooks/nope/{token}", "/hooks/smtp2go/" + "x" * 43, "/hooks/smtp2go/x"):
        r = await http.post(wrong, json={"event": "bounce"})
        assert r.status_code == 404 and r.json()["code"] == "provider_hook.not_found", wrong


async def test_fields_that_do_not_fit_the_provider_are_refused(loop: Loop) -> None:
    client = loop.tenant.client
    for body in (
        {"provider": "mailgun"},  # needs its signing key
        {"provider": "postmark", "signing_key": "key-abcdefgh"},
        {"provider": "ses", "basic_auth": {"username": "a", "password": "long-enough-password"}},
        {"provider": "sendgrid", "public_key": "A" * 60},  # not a DER key
        {"provider": "sendgrid", "topic_arn": "arn:aws:sns:us-east-1:123456789012:t"},
        {"provider": "other"},
    ):
        r = await client.post("/v1/provider-hooks", json=body)
        assert r.status_code == 422 and r.json()["code"] == "validation_error", body


async def test_a_hook_reaches_only_its_own_workspace(loop: Loop, make_tenant, http) -> None:  # type: ignore[no-untyped-def]
    """A hook of another workspace, handed a notification about this workspace's message, matches nothing."""
    await loop.send_step()
    grace = loop.contacts[0]
    other = await make_tenant()
    r = await other.client.post("/v1/provider-hooks", json={"provider": "smtp2go"})
    assert r.status_code == 201, r.text
    path = "/hooks/" + r.json()["url"].split("/hooks/", 1)[1]
    r = await http.post(path, json=samples.smtp2go_event(grace, loop.sent[grace].message_id_header))
    assert r.status_code == 200 and r.json()["unmatched"] == 1, r.text
    assert await suppressed(loop, grace) is None
    assert (await loop.messages(grace))[0].state == "sent"
    listed = (await loop.tenant.client.get("/v1/provider-hooks")).json()["data"]
    assert listed == []


async def test_a_signing_key_survives_a_data_key_rotation(loop: Loop, http, vault: Vault) -> None:  # type: ignore[no-untyped-def]
    await loop.send_step()
    grace = loop.contacts[0]
    hook_id, path = await create_hook(loop, "mailgun", signing_key=MAILGUN_KEY)
    async with loop.sessionmaker() as session:
        before = (await session.get_one(ProviderHook, hook_id)).data_key_id
    result = await rotate_data_key(loop.sessionmaker, vault, loop.tenant.workspace_id)
    assert result.retired >= 1
    async with loop.sessionmaker() as session:
        assert (await session.get_one(ProviderHook, hook_id)).data_key_id == result.data_key_id != before
    r = await http.post(path, json=_mailgun(samples.mailgun_event(grace, loop.sent[grace].message_id_header)))
    assert r.status_code == 200 and r.json()["applied"] == 1, r.text


async def test_accepted_notifications_past_the_retention_are_purged(loop: Loop, http, settings: Settings) -> None:  # type: ignore[no-untyped-def]
    _, path = await create_hook(loop, "smtp2go")
    for n in range(3):
        r = await http.post(path, json=samples.smtp2go_event(f"n{n}@example.org", f"<none-{n}@example.org>"))
        assert r.status_code == 200 and r.json()["unmatched"] == 1, r.text
    async with loop.sessionmaker() as session, session.begin():
        rows = list(await session.scalars(select(ProviderHookEvent).order_by(ProviderHookEvent.id)))
        rows = [row for row in rows if row.workspace_id == loop.tenant.workspace_id]
        for row, age in zip(rows, (31, 30.5, 1), strict=True):
            row.created_at = utcnow() - timedelta(days=age)
    ctx = {"nimbus": SimpleNamespace(settings=settings, sessionmaker=loop.sessionmaker)}
    tasks.PURGE_BATCH, batch = 1, tasks.PURGE_BATCH  # several batches
    try:
        assert await tasks.purge_provider_hook_events(ctx) >= 2
        assert await tasks.purge_provider_hook_events(ctx) == 0
    finally:
        tasks.PURGE_BATCH = batch
    async with loop.sessionmaker() as session:
        kept = await session.scalars(
            select(ProviderHookEvent.id).where(ProviderHookEvent.workspace_id == loop.tenant.workspace_id)
        )
        assert list(kept) == [rows[2].id]
