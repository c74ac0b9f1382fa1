"""Special-use domain names (RFC 2606/6761): refused by default with a message naming the setting,
accepted everywhere an address is validated when ``NIMBUS_ALLOW_SPECIAL_USE_DOMAINS`` is on, announced
at start. The suite's own settings turn it on (its mail world lives under ``.test``); the tests of the
default build an app of their own with it off."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import structlog
from pydantic import TypeAdapter, ValidationError
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nimbus_api.api.app import create_app
from nimbus_api.api.state import AppState
from nimbus_api.config import Settings
from nimbus_api.credentials.vault import Vault
from nimbus_api.kit import special_use
from nimbus_api.kit.validators import EmailAddress, email_domain
from nimbus_api.models import Contact, EmailAccount, Suppression
from nimbus_api.workspaces import service as workspaces
from tests.conftest import Tenant, account_payload
from tests.test_cli import NIMBUS

ADDRESS = TypeAdapter(EmailAddress)
SETTING = "NIMBUS_ALLOW_SPECIAL_USE_DOMAINS"


@pytest.fixture
async def strict_client(
    settings: Settings, app_state: AppState, sessionmaker: async_sessionmaker[AsyncSession], vault: Vault
) -> AsyncIterator[httpx.AsyncClient]:
    """A client of an app built with the default (special-use names refused), on a fresh workspace."""
    strict = settings.model_copy(update={"allow_special_use_domains": False})
    app = create_app(strict, state=app_state)
    async with sessionmaker() as session, session.begin():
        workspace = await workspaces.create_workspace(session, vault, f"ws-{secrets.token_hex(6)}")
        _, token = await workspaces.create_api_key(session, workspace.id, "test")
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://nimbus.test",
        headers={"Authorization": f"Bearer {token}"},
    ) as client:
        yield client


def _refusal(r: httpx.Response, field: str) -> str:
    assert r.status_code == 422, r.text
    body = r.json()
    assert body["code"] == "validation_error"
    errors = {e["field"]: e["message"] for e in body["errors"]}
    assert field in errors, errors
    return errors[field]


async def _count(sm: async_sessionmaker[AsyncSession], model: Any, email: str) -> int:
    async with sm() as session:
        return await session.scalar(select(func.count()).select_from(model).where(model.email == email)) or 0


async def test_off_a_test_address_is_a_422_that_names_the_setting_and_nothing_is_saved(
    strict_client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    message = _refusal(await strict_client.post("/v1/contacts", json={"email": "a@mail.test"}), "email")
    assert "mail.test is under .test, a special-use domain name (RFC 6761)" in message
    assert f"an operator can allow such addresses (a staging or local mail world) with {SETTING}=true" in message
    assert await _count(sessionmaker, Contact, "a@mail.test") == 0

    for address in ("b@x.invalid", "c@mail.localhost", "d@bücher.test"):
        assert SETTING in _refusal(await strict_client.post("/v1/suppressions", json={"email": address}), "email")
        assert await _count(sessionmaker, Suppression, address) == 0

    # An account is refused before its live verification is tried (nothing is connected either).
    payload = account_payload()
    message = _refusal(await strict_client.post("/v1/email-accounts", json=payload), "email")
    assert SETTING in message
    assert await _count(sessionmaker, EmailAccount, str(payload["email"])) == 0
    reply_to = account_payload(email="replyto@example.com") | {"reply_to": "r@mail.test"}
    assert SETTING in _refusal(await strict_client.post("/v1/email-accounts", json=reply_to), "reply_to")

    r = await strict_client.post(
        "/v1/contacts/import", json={"contacts": [{"email": "e@mail.test"}, {"email": "f@example.com"}]}
    )
    assert r.status_code == 200, r.text
    report = r.json()
    assert report["created"] == 1
    [rejected] = report["rejected"]
    assert (rejected["row"], rejected["email"], rejected["field"]) == (0, "e@mail.test", "email")
    assert SETTING in rejected["reason"]

    csv = "email,first_name\ng@mail.localhost,Gus\n"
    r = await strict_client.post("/v1/contacts/import/csv", files={"file": ("contacts.csv", csv, "text/csv")})
    assert r.status_code == 200, r.text
    assert [x["email"] for x in r.json()["rejected"]] == ["g@mail.localhost"]
    assert SETTING in r.json()["rejected"][0]["reason"]


async def test_on_every_validation_accepts_them(tenant: Tenant) -> None:
    for address in ("a@mail.test", "b@x.invalid", "c@mail.localhost", "zoë@Bücher.LocalHost"):
        r = await tenant.client.post("/v1/contacts", json={"email": address})
        assert r.status_code == 201, r.text
        assert r.json()["email"] == address.split("@")[0] + "@" + address.split("@")[1].lower()
        assert (await tenant.client.post("/v1/suppressions", json={"email": address})).status_code == 201
    r = await tenant.client.post("/v1/contacts/import", json={"contacts": [{"email": "i@mail.invalid"}]})
    assert (r.json()["created"], r.json()["rejected"]) == (1, [])
    # The suite's accounts all live under .test and pass verification; reply_to too.
    r = await tenant.client.post("/v1/email-accounts", json=account_payload() | {"reply_to": "r@mail.localhost"})
    assert r.status_code == 201, r.text
    assert r.json()["reply_to"] == "r@mail.localhost"


def test_the_policy_outside_a_request(settings: Settings) -> None:
    # The process default is on: the run's settings fixture set it, as a worker does at start.
    assert ADDRESS.validate_python("Ada@Mail.TEST") == "Ada@mail.test"
    with special_use.policy(False):
        refused = ("a@mail.test", "a@test", "a@localhost", "a@x.y.invalid", "a@xn--bcher-kva.test", "a@m.ＴＥＳＴ")
        for address in refused:
            with pytest.raises(ValidationError, match=SETTING):
                ADDRESS.validate_python(address)
        # .example is never special (RFC 6761 asks applications not to treat it so), nor example.com.
        assert ADDRESS.validate_python("a@mail.example") == "a@mail.example"
        assert ADDRESS.validate_python("a@example.com") == "a@example.com"
        # A stored address keeps its domain when the setting is turned off.
        assert email_domain("a@bücher.localhost") == "xn--bcher-kva.localhost"
        # Syntax errors still win, and are the library's.
        with pytest.raises(ValidationError, match="invalid characters"):
            ADDRESS.validate_python("a@@mail.test")
    with special_use.policy(True):
        assert ADDRESS.validate_python("a@xn--bcher-kva.localhost") == "a@bücher.localhost"
        # Other reserved names stay refused, the setting or not.
        for address in ("a@printer.local", "a@x.onion", "a@1.0.0.127.in-addr.arpa"):
            with pytest.raises(ValidationError, match="special-use or reserved"):
                ADDRESS.validate_python(address)
        for address in ("a@.test", "a@mail..localhost", "@mail.test", "a@-x.invalid"):
            with pytest.raises(ValidationError):
                ADDRESS.validate_python(address)


async def test_the_api_announces_it_at_start_as_a_warning(settings: Settings, app_state: AppState) -> None:
    for allow, expected in ((True, 1), (False, 0)):
        app = create_app(settings.model_copy(update={"allow_special_use_domains": allow}), state=app_state)
        with structlog.testing.capture_logs() as logs:
            async with app.router.lifespan_context(app):
                pass
        warnings = [e for e in logs if e["event"] == "special_use_domains_allowed"]
        assert len(warnings) == expected, logs
        if warnings:
            assert (warnings[0]["log_level"], warnings[0]["component"]) == ("warning", "api")
            assert warnings[0]["setting"] == SETTING


def test_configure_process_sets_the_default_from_settings(settings: Settings) -> None:
    try:
        with structlog.testing.capture_logs() as logs:
            special_use.configure_process(settings.model_copy(update={"allow_special_use_domains": False}), "worker")
        assert not special_use.allowed() and logs == []
        with pytest.raises(ValidationError):
            ADDRESS.validate_python("a@mail.test")
    finally:
        special_use.configure_process(settings, "worker")
    assert special_use.allowed()


def test_nimbus_worker_logs_it_at_start(settings: Settings, tmp_path: Path) -> None:
    # The announcement comes before the worker reaches Redis: pointed at a port where nothing listens,
    # the worker logs it and then fails to connect, touching none of the run's state.
    env = {k: v for k, v in os.environ.items() if not k.startswith("NIMBUS_")} | {
        "NIMBUS_DATABASE_URL": settings.database_url or "",
        "NIMBUS_REDIS_URL": "redis://127.0.0.1:1/0",
        "NIMBUS_MASTER_KEYS": ",".join(k.get_secret_value() for k in settings.master_keys),
        SETTING: "true",
    }
    log_file = tmp_path / "worker.log"
    with log_file.open("wb") as out:
        proc = subprocess.Popen([NIMBUS, "worker"], env=env, stdout=subprocess.DEVNULL, stderr=out)
    try:
        deadline = time.monotonic() + 30
        while "special_use_domains_allowed" not in log_file.read_text() and time.monotonic() < deadline:
            if proc.poll() is not None:
                break
            time.sleep(0.1)
        lines = [line for line in log_file.read_text().splitlines() if "special_use_domains_allowed" in line]
        assert len(lines) == 1, log_file.read_text()
        assert "[warning" in lines[0] and "component=worker" in lines[0], lines[0]
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
