"""Canary: a recognisable password (and an OAuth account's access and refresh tokens) goes through every
route, the vault and the worker, then is searched for in every response, every log record (DEBUG, SQL
parameters included), every Redis key and value, and the text of the exceptions raised on the way. It must
be nowhere.

The canary is the mailbox's real SMTP and IMAP password in the mail world: every create, PATCH and verify
sends it to aiosmtpd and Dovecot, and a failed login with it (the server's password changed) goes through
the error path too. What the test servers keep (aiosmtpd's transcript, Dovecot's files) holds the canary
by design and is not searched: they are not the product. Our responses, logs, Redis and exceptions are
(the log capture takes every record of the process, aiosmtpd's, which masks AUTH, included)."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import pickle
import re
import secrets
import traceback
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

import fastapi.routing
import httpx
import pytest
import structlog
from arq import create_pool
from arq.connections import RedisSettings
from arq.jobs import SerializationError
from fastapi import FastAPI
from redis.asyncio import Redis
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nimbus_api.accounts import drafts
from nimbus_api.accounts import service as accounts
from nimbus_api.accounts.schemas import EmailAccountCreate, EmailAccountUpdate
from nimbus_api.api.state import AppState
from nimbus_api.config import Settings
from nimbus_api.credentials.vault import Actor, Vault
from nimbus_api.kit.crypto import KeyringError, MasterKeyring, Secret, generate_master_key
from nimbus_api.kit.problems import Problem
from nimbus_api.logging import configure_logging
from nimbus_api.models import Enrollment, Event, InboundMessage, OAuthGrant, WebhookAttempt, WebhookDelivery
from nimbus_api.worker.settings import QUEUE_NAME, create_worker
from tests.conftest import Tenant, account_payload, change_smtp_password
from tests.oauth_flow.conftest import FRONTEND_URL, consent, issued_tokens, new_mailbox, warmed
from tests.security.test_dump import assert_absent
from tests.sending.conftest import Campaigns
from tests.servers.mail_world import MailWorld
from tests.servers.oauth_server import OAuthTestServer

# resolves (the mail world's DNS) to loopback, which the test settings allowlist
WEBHOOK_URL = "https://mail.example.test/hooks/nimbus"
_RECORD_ATTRS = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


class RenderEverything(logging.Formatter):
    """Renders all a record carries: message, raw msg and args, every extra attribute, traceback, stack."""

    def format(self, record: logging.LogRecord) -> str:
        parts = [record.levelname, record.name]
        try:
            parts.append(record.getMessage())
        except Exception as exc:  # a broken record is still searched through msg/args below
            parts.append(f"<unformattable: {exc!r}>")
        parts += [repr(record.msg), repr(record.args)]
        parts += [f"{k}={v!r}" for k, v in record.__dict__.items() if k not in _RECORD_ATTRS]
        if record.exc_info:
            parts.append(self.formatException(record.exc_info))
        if record.exc_text:
            parts.append(record.exc_text)
        if record.stack_info:
            parts.append(record.stack_info)
        return " | ".join(parts)


class Capture:
    def __init__(self) -> None:
        self.everything = io.StringIO()
        self.production = io.StringIO()

    def text(self) -> str:
        return self.everything.getvalue() + "\n" + self.production.getvalue()


def _not_the_oauth_test_server(record: logging.LogRecord) -> bool:
    """The local OAuth server's libraries (authlib, werkzeug) log the tokens they issue, as a provider's own
    logs would: they are no part of the product, like aiosmtpd's transcript."""
    return not record.name.startswith(("authlib", "werkzeug"))


@pytest.fixture(params=["console", "json"])
def captured_logs(request: pytest.FixtureRequest) -> Iterator[Capture]:
    """Logging as the API and worker set it up (``configure_logging``, DEBUG), every logger opened to DEBUG
    (``sqlalchemy.engine`` too, so SQL parameters are logged), two capturing handlers on the root: one
    with the product's own formatter, one rendering every field of every record. Restored afterwards."""
    root = logging.getLogger()
    saved_structlog = structlog.get_config()
    saved_root = (root.level, list(root.handlers))
    loggers = [lg for lg in logging.root.manager.loggerDict.values() if isinstance(lg, logging.Logger)]
    saved_loggers = {lg.name: (lg.level, lg.disabled) for lg in loggers}

    configure_logging("debug", request.param)
    product = next(h for h in root.handlers if getattr(h, "_nimbus", False))
    capture = Capture()
    everything = logging.StreamHandler(capture.everything)
    everything.setFormatter(RenderEverything())
    production = logging.StreamHandler(capture.production)
    production.setFormatter(product.formatter)
    for handler in (everything, production):
        handler.setLevel(logging.DEBUG)
        handler.addFilter(_not_the_oauth_test_server)
        root.addHandler(handler)
    for lg in loggers:
        lg.disabled = False
        if lg.level > logging.DEBUG:
            lg.setLevel(logging.DEBUG)
    logging.getLogger("sqlalchemy.engine").setLevel(logging.DEBUG)
    try:
        yield capture
    finally:
        for handler in list(root.handlers):
            if handler not in saved_root[1]:
                root.removeHandler(handler)
        root.setLevel(saved_root[0])
        for lg in [lg for lg in logging.root.manager.loggerDict.values() if isinstance(lg, logging.Logger)]:
            level, disabled = saved_loggers.get(lg.name, (logging.NOTSET, False))
            lg.setLevel(level)
            lg.disabled = disabled
        structlog.configure(**saved_structlog)


async def redis_dump(redis: Redis) -> bytes:
    """Every key of the test's Redis database, and every value whatever its type."""
    chunks: list[bytes] = []
    async for key in redis.scan_iter(count=1000):
        chunks.append(key)
        kind = (await redis.type(key)).decode()
        if kind == "string":
            chunks.append(await redis.get(key) or b"")
        elif kind == "hash":
            for field, value in (await redis.hgetall(key)).items():
                chunks += [field, value]
        elif kind == "list":
            chunks += await redis.lrange(key, 0, -1)
        elif kind == "set":
            chunks += list(await redis.smembers(key))
        elif kind == "zset":
            chunks += [member for member, _ in await redis.zrange(key, 0, -1, withscores=True)]
        elif kind == "stream":
            for entry_id, fields in await redis.xrange(key):
                chunks.append(entry_id)
                for field, value in fields.items():
                    chunks += [field, value]
        else:
            chunks.append(await redis.dump(key) or b"")
    return b"\n".join(chunks)


def _render(response: httpx.Response) -> bytes:
    head = f"{response.status_code} {response.reason_phrase}\n" + "".join(
        f"{k}: {v}\n" for k, v in response.headers.multi_items()
    )
    return head.encode() + response.content


def _formatted(exc: BaseException) -> str:
    return "".join(traceback.format_exception(exc)) + repr(exc) + str(exc)


def _smtp_login(username: str, password: str) -> None:
    raise ConnectionRefusedError(f"535 5.7.8 authentication failed for {username}")


async def _send_like_a_worker(
    sessionmaker: async_sessionmaker[AsyncSession], vault: Vault, account_id: uuid.UUID
) -> Secret:
    """What a send task does: reveal (audited), hand the plaintext to the SMTP client, log a failure with
    its traceback. The plaintext is a local variable of the frames in that traceback."""
    log = structlog.get_logger("nimbus_api.worker.send")
    async with sessionmaker() as session, session.begin():
        secret = await vault.reveal_for_account(
            session, account_id, "smtp_password", actor=Actor.system("send"), purpose="send"
        )
    assert secret is not None
    log.debug("smtp_login", account_id=str(account_id), password=secret, smtp_secret=secret)
    logging.getLogger("nimbus_api.worker.send").debug("login with %s / %r", secret, secret)
    try:
        password = secret.reveal()
        _smtp_login("ada", password)
    except ConnectionRefusedError:
        log.exception("smtp_login_failed", account_id=str(account_id))
        logging.getLogger("nimbus_api.worker.send").exception("smtp login failed (stdlib)")
    return secret


def _routes(app: FastAPI) -> set[tuple[str, str]]:
    """(method, path template) of every route, including those of included routers."""
    # FastAPI >= 0.16x keeps included routers as lazy entries of ``app.routes``; this flattens them.
    flatten = getattr(fastapi.routing, "iter_route_contexts", None)
    routes = list(flatten(app.routes)) if flatten else list(app.routes)
    found = {
        (method, route.path)
        for route in routes
        if getattr(route, "path", None)
        for method in getattr(route, "methods", None) or ()
    }
    expected = {
        ("POST", "/v1/email-accounts"),
        ("GET", "/v1/email-accounts"),
        ("GET", "/v1/email-accounts/{account_id}"),
        ("PATCH", "/v1/email-accounts/{account_id}"),
        ("POST", "/v1/email-accounts/{account_id}/verify"),
        ("DELETE", "/v1/email-accounts/{account_id}"),
        ("GET", "/v1/domains/{domain_id}"),
        ("GET", "/v1/audit-log"),
        ("GET", "/v1/workspace"),
        ("PATCH", "/v1/workspace"),
        ("GET", "/v1/email-accounts/{account_id}/events"),
        ("POST", "/v1/campaigns"),
        ("GET", "/v1/campaigns/{campaign_id}"),
        ("POST", "/v1/campaigns/{campaign_id}/start"),
        ("GET", "/v1/campaigns/{campaign_id}/stats"),
        ("POST", "/v1/campaigns/{campaign_id}/accounts"),
        ("POST", "/v1/campaigns/{campaign_id}/enrollments"),
        ("POST", "/v1/contacts/import"),
        ("POST", "/v1/contacts/import/csv"),
        ("GET", "/v1/suppressions"),
        ("GET", "/v1/events"),
        ("GET", "/u/{token}"),
        ("POST", "/u/{token}"),
        ("GET", "/healthz"),
        ("GET", "/readyz"),
    }
    assert expected <= found, expected - found
    return found


def _path_for(path: str, ids: dict[str, str], default: str) -> str:
    return re.sub(r"\{(\w+)(?::\w+)?\}", lambda m: ids.get(m.group(1), default), path)


async def test_a_canary_password_leaks_nowhere(
    tenant: Tenant,
    app: FastAPI,
    http: httpx.AsyncClient,
    settings: Settings,
    sessionmaker: async_sessionmaker[AsyncSession],
    vault: Vault,
    redis: Redis,
    app_state: AppState,
    mail_world: MailWorld,
    captured_logs: Capture,
    oauth_server: OAuthTestServer,
) -> None:
    canary = f"CANARY-{secrets.token_hex(12)}-pw"
    responses: list[httpx.Response] = []
    exceptions: list[str] = []

    async def call(method: str, url: str, client: httpx.AsyncClient | None = None, **kw: Any) -> httpx.Response:
        response = await (client or tenant.client).request(method, url, **kw)
        responses.append(response)
        return response

    def body(**overrides: object) -> dict[str, object]:
        """A fresh mailbox whose SMTP server and Dovecot both have the canary as its password."""
        return account_payload(smtp_password=canary, imap_password=canary, **overrides)

    # --- create, idempotent replay, reads, updates, verify ---------------------------------------------
    create = body(email=f"canary-{secrets.token_hex(4)}@example.test")
    login = str(create["email"]).lower()
    first = await call("POST", "/v1/email-accounts", json=create, headers={"Idempotency-Key": "canary-1"})
    assert first.status_code == 201, first.text
    account = first.json()
    assert account["smtp"]["password_set"] is True and account["imap"]["password_set"] is True
    account_id = account["id"]
    replay = await call("POST", "/v1/email-accounts", json=create, headers={"Idempotency-Key": "canary-1"})
    assert replay.status_code == 201 and replay.headers["Idempotent-Replayed"] == "true"
    assert replay.json() == account
    mismatch = await call(
        "POST", "/v1/email-accounts", json={**create, "label": "other"}, headers={"Idempotency-Key": "canary-1"}
    )
    assert mismatch.status_code == 422 and mismatch.json()["code"] == "idempotency_key.mismatch"

    assert (await call("GET", f"/v1/email-accounts/{account_id}")).status_code == 200
    assert (await call("GET", "/v1/email-accounts")).status_code == 200
    assert (await call("GET", "/v1/email-accounts", params={"limit": 1})).status_code == 200
    for patch in (
        {"label": "canary account"},
        # each of these re-verifies with the canary, sent to both servers again
        {"smtp": {"password": canary}},
        {"imap": {"password": canary, "folder": "INBOX"}},
        {"smtp": {"host": "mail.example.test", "password": canary}, "imap": {"password": canary}},
    ):
        r = await call("PATCH", f"/v1/email-accounts/{account_id}", json=patch)
        assert r.status_code == 200, r.text
        assert r.json()["smtp"]["password_set"] is True and r.json()["imap"]["password_set"] is True
        assert r.json()["last_verification"]["status"] == "passed"
    verified = await call("POST", f"/v1/email-accounts/{account_id}/verify", headers={"Idempotency-Key": "canary-v"})
    assert verified.status_code == 200 and verified.json()["status"] == "passed", verified.text
    again = await call("POST", f"/v1/email-accounts/{account_id}/verify", headers={"Idempotency-Key": "canary-v"})
    assert again.headers["Idempotent-Replayed"] == "true"

    # --- failed logins with the canary: the server's password changed, ours did not --------------------
    change_smtp_password(login, "changed-on-the-server")
    refused = await call("PATCH", f"/v1/email-accounts/{account_id}", json={"smtp": {"password": canary}})
    assert refused.status_code == 422, refused.text
    assert (refused.json()["code"], refused.json()["check"]) == ("smtp.auth_failed", "smtp")
    assert_absent(_render(refused), {"canary": canary}, "the 422 of a failed login")
    stale = await call("POST", f"/v1/email-accounts/{account_id}/verify")
    assert stale.status_code == 200 and stale.json()["code"] == "smtp.auth_failed", stale.text
    newcomer = body(email=f"canary-{secrets.token_hex(4)}@example.test")
    change_smtp_password(str(newcomer["email"]), "not-the-canary")
    r = await call("POST", "/v1/email-accounts", json=newcomer, headers={"Idempotency-Key": "canary-refused"})
    assert r.status_code == 422 and r.json()["code"] == "smtp.auth_failed", r.text
    change_smtp_password(login, canary)

    # --- an OAuth account: its tokens go through the connect, a refresh and the walk below -----------
    oauth_email = new_mailbox(mail_world, oauth_server)
    authorized = await call(
        "POST", "/v1/oauth/google/authorize", json={"frontend_url": FRONTEND_URL, "login_hint": oauth_email}
    )
    assert authorized.status_code == 201, authorized.text
    back = await call("GET", await consent(oauth_server, authorized.json()["authorize_url"]), client=http)
    assert back.status_code == 303 and "account_id=" in back.headers["location"], back.headers
    oauth_account_id = parse_qs(urlsplit(back.headers["location"]).query)["account_id"][0]
    oauth_server.expire_access_tokens()  # the verify meets a refused token and refreshes it
    refreshed = await call("POST", f"/v1/email-accounts/{oauth_account_id}/verify")
    assert refreshed.status_code == 200 and refreshed.json()["status"] == "passed", refreshed.text
    assert len(issued_tokens(oauth_server, oauth_email)) == 3, "two access tokens (connect, refresh), one refresh"
    # a Microsoft 365 account: its refresh tokens rotate, so every refresh stores a new one
    ms_email = new_mailbox(mail_world, oauth_server)
    authorized_ms = await call(
        "POST", "/v1/oauth/microsoft/authorize", json={"frontend_url": FRONTEND_URL, "login_hint": ms_email}
    )
    back = await call("GET", await consent(oauth_server, authorized_ms.json()["authorize_url"]), client=http)
    assert back.status_code == 303 and "account_id=" in back.headers["location"], back.headers
    ms_account_id = parse_qs(urlsplit(back.headers["location"]).query)["account_id"][0]
    oauth_server.expire_access_tokens()
    refreshed = await call("POST", f"/v1/email-accounts/{ms_account_id}/verify")
    assert refreshed.status_code == 200 and refreshed.json()["status"] == "passed", refreshed.text
    assert len(issued_tokens(oauth_server, ms_email)) == 4, "two access tokens and two refresh tokens"

    # --- rejected input that carries the canary ----------------------------------------------------
    too_long = canary * (1 + 1024 // len(canary))
    smtp = create["smtp"]
    assert isinstance(smtp, dict)
    rejected: list[tuple[str, str, object]] = [
        ("POST", "/v1/email-accounts", {**create, "smtp": {**smtp, "password": too_long}}),
        ("POST", "/v1/email-accounts", {**create, "smtp": {**smtp, "port": 70000}}),
        ("POST", "/v1/email-accounts", {**create, "smtp": {**smtp, "port": 465}}),  # mode/port conflict
        ("POST", "/v1/email-accounts", {**create, "smtp": {**smtp, "username": None}}),  # password w/o user
        ("POST", "/v1/email-accounts", {**create, "unknown_field": canary}),
        ("POST", "/v1/email-accounts", {**create, "smtp": {**smtp, "pass": canary}}),
        ("POST", "/v1/email-accounts", {**create, "imap": {"password": canary}}),
        ("POST", "/v1/email-accounts", {**create, "smtp": {**smtp, "password": {"value": canary}}}),
        ("PATCH", f"/v1/email-accounts/{account_id}", {"smtp": {"password": too_long}}),
        ("PATCH", f"/v1/email-accounts/{account_id}", {"smtp": {"password": canary, "port": 465}}),
        ("PATCH", f"/v1/email-accounts/{account_id}", {"imap": {"password": canary, "port": 0}}),
        ("PATCH", f"/v1/email-accounts/{account_id}", {"secret": canary}),
        ("PATCH", f"/v1/email-accounts/{account_id}", {"smtp": None, "label": canary * 100}),
    ]
    for method, url, payload in rejected:
        r = await call(method, url, json=payload)
        assert r.status_code == 422, (method, payload, r.text)
        assert r.headers["content-type"] == "application/problem+json"
    broken = await call(
        "POST",
        "/v1/email-accounts",
        content=b'{"smtp": {"password": "' + canary.encode() + b'", ',
        headers={"Content-Type": "application/json"},
    )
    assert broken.status_code == 400 and broken.json()["code"] == "request.malformed"
    # a bearer token that is the canary: rejected without being echoed
    assert (
        await call("GET", "/v1/workspace", client=http, headers={"Authorization": f"Bearer {canary}"})
    ).status_code == 401
    assert (
        await call("GET", "/v1/workspace", client=http, headers={"Authorization": f"Bearer nmb_{canary}"})
    ).status_code == 401

    # the service-level checks that reject a merged PATCH and a failed login: their exception texts
    async with sessionmaker() as session:
        with pytest.raises(Problem) as problem:
            await accounts.update(
                session,
                vault,
                app_state.verifier,
                tenant.workspace_id,
                uuid.UUID(account_id),
                EmailAccountUpdate.model_validate({"smtp": {"port": 465, "password": canary}}),
                actor=Actor.api_key(tenant.api_key_id),
            )
        await session.rollback()
    exceptions.append(_formatted(problem.value) + repr(problem.value.to_body()))
    change_smtp_password(login, "changed-on-the-server")
    async with sessionmaker() as session:
        with pytest.raises(Problem) as failed_login:
            await accounts.update(
                session,
                vault,
                app_state.verifier,
                tenant.workspace_id,
                uuid.UUID(account_id),
                EmailAccountUpdate.model_validate({"smtp": {"password": canary}}),
                actor=Actor.api_key(tenant.api_key_id),
            )
        await session.rollback()
    change_smtp_password(login, canary)
    assert failed_login.value.to_body()["code"] == "smtp.auth_failed"
    exceptions.append(_formatted(failed_login.value) + repr(failed_login.value.to_body()))
    # what the service holds before saving: secrets as ``Secret``, masked in any repr (e.g. traceback locals)
    exceptions.append(repr(drafts.from_create(EmailAccountCreate.model_validate(create))))

    # --- the vault, used the way a worker would -----------------------------------------------------
    secret = await _send_like_a_worker(sessionmaker, vault, uuid.UUID(account_id))
    assert secret.reveal() == canary, "the canary really is the stored password"
    audit = (await call("GET", "/v1/audit-log", params={"account_id": account_id})).json()["data"]
    assert audit[0]["actor"] == "system:send" and (audit[0]["purpose"], audit[0]["credential"]) == (
        "send",
        "smtp_password",
    )
    assert {(e["purpose"], e["credential"]) for e in audit[1:]} == {
        ("verify", "smtp_password"),
        ("verify", "imap_password"),
    }, "the PATCHes and verifies decrypted what they did not get sent"
    with pytest.raises(RuntimeError) as wrapped:
        raise RuntimeError(f"send failed with {secret} / {secret!r}")
    exceptions.append(_formatted(wrapped.value))
    with pytest.raises(KeyringError) as foreign:
        async with sessionmaker() as session, session.begin():
            await Vault(MasterKeyring.from_strings([generate_master_key()])).reveal_for_account(
                session, uuid.UUID(account_id), "smtp_password", actor=Actor.system("send"), purpose="send"
            )
    exceptions.append(_formatted(foreign.value))

    # a Secret cannot become a job argument: pickling it (what arq does) raises
    with pytest.raises(TypeError) as pickled:
        pickle.dumps(secret)
    exceptions.append(_formatted(pickled.value))

    # --- the arq worker, for real, in burst mode ----------------------------------------------------
    assert settings.redis_url
    pool = await create_pool(RedisSettings.from_dsn(settings.redis_url))
    try:
        # a queue of its own: the jobs earlier tests left on the shared queue (senders of their inboxes)
        # are not this burst's to run, and it ends when its own queue is empty
        queue = f"{QUEUE_NAME}:canary:{secrets.token_hex(4)}"
        queued_before = await pool.zcard(queue)
        with pytest.raises(SerializationError) as refused:
            await pool.enqueue_job("purge_idempotency_keys", secret, _queue_name=queue)
        assert isinstance(refused.value.__cause__, TypeError)
        exceptions.append(_formatted(refused.value))
        assert await pool.zcard(queue) == queued_before, "nothing was enqueued"

        job = await pool.enqueue_job("purge_idempotency_keys", _queue_name=queue)
        assert job is not None
        # the OAuth account's jobs: the refresh cron's job, which finds its token due (and the provider
        # expired it), and a send of a queued message, which logs in with the refreshed token (XOAUTH2)
        oauth_uuid = uuid.UUID(oauth_account_id)
        await warmed(sessionmaker, oauth_uuid)
        outreach = Campaigns(sessionmaker, tenant)
        await outreach.dispatch(await outreach.campaign([oauth_uuid], ["oauth-lead@example.org"]))
        async with sessionmaker() as session, session.begin():
            (await session.get_one(OAuthGrant, oauth_uuid)).access_expires_at = datetime.now(UTC)
        oauth_server.expire_access_tokens()
        refreshes, delivered = oauth_server.counters["refresh_token"], len(mail_world.smtp.messages)
        await pool.enqueue_job("refresh_oauth_tokens", _queue_name=queue)
        await pool.enqueue_job("send_inbox", oauth_account_id, _queue_name=queue)
        # what arq keeps of the queued jobs (their arguments, pickled) is in Redis, searched below
        queued_jobs = await redis_dump(redis)
        assert oauth_account_id.encode() in queued_jobs, "the send job's arguments are in Redis"
        worker = create_worker(settings, burst=True, poll_delay=0.05, handle_signals=False, queue_name=queue)
        try:
            await asyncio.wait_for(worker.main(), timeout=30)
        finally:
            await worker.close()
        assert worker.jobs_complete >= 3 and worker.jobs_failed == 0
        assert isinstance(await job.result(timeout=5), int)
        assert oauth_server.counters["refresh_token"] == refreshes + 1, "the worker refreshed the token"
        assert [m.rcpt_tos for m in mail_world.smtp.messages[delivered:]] == [["oauth-lead@example.org"]]
    finally:
        await pool.aclose()

    # --- every route of the app, authenticated and not ------------------------------------------------
    # the sending objects the routes name: a started campaign with the account in its pool, a contact
    # enrolled in it (its unsubscribe token), a suppression
    domain_id = account["domain_id"]
    r = await call(
        "POST",
        "/v1/campaigns",
        json={"name": "canary campaign", "type": "cold", "steps": [{"delay_seconds": 0, "subject": "s", "text": "t"}]},
    )
    campaign_id = r.json()["id"]
    await call("POST", f"/v1/campaigns/{campaign_id}/accounts", json={"account_ids": [account_id]})
    assert (await call("POST", f"/v1/campaigns/{campaign_id}/start")).json()["status"] == "active"
    contact_id = (await call("POST", "/v1/contacts", json={"email": "reader@example.test"})).json()["id"]
    await call("POST", f"/v1/campaigns/{campaign_id}/enrollments", json={"contact_ids": [contact_id]})
    enrollment_id = (await call("GET", f"/v1/campaigns/{campaign_id}/enrollments")).json()["data"][0]["id"]
    suppression_id = (await call("POST", "/v1/suppressions", json={"email": "never@example.test"})).json()["id"]
    # a webhook endpoint: its signing secret is shown by its create (and each rotate) answer only
    hook = await call("POST", "/v1/webhook-endpoints", json={"url": WEBHOOK_URL})
    assert hook.status_code == 201, hook.text
    endpoint_id = hook.json()["id"]
    # a provider hook: its public URL (with its token) is walked with a notification about no message
    provider_hook = await call("POST", "/v1/provider-hooks", json={"provider": "smtp2go"})
    assert provider_hook.status_code == 201, provider_hook.text
    provider_hook_path = "/hooks/" + provider_hook.json()["url"].split("/hooks/", 1)[1]
    # a fleet import whose rows carry the canary as their passwords (sealed as the upload is read; no
    # worker runs here, so they stay sealed in the rows: the searches below look for them in plain form)
    fleet_csv = (
        "email,smtp_host,smtp_port,smtp_password,imap_host,imap_password\n"
        f"fleet-canary@example.test,smtp.example.test,587,{canary},imap.example.test,{canary}\n"
    )
    imported = await call("POST", "/v1/email-accounts/imports", files={"file": ("fleet.csv", fleet_csv, "text/csv")})
    assert imported.status_code == 202, imported.text
    async with sessionmaker() as session:
        token = await session.scalar(
            select(Enrollment.unsubscribe_token).where(Enrollment.id == uuid.UUID(enrollment_id))
        )
    started = (await call("GET", "/v1/events", params={"type": "campaign.started"})).json()["data"]
    # a reply in the canary account's inbox (as the sync stores one): answering it sends with the canary
    inbound_id = uuid.uuid4()
    raw = b"From: asker@example.test\r\nSubject: Re: hi\r\nMessage-ID: <canary-reply@example.test>\r\n\r\nyes\r\n"
    async with sessionmaker() as session, session.begin():
        session.add(
            InboundMessage(
                id=inbound_id,
                workspace_id=tenant.workspace_id,
                account_id=uuid.UUID(account_id),
                folder="INBOX",
                uidvalidity=1,
                uid=1,
                dedupe_key="canary-reply@example.test",
                message_id_header="canary-reply@example.test",
                kind="reply",
                reasons=[],
                classification={"recipients": [], "parse_notes": []},
                from_address="asker@example.test",
                subject="Re: hi",
                size=len(raw),
                raw=raw,
            )
        )
    rule_id = (await call("GET", "/v1/alert-rules")).json()["data"][0]["id"]
    ids = {
        "rule_id": rule_id,
        "event_id": started[0]["id"],
        "account_id": account_id,
        "domain_id": domain_id,
        "campaign_id": campaign_id,
        "contact_id": contact_id,
        "enrollment_id": enrollment_id,
        "suppression_id": suppression_id,
        "endpoint_id": endpoint_id,
        "token": str(token),
        "message_id": str(inbound_id),
        "attempt_id": authorized.json()["attempt_id"],
        "provider": "google",
        "hook_id": provider_hook.json()["id"],
        "import_id": imported.json()["id"],
    }

    def request_body(method: str, template: str) -> dict[str, Any]:
        """What each route takes; the account routes get the canary (as a new mailbox or new passwords)."""
        fresh = f"canary-{secrets.token_hex(4)}@example.test"
        bodies: dict[tuple[str, str], dict[str, Any]] = {
            ("POST", "/v1/campaigns"): {"json": {"name": "c", "type": "nurture"}},
            ("POST", "/v1/campaigns/{campaign_id}/accounts"): {"json": {"account_ids": [account_id]}},
            ("POST", "/v1/campaigns/{campaign_id}/enrollments"): {"json": {"contact_ids": [contact_id]}},
            ("POST", "/v1/campaigns/{campaign_id}/start"): {},
            ("POST", "/v1/campaigns/{campaign_id}/pause"): {},
            ("POST", "/v1/contacts"): {"json": {"email": fresh}},
            ("POST", "/v1/contacts/import"): {"json": {"contacts": [{"email": fresh}]}},
            ("POST", "/v1/contacts/import/csv"): {"files": {"file": ("c.csv", f"email\n{fresh}\n", "text/csv")}},
            ("POST", "/v1/suppressions"): {"json": {"email": fresh}},
            ("POST", "/u/{token}"): {"data": {"List-Unsubscribe": "One-Click"}},
            ("PATCH", "/v1/campaigns/{campaign_id}"): {"json": {"name": "renamed"}},
            ("PATCH", "/v1/contacts/{contact_id}"): {"json": {"first_name": "Reader"}},
            ("PATCH", "/v1/workspace"): {"json": {"monthly_send_quota": 10}},
            ("POST", "/v1/webhook-endpoints"): {"json": {"url": WEBHOOK_URL, "event_types": ["enrollment.*"]}},
            ("POST", "/v1/webhook-endpoints/{endpoint_id}/rotate-secret"): {},
            ("POST", "/v1/webhook-endpoints/{endpoint_id}/test"): {},
            ("POST", "/v1/events/{event_id}/replay"): {"json": {}},
            ("PATCH", "/v1/webhook-endpoints/{endpoint_id}"): {"json": {"description": "canary hook"}},
            ("PATCH", "/v1/inbox/{message_id}"): {"json": {"read": True}},
            ("POST", "/v1/inbox/{message_id}/reply"): {"json": {"text": "thanks"}},
            ("POST", "/v1/campaigns/{campaign_id}/accounts/{account_id}/reenable"): {},
            ("PATCH", "/v1/email-accounts/{account_id}/warmup"): {"json": {"enabled": True}},
            ("POST", "/v1/alert-rules"): {"json": {"kind": "score_below", "threshold": 10}},
            ("PATCH", "/v1/alert-rules/{rule_id}"): {"json": {"severity": "info"}},
            ("POST", "/v1/oauth/{provider}/authorize"): {"json": {"frontend_url": FRONTEND_URL}},
            ("POST", "/v1/email-accounts/{account_id}/reauthorize"): {
                "json": {"frontend_url": FRONTEND_URL, "provider": "google"}
            },
            ("POST", "/v1/provider-hooks"): {"json": {"provider": "postmark"}},
            ("POST", "/v1/email-accounts/imports"): {"files": {"file": ("fleet.csv", fleet_csv, "text/csv")}},
            ("POST", "/hooks/{provider}/{token}"): {"json": {"event": "bounce", "rcpt": fresh, "bounce": "hard"}},
        }
        if (method, template) in bodies:
            return bodies[(method, template)]
        if method in {"POST", "PUT"}:
            return {"json": body(email=fresh)}
        if method == "PATCH":
            return {"json": {"smtp": {"password": canary}, "imap": {"password": canary}}}
        return {}

    order = {"GET": 0, "HEAD": 0, "OPTIONS": 0, "POST": 1, "PUT": 1, "PATCH": 2, "DELETE": 3}
    calls: list[tuple[int, str, str, str]] = []
    for method, template in _routes(app):
        path = provider_hook_path if template == "/hooks/{provider}/{token}" else _path_for(template, ids, account_id)
        calls.append((order.get(method, 1), method, path, template))
    for _, method, path, template in sorted(calls):
        unauthenticated = await call(method, path, client=http, **request_body(method, template))
        assert unauthenticated.status_code < 500, (method, path)
        r = await call(method, path, **request_body(method, template))
        assert r.status_code < 500, (method, path, r.text)
        if template == "/v1/oauth/{provider}/callback":  # public: no state, so a 400 and no redirect
            assert r.status_code == 400 and r.json()["code"] == "oauth.state_invalid", r.text
        elif method != "DELETE":
            assert r.status_code < 300, (method, path, r.text)
    gone = await call("GET", f"/v1/email-accounts/{account_id}")
    assert gone.status_code == 404, "the DELETE route ran last"

    # the OAuth accounts are deleted too: Google's grant is revoked at the provider (its refresh token sent)
    revokes = oauth_server.counters["revoke"]
    for oauth_id in (oauth_account_id, ms_account_id):
        assert (await call("DELETE", f"/v1/email-accounts/{oauth_id}")).status_code == 204
    assert oauth_server.counters["revoke"] == revokes + 1, "Google's revoked, Microsoft has no endpoint"

    # --- now search everything ------------------------------------------------------------------------
    issued = sorted(issued_tokens(oauth_server, oauth_email) | issued_tokens(oauth_server, ms_email))
    assert len(issued) == 8, "Google: three access tokens, one refresh token; Microsoft: two and two"
    oauth_needles = {f"OAuth token {n}": token for n, token in enumerate(issued)}
    needle = {"canary": canary, **oauth_needles}
    assert_absent(queued_jobs, needle, "Redis while the jobs were queued (arq's job arguments)")
    # the canary really was the password on the wire: aiosmtpd's transcript (after TLS) has it, and the
    # detector finds it there (Dovecot's side is proven by the IMAP logins that passed with it)
    with pytest.raises(AssertionError, match="reveals"):
        assert_absent(bytes(mail_world.smtp.received), needle, "aiosmtpd's transcript")
    assert len(responses) > 30
    for response in responses:
        assert_absent(_render(response), needle, f"{response.request.method} {response.request.url} response")

    # the webhook signing secrets: each in the one answer that created it, and in nothing else
    shown = {
        id(r): r.json()["secret"]
        for r in responses
        if r.request.url.path.startswith("/v1/webhook-endpoints")
        and r.status_code in (200, 201)
        and "secret" in r.json()
    }
    assert len(shown) >= 3, "the create before the walk, the walk's create and its rotate"
    assert all(secret.startswith("whsec_") for secret in shown.values())
    hook_needles = {f"webhook secret {n}": secret.removeprefix("whsec_") for n, secret in enumerate(shown.values())}
    for response in responses:
        others = {name: s for name, s in hook_needles.items() if "whsec_" + s != shown.get(id(response))}
        assert_absent(_render(response), others, f"{response.request.method} {response.request.url} response")
    needle = {**needle, **hook_needles}

    # the event outbox (the webhook bodies to come): what the walk above made happen, and no canary in it
    async with sessionmaker() as session:
        outbox = list(await session.scalars(select(Event).where(Event.workspace_id == tenant.workspace_id)))
    assert {"campaign.started", "contact.suppressed", "enrollment.unsubscribed"} <= {e.type for e in outbox}
    for event in outbox:
        assert_absent(json.dumps(event.payload).encode(), needle, f"the {event.type} event row")
    # the deliveries and their attempts (the walk deleted its endpoint, and its deliveries with it)
    kept = await call("POST", "/v1/webhook-endpoints", json={"url": WEBHOOK_URL})
    assert kept.status_code == 201, kept.text
    needle["webhook secret kept"] = kept.json()["secret"].removeprefix("whsec_")
    tested = await call("POST", f"/v1/webhook-endpoints/{kept.json()['id']}/test")
    assert tested.status_code == 200 and tested.json()["succeeded"] is False, tested.text
    replayed = await call("POST", f"/v1/events/{ids['event_id']}/replay", json={"endpoint_id": kept.json()["id"]})
    assert replayed.status_code == 202, replayed.text
    for r in (tested, replayed):
        assert_absent(_render(r), needle, f"{r.request.method} {r.request.url} response")
    async with sessionmaker() as session:
        sent = list(
            await session.scalars(select(WebhookDelivery).where(WebhookDelivery.workspace_id == tenant.workspace_id))
        )
        tried = list(
            await session.scalars(select(WebhookAttempt).where(WebhookAttempt.workspace_id == tenant.workspace_id))
        )
    assert len(sent) == 2 and len(tried) == 1, "the test delivery (tried) and the replay (pending)"
    for row in [*sent, *tried]:
        text = repr({c.key: getattr(row, c.key) for c in row.__table__.columns}).encode()
        assert_absent(text, needle, f"a {row.__tablename__} row")

    logs = captured_logs.text()
    # the capture did see the traffic: SQL with its parameters, the worker, our events, the failure
    for expected in (
        "INSERT INTO credentials",
        "INSERT INTO credential_access_log",
        "purge_idempotency_keys",
        "idempotency_keys_purged",
        "smtp_login_failed",
        "ConnectionRefusedError",
        "smtp_login",
        "oauth_connected",
        "oauth_token_refreshed",  # by the API's verify and by the worker's refresh job
        "refresh_oauth_tokens",
        "oauth_grant_revoked",
        "INSERT INTO oauth_grants",
    ):
        assert expected in logs, expected
    assert_absent(captured_logs.everything.getvalue().encode(), needle, "captured log records")
    assert_absent(captured_logs.production.getvalue().encode(), needle, "logs as the product renders them")

    dump = await redis_dump(redis)
    assert b"arq:" in dump, "the worker's keys are in this Redis database"
    assert_absent(dump, needle, "Redis")

    assert len(exceptions) == 7
    for text in exceptions:
        assert_absent(text.encode(), needle, "exception text")
