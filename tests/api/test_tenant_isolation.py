"""Tenant isolation, proven route by route from the app's own OpenAPI document.

Workspace B owns one object of every kind (an email account, the domain it created, an audit row from a
secret reveal, an account event, a started campaign with the account in its pool, contacts, an
enrollment, a suppression). Workspace A's key then calls every operation the document lists:

* routes with path parameters get B's ids and must answer 404 problem+json with a documented
  ``*.not_found`` code; routes with several get A's ids with one of B's in turn (A's campaign with B's
  enrollment...) and must answer 404 too; the same call with A's own ids must succeed (so the 404 comes
  from workspace scoping, not from a broken route), also with B's idempotency key of that operation;
  the accounts are real mailboxes of the mail world, so the control PATCH (a new password) and verify
  run live checks;
* routes without path parameters (lists, the workspace, create) are called plain and with every known
  filter, cursor or header set to B's values, and must not show any of B's ids, address or domain;
* B's objects, stored secrets and audit trail read the same afterwards.

The public unsubscribe link (``/u/{token}``) takes no key: it is left out of the walks and has a test of
its own proving that a token reaches only its own workspace. So does the public OAuth callback, whose state
alone binds it (tests/oauth_flow/test_refusals.py); here it must refuse an unknown state. ``{provider}``
names no workspace's object: a route whose only path parameters are such is walked as a collection.

The route list comes from the document, never from a hand-written list: a new path parameter, request
body or required parameter this file does not know fails the walk with a message saying what to add,
and the walk asserts that every operation was exercised. Every route (except the health probes) also
answers 401 to a missing, malformed, unknown or revoked key.
"""

from __future__ import annotations

import re
import secrets
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nimbus_api.alerts.evaluate import evaluate as evaluate_alerts
from nimbus_api.credentials.vault import Actor, Vault
from nimbus_api.kit.pagination import encode_cursor
from nimbus_api.models import Credential, Enrollment, InboundMessage, WebhookSecret
from nimbus_api.workspaces import service as workspaces
from tests.conftest import OAUTH_FRONTEND, Tenant, TenantFactory, account_payload

PROBLEM = "application/problem+json"
PUBLIC_PATHS = {"/healthz", "/readyz"}
# Public, bound by the OAuth state it carries: an unknown state is a 400 (tests/oauth_flow walk the rest).
STATE_PATHS = {"/v1/oauth/{provider}/callback"}
# Path parameters that name no workspace's object (the same value in every workspace).
SHARED_PARAMS = {"provider": "google"}
# Public, and acting on what the token names (walked by ``test_an_unsubscribe_token_reaches_only_its_workspace``
# and tests/provider_hooks), with the code an unknown token answers.
TOKEN_PATHS = {"/u/{token}": "unsubscribe.not_found", "/hooks/{provider}/{token}": "provider_hook.not_found"}
HTTP_METHODS = ("get", "put", "post", "patch", "delete", "head", "options", "trace")
# Safe calls first; deletes last, so the control calls on A's own objects find them until the end.
METHOD_ORDER = {"get": 0, "head": 0, "options": 0, "post": 1, "put": 1, "patch": 1, "delete": 2}
NOT_FOUND_CODE = re.compile(r"^([a-z_]+\.)?not_found$")


@dataclass
class Owned:
    """One workspace and one object of each kind it owns."""

    tenant: Tenant
    account_id: str
    domain_id: str
    domain_name: str
    email: str
    audit_id: str
    idempotency_key: str
    verify_idempotency_key: str
    smtp_password: str
    event_id: str
    outbox_event_id: str
    campaign_id: str
    campaign_name: str
    contact_id: str
    contact_email: str
    enrollment_id: str
    unsubscribe_token: str
    suppression_id: str
    suppressed_email: str
    endpoint_id: str
    webhook_secret: str
    inbound_id: str
    rule_id: str
    alert_id: str
    oauth_attempt_id: str
    import_id: str
    provider_hook_id: str
    provider_hook_token: str
    # operationId -> the key this workspace used for it (its stored response must not replay elsewhere)
    idempotency_keys: dict[str, str]

    def secrets_to_hide(self) -> dict[str, str]:
        """What another workspace must never see of this one, by what it is."""
        return {
            "account id": self.account_id,
            "domain id": self.domain_id,
            "audit entry id": self.audit_id,
            "workspace id": str(self.tenant.workspace_id),
            "API key id": str(self.tenant.api_key_id),
            "email address": self.email,
            "domain name": self.domain_name,
            "SMTP password": self.smtp_password,
            "account event id": self.event_id,
            "outbox event id": self.outbox_event_id,
            "campaign id": self.campaign_id,
            "campaign name": self.campaign_name,
            "contact id": self.contact_id,
            "contact address": self.contact_email,
            "enrollment id": self.enrollment_id,
            "unsubscribe token": self.unsubscribe_token,
            "suppression id": self.suppression_id,
            "suppressed address": self.suppressed_email,
            "webhook endpoint id": self.endpoint_id,
            "webhook signing secret": self.webhook_secret,
            "inbound message id": self.inbound_id,
            "alert rule id": self.rule_id,
            "alert id": self.alert_id,
            "OAuth attempt id": self.oauth_attempt_id,
            "account import id": self.import_id,
            "provider hook id": self.provider_hook_id,
            "provider hook token": self.provider_hook_token,
        }


@dataclass
class World:
    a: Owned
    b: Owned
    revoked_token: str


# --- what the walk knows about the API; a new operation that needs more fails loudly -------------

# Path parameter -> the object it names, as an attribute of ``Owned``.
PATH_PARAMS: dict[str, str] = {
    "account_id": "account_id",
    "domain_id": "domain_id",
    "campaign_id": "campaign_id",
    "contact_id": "contact_id",
    "enrollment_id": "enrollment_id",
    "suppression_id": "suppression_id",
    "endpoint_id": "endpoint_id",
    "event_id": "outbox_event_id",
    "message_id": "inbound_id",
    "rule_id": "rule_id",
    "attempt_id": "oauth_attempt_id",
    "import_id": "import_id",
    "hook_id": "provider_hook_id",
}


# resolves (the mail world's DNS) to loopback, which the test settings allowlist
WEBHOOK_URL = "https://mail.example.test/hooks"


def _account_body(world: World) -> dict[str, Any]:
    return account_payload(email=f"new-{secrets.token_hex(4)}@{world.a.domain_name}")


def _patch_body(world: World) -> dict[str, Any]:
    # A password sent is verified before it is stored: A's mailbox really has this one. On B's account
    # the same body would be re-verified and re-encrypted, which the snapshot of B would show.
    return {
        "label": "written by workspace A",
        "is_active": False,
        "smtp": {"password": world.a.smtp_password},
        "current_stage": 5,
        "max_connections": 2,
    }


def _fresh_address(world: World) -> str:
    return f"new-{secrets.token_hex(4)}@{world.a.domain_name}"


def _campaign_body(name: str) -> dict[str, Any]:
    return {
        "name": name,
        "type": "cold",
        "steps": [{"delay_seconds": 0, "subject": "Hi {{ contact.first_name }}", "text": "{{ unsubscribe_url }}"}],
    }


# operationId -> a valid request body (valid for A's own object too: the control call proves it): JSON, or
# ``{"files": ...}`` for an upload (``FILES``). Operations without a request body (``email_accounts_verify``,
# ``campaigns_start``) need none.
BODIES: dict[str, Callable[[World], dict[str, Any]]] = {
    "email_accounts_create": _account_body,
    "email_accounts_update": _patch_body,
    "email_accounts_update_warmup": lambda world: {"enabled": True, "stage_override": 3},
    "workspace_update": lambda world: {"monthly_send_quota": 1000},
    "campaigns_create": lambda world: _campaign_body("written by workspace A"),
    "campaigns_update": lambda world: {"name": "renamed by workspace A", "min_health_score": 60},
    "campaign_accounts_attach": lambda world: {"account_ids": [world.a.account_id]},
    "enrollments_create": lambda world: {"contact_ids": [world.a.contact_id]},
    "contacts_create": lambda world: {"email": _fresh_address(world), "first_name": "A"},
    "contacts_update": lambda world: {"first_name": "Renamed", "fields": {"touched": "by A"}},
    "contacts_import": lambda world: {"contacts": [{"email": _fresh_address(world)}, {"email": world.a.contact_email}]},
    "contacts_import_csv": lambda world: {"file": ("a.csv", f"email,city\n{_fresh_address(world)},Oslo\n", "text/csv")},
    "suppressions_create": lambda world: {"email": _fresh_address(world)},
    "webhook_endpoints_create": lambda world: {"url": WEBHOOK_URL, "event_types": ["enrollment.*"]},
    "webhook_endpoints_update": lambda world: {"description": "written by workspace A", "enabled": False},
    "events_replay": lambda world: {},
    "inbox_update": lambda world: {"read": True, "archived": False},
    "inbox_reply": lambda world: {"text": "Answered from workspace A."},
    "alert_rules_create": lambda world: {"kind": "score_below", "threshold": 10},
    "alert_rules_update": lambda world: {"threshold": 20, "enabled": False},
    "oauth_authorize": lambda world: {"frontend_url": f"{OAUTH_FRONTEND}/inboxes"},
    "email_accounts_reauthorize": lambda world: {"frontend_url": f"{OAUTH_FRONTEND}/inboxes", "provider": "google"},
    "email_account_imports_create": lambda world: {
        "file": ("fleet.csv", f"email,smtp_host,smtp_port\n{_fresh_address(world)},smtp.example.test,587\n", "text/csv")
    },
    "provider_hooks_create": lambda world: {"provider": "smtp2go", "description": "written by workspace A"},
}
FILES = {"contacts_import_csv", "email_account_imports_create"}

# Query and header parameters set to B's values on routes without path parameters: filters, cursors and
# idempotency keys must stay inside the caller's workspace.
PROBES: dict[str, Callable[[Owned], str]] = {
    "account_id": lambda b: b.account_id,
    "campaign_id": lambda b: b.campaign_id,
    "domain_id": lambda b: b.domain_id,
    "domain": lambda b: b.domain_name,
    "name": lambda b: b.domain_name,
    "q": lambda b: b.email,
    "email": lambda b: b.suppressed_email,
    "cursor": lambda b: encode_cursor(uuid.UUID(b.account_id)),
    "subject_id": lambda b: b.account_id,
    "idempotency-key": lambda b: b.idempotency_key,
}
# Per operation, B's own key for it (B used it for the same operation, so its response is stored): one key
# for every operation would be a mismatch in A after its first use, which proves nothing about replays.
PER_OPERATION_PROBES = {"idempotency-key"}

# Header parameters set to B's values on A's own objects (routes with path parameters): B's key of a
# stored verify must not replay B's result, nor count as a mismatch, in A's workspace. (B's create key is
# not used here: the collection walk has already sent it from A, so A has a record of its own under it.)
OWN_PROBES: dict[str, Callable[[Owned], str]] = {
    "idempotency-key": lambda b: b.verify_idempotency_key,
}


def probe_value(name: str, owner: Owned, op: Operation, table: dict[str, Callable[[Owned], str]]) -> str:
    if name in PER_OPERATION_PROBES and op.id in owner.idempotency_keys:
        return owner.idempotency_keys[op.id]
    return table[name](owner)


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    spec: dict[str, Any]

    @property
    def id(self) -> str:
        return str(self.spec.get("operationId") or f"{self.method.upper()} {self.path}")

    def __str__(self) -> str:
        return f"{self.id} ({self.method.upper()} {self.path})"

    def params(self, where: str) -> list[dict[str, Any]]:
        return [p for p in self.spec.get("parameters", []) if p["in"] == where]

    @property
    def path_params(self) -> list[str]:
        return [p["name"] for p in self.params("path")]

    @property
    def object_params(self) -> list[str]:
        """The path parameters that name a workspace's object (not ``SHARED_PARAMS``)."""
        return [name for name in self.path_params if name not in SHARED_PARAMS]

    @property
    def success_status(self) -> int:
        return min(int(s) for s in self.spec["responses"] if s.startswith("2"))

    def documented_codes(self, status: int) -> set[str]:
        response = self.spec["responses"].get(str(status))
        assert response is not None, f"{self}: status {status} is not documented"
        return set(re.findall(r"`([a-z0-9_.]+)`", response.get("description", "")))

    def url(self, owner: Owned, foreign: tuple[str, Owned] | None = None) -> str:
        """The path with ``owner``'s ids; ``foreign=(name, other)`` takes that one parameter from ``other``."""
        path = self.path
        for name, value in SHARED_PARAMS.items():
            path = path.replace("{" + name + "}", value)
        for name in self.object_params:
            if name not in PATH_PARAMS:
                pytest.fail(
                    f"{self}: path parameter {name!r} is new to the isolation test; map it to the object "
                    "it names in PATH_PARAMS (and give Owned that object) so foreign ids are tried on it"
                )
            source = foreign[1] if foreign and foreign[0] == name else owner
            path = path.replace("{" + name + "}", getattr(source, PATH_PARAMS[name]))
        return path

    def body(self, world: World) -> dict[str, Any]:
        """Keyword arguments for the request body: ``json=`` or ``files=``."""
        if "requestBody" not in self.spec:
            return {}
        if self.id not in BODIES:
            pytest.fail(f"{self} takes a request body: add a valid one to BODIES in {__name__}")
        return {"files": BODIES[self.id](world)} if self.id in FILES else {"json": BODIES[self.id](world)}

    def check_required_params_known(self) -> None:
        for param in self.params("query") + self.params("header"):
            if param.get("required") and param["name"] not in PROBES:
                pytest.fail(f"{self}: required parameter {param['name']!r} is unknown; add it to PROBES")

    def probes(self, owner: Owned) -> list[tuple[dict[str, str], dict[str, str]]]:
        """(query, headers) variants: none, then each known parameter alone set to the owner's value
        (alone, so one filter can't hide what another leaks, e.g. a cursor hiding an account filter)."""
        variants: list[tuple[dict[str, str], dict[str, str]]] = [({}, {})]
        for where in ("query", "header"):
            for param in self.params(where):
                if param["name"] in PROBES:
                    value = {param["name"]: probe_value(param["name"], owner, self, PROBES)}
                    variants.append((value, {}) if where == "query" else ({}, value))
        return variants


def operations(document: dict[str, Any]) -> list[Operation]:
    ops = [
        Operation(method, path, spec)
        for path, item in document["paths"].items()
        for method, spec in item.items()
        if method in HTTP_METHODS
    ]
    assert ops, "the OpenAPI document lists no operations"
    # deletes of nested objects (a pool member, an enrollment) before the deletes of their parents
    return sorted(
        ops,
        key=lambda op: (
            METHOD_ORDER.get(op.method, 1),
            -op.path.count("/") if op.method == "delete" else 0,
            op.path,
        ),
    )


# --- fixtures ------------------------------------------------------------------------------------------


async def _post(tenant: Tenant, url: str, key: str | None = None, **kw: Any) -> Any:
    r = await tenant.client.post(url, headers={"Idempotency-Key": key} if key else {}, **kw)
    assert r.status_code in (200, 201), r.text
    return r.json()


async def _owned(tenant: Tenant, sessionmaker: async_sessionmaker[AsyncSession], vault: Vault, label: str) -> Owned:
    # The domain gets its DNS zone, the address its SMTP and Dovecot user, in the mail world.
    domain_name = f"{label}-{secrets.token_hex(4)}.example"
    email = f"owner-{secrets.token_hex(4)}@{domain_name}"
    smtp_password = f"smtp-of-{label}-{secrets.token_hex(6)}"
    keys = {
        op_id: f"idem-{op_id}-{label}-{secrets.token_hex(4)}"
        for op_id in (
            "email_accounts_create",
            "email_accounts_verify",
            "campaigns_create",
            "campaign_accounts_attach",
            "campaigns_start",
            "campaigns_pause",
            "contacts_create",
            "contacts_import",
            "contacts_import_csv",
            "suppressions_create",
            "enrollments_create",
        )
    }
    account = await _post(
        tenant,
        "/v1/email-accounts",
        keys["email_accounts_create"],
        json=account_payload(email=email, label=f"owned by {label}", smtp_password=smtp_password),
    )
    async with sessionmaker() as session, session.begin():
        secret = await vault.reveal_for_account(
            session, uuid.UUID(account["id"]), "smtp_password", actor=Actor.system("support"), purpose="support"
        )
        assert secret is not None
    audit = (await tenant.client.get("/v1/audit-log", params={"account_id": account["id"]})).json()["data"]
    assert len(audit) == 1, audit
    # a verify stored under a key of its own (its stored response is another thing to keep to this workspace)
    verified = await _post(tenant, f"/v1/email-accounts/{account['id']}/verify", keys["email_accounts_verify"])
    assert verified["status"] == "passed", verified
    # an account event: the stage set by hand
    r = await tenant.client.patch(f"/v1/email-accounts/{account['id']}", json={"current_stage": 3})
    assert r.status_code == 200, r.text
    events = (await tenant.client.get(f"/v1/email-accounts/{account['id']}/events")).json()["data"]
    assert len(events) == 1, events

    # a campaign with the account in its pool, started, paused and started again
    campaign_name = f"campaign of {label} {secrets.token_hex(4)}"
    campaign = await _post(tenant, "/v1/campaigns", keys["campaigns_create"], json=_campaign_body(campaign_name))
    url = f"/v1/campaigns/{campaign['id']}"
    await _post(tenant, f"{url}/accounts", keys["campaign_accounts_attach"], json={"account_ids": [account["id"]]})
    assert (await _post(tenant, f"{url}/start", keys["campaigns_start"]))["status"] == "active"
    assert (await _post(tenant, f"{url}/pause", keys["campaigns_pause"]))["status"] == "paused"
    assert (await _post(tenant, f"{url}/start"))["status"] == "active"

    # contacts (one of each way in), a suppression, an enrollment
    contact_email = f"contact-{secrets.token_hex(4)}@{domain_name}"
    suppressed_email = f"suppressed-{secrets.token_hex(4)}@{domain_name}"
    contact = await _post(tenant, "/v1/contacts", keys["contacts_create"], json={"email": contact_email})
    imported = await _post(
        tenant, "/v1/contacts/import", keys["contacts_import"], json={"contacts": [{"email": suppressed_email}]}
    )
    assert imported["created"] == 1, imported
    csv = f"email,first_name\ncsv-{secrets.token_hex(4)}@{domain_name},Csv\n"
    uploaded = await _post(
        tenant, "/v1/contacts/import/csv", keys["contacts_import_csv"], files={"file": ("c.csv", csv, "text/csv")}
    )
    assert uploaded["created"] == 1, uploaded
    suppression = await _post(tenant, "/v1/suppressions", keys["suppressions_create"], json={"email": suppressed_email})
    enrolled = await _post(
        tenant, f"{url}/enrollments", keys["enrollments_create"], json={"contact_ids": [contact["id"]]}
    )
    assert enrolled["enrolled"] == 1, enrolled
    enrollments = (await tenant.client.get(f"{url}/enrollments")).json()["data"]
    hook = await _post(tenant, "/v1/webhook-endpoints", json={"url": WEBHOOK_URL, "description": f"of {label}"})
    started = (await tenant.client.get("/v1/events", params={"type": "campaign.started"})).json()["data"]
    assert started, "the campaign's start is in the outbox"
    async with sessionmaker() as session:
        token = await session.scalar(
            select(Enrollment.unsubscribe_token).where(Enrollment.id == uuid.UUID(enrollments[0]["id"]))
        )
    assert token
    # a reply in the inbox (stored as the sync stores one; the sync itself is tested in tests/sync)
    inbound_id = uuid.uuid4()
    raw = (
        f"From: Prospect <prospect@{domain_name}>\r\nTo: {email}\r\nSubject: Re: hello\r\n"
        f"Message-ID: <reply-{label}@{domain_name}>\r\n\r\nInterested.\r\n"
    ).encode()
    async with sessionmaker() as session, session.begin():
        session.add(
            InboundMessage(
                id=inbound_id,
                workspace_id=tenant.workspace_id,
                account_id=uuid.UUID(account["id"]),
                folder="INBOX",
                uidvalidity=1,
                uid=1,
                dedupe_key=f"reply-{label}@{domain_name}",
                message_id_header=f"reply-{label}@{domain_name}",
                kind="reply",
                reasons=["subject:reply-prefix"],
                classification={"recipients": [], "detected_kind": "reply", "parse_notes": []},
                from_address=f"prospect@{domain_name}",
                subject="Re: hello",
                size=len(raw),
                raw=raw,
                text_body="Interested.",
            )
        )
    # a rule of its own and the alert it raised (the inbox's score 50 is below 99.5)
    rule = await _post(
        tenant, "/v1/alert-rules", json={"kind": "score_below", "threshold": 99.5, "account_id": account["id"]}
    )
    async with sessionmaker() as session, session.begin():
        await evaluate_alerts(session, workspace_id=tenant.workspace_id, kinds=["score_below"])
    [alert] = (await tenant.client.get("/v1/alerts", params={"active": "true"})).json()["data"]
    # an OAuth connect attempt (pending: nobody went to the provider)
    attempt = await _post(tenant, "/v1/oauth/google/authorize", json={"frontend_url": f"{OAUTH_FRONTEND}/x"})
    # an account import (no worker runs here: its row stays pending)
    r = await tenant.client.post(
        "/v1/email-accounts/imports",
        files={"file": ("f.csv", f"email,smtp_host,smtp_port\nimp-{label}@{domain_name},smtp.example.test,587\n")},
    )
    assert r.status_code == 202, r.text
    provider_hook = await _post(tenant, "/v1/provider-hooks", json={"provider": "ses", "description": f"of {label}"})
    return Owned(
        tenant=tenant,
        account_id=account["id"],
        domain_id=account["domain_id"],
        domain_name=domain_name,
        email=email,
        audit_id=audit[0]["id"],
        idempotency_key=keys["email_accounts_create"],
        verify_idempotency_key=keys["email_accounts_verify"],
        smtp_password=smtp_password,
        event_id=events[0]["id"],
        outbox_event_id=started[0]["id"],
        campaign_id=campaign["id"],
        campaign_name=campaign_name,
        contact_id=contact["id"],
        contact_email=contact_email,
        enrollment_id=enrollments[0]["id"],
        unsubscribe_token=token,
        suppression_id=suppression["id"],
        suppressed_email=suppressed_email,
        endpoint_id=hook["id"],
        webhook_secret=hook["secret"],
        inbound_id=str(inbound_id),
        rule_id=rule["id"],
        alert_id=alert["id"],
        oauth_attempt_id=attempt["attempt_id"],
        import_id=r.json()["id"],
        provider_hook_id=provider_hook["id"],
        provider_hook_token=provider_hook["url"].rsplit("/", 1)[1],
        idempotency_keys=keys,
    )


@pytest.fixture
async def world(make_tenant: TenantFactory, sessionmaker: async_sessionmaker[AsyncSession], vault: Vault) -> World:
    a = await _owned(await make_tenant(), sessionmaker, vault, "a")
    b = await _owned(await make_tenant(), sessionmaker, vault, "b")
    async with sessionmaker() as session, session.begin():
        key, revoked_token = await workspaces.create_api_key(session, b.tenant.workspace_id, "revoked")
        await workspaces.revoke_api_key(session, str(key.id))
    return World(a=a, b=b, revoked_token=revoked_token)


async def snapshot(owner: Owned, sessionmaker: async_sessionmaker[AsyncSession]) -> dict[str, Any]:
    """Everything the owner can read about its objects, plus the stored ciphertexts."""
    client = owner.tenant.client
    campaign = f"/v1/campaigns/{owner.campaign_id}"
    reads = {
        "account": f"/v1/email-accounts/{owner.account_id}",
        "account events": f"/v1/email-accounts/{owner.account_id}/events",
        "domain": f"/v1/domains/{owner.domain_id}",
        "accounts": "/v1/email-accounts",
        "domains": "/v1/domains",
        "audit": "/v1/audit-log",
        "workspace": "/v1/workspace",
        "campaign": campaign,
        "campaigns": "/v1/campaigns",
        "pool": f"{campaign}/accounts",
        "enrollments": f"{campaign}/enrollments",
        "stats": f"{campaign}/stats",
        "contact": f"/v1/contacts/{owner.contact_id}",
        "contacts": "/v1/contacts",
        "suppressions": "/v1/suppressions",
        "webhook endpoint": f"/v1/webhook-endpoints/{owner.endpoint_id}",
        "webhook endpoints": "/v1/webhook-endpoints",
        "inbox": "/v1/inbox",
        "inbound message": f"/v1/inbox/{owner.inbound_id}",
        "alert rule": f"/v1/alert-rules/{owner.rule_id}",
        "alert rules": "/v1/alert-rules",
        "alerts": "/v1/alerts",
        "account import": f"/v1/email-accounts/imports/{owner.import_id}",
        "account imports": "/v1/email-accounts/imports",
        "provider hook": f"/v1/provider-hooks/{owner.provider_hook_id}",
        "provider hooks": "/v1/provider-hooks",
    }
    state: dict[str, Any] = {}
    for name, url in reads.items():
        r = await client.get(url)
        assert r.status_code == 200, f"{owner.tenant.name} cannot read its own {name}: {r.text}"
        state[name] = r.json()
    async with sessionmaker() as session:
        rows = await session.execute(
            select(Credential.kind, Credential.data_key_id, Credential.ciphertext)
            .where(Credential.account_id == uuid.UUID(owner.account_id))
            .order_by(Credential.kind)
        )
        state["credentials"] = [tuple(row) for row in rows]
    assert len(state["credentials"]) == 2
    async with sessionmaker() as session:
        state["webhook secrets"] = [
            tuple(row)
            for row in await session.execute(
                select(WebhookSecret.data_key_id, WebhookSecret.ciphertext, WebhookSecret.expires_at)
                .where(WebhookSecret.endpoint_id == uuid.UUID(owner.endpoint_id))
                .order_by(WebhookSecret.id)
            )
        ]
    assert len(state["webhook secrets"]) == 1
    return state


# --- checks --------------------------------------------------------------------------------------------


def assert_hides(response: httpx.Response, owner: Owned, op: Operation, *, allow: tuple[str, ...] = ()) -> None:
    for what, value in owner.secrets_to_hide().items():
        if what not in allow:
            assert value not in response.text, (
                f"{op} shows workspace B's {what} ({value}) to workspace A: {response.text[:500]}"
            )


async def foreign_object(op: Operation, world: World, foreign: str | None = None) -> None:
    """A's key on B's object: 404, a documented not-found code, nothing of B's beyond the URL's id.
    ``foreign``: only this path parameter is B's, the others are A's (A's campaign, B's enrollment)."""
    url = op.url(world.a, foreign=(foreign, world.b)) if foreign else op.url(world.b)
    r = await world.a.tenant.client.request(op.method, url, **op.body(world))
    assert r.status_code == 404, f"{op} with workspace B's ids ({url}) answered {r.status_code}, not 404: {r.text}"
    assert r.headers["content-type"] == PROBLEM, f"{op}: {r.headers['content-type']}"
    problem = r.json()
    assert NOT_FOUND_CODE.match(problem["code"]), f"{op}: code {problem['code']!r} is not a not-found code"
    assert problem["code"] in op.documented_codes(404), (
        f"{op}: 404 code {problem['code']!r} is not among the documented {sorted(op.documented_codes(404))}"
    )
    assert problem["status"] == 404
    assert problem["type"] == f"urn:nimbus:problem:{problem['code']}"
    # The id B's object was asked by appears in ``instance`` (the request path): that's the caller's input.
    assert_hides(r, world.b, op, allow=tuple(w for w, v in world.b.secrets_to_hide().items() if v in url))


async def own_object(op: Operation, world: World) -> None:
    """Control: the same call on A's own object succeeds, so the 404 above is workspace scoping. Known
    headers (an idempotency key) are tried with B's values as well: B's stored response is not replayed."""
    variants: list[dict[str, str]] = [{}] + [
        {p["name"]: probe_value(p["name"], world.b, op, OWN_PROBES)}
        for p in op.params("header")
        if p["name"] in OWN_PROBES
    ]
    for headers in variants:
        r = await world.a.tenant.client.request(op.method, op.url(world.a), headers=headers, **op.body(world))
        assert r.status_code == op.success_status, (
            f"control: {op} with headers {headers} on workspace A's own object answered {r.status_code}: {r.text}"
        )
        assert "idempotent-replayed" not in r.headers, f"{op} with headers {headers} replayed a stored response"
        assert_hides(r, world.b, op)
        if op.id == "email_accounts_verify":
            assert r.json()["status"] == "passed", f"control: verify of A's own account failed: {r.text}"


async def collection(op: Operation, world: World) -> None:
    """A route without path parameters: plain and with B's values in every known filter and header."""
    for params, extra_headers in op.probes(world.b):
        r = await world.a.tenant.client.request(
            op.method, op.url(world.a), params=params, headers=extra_headers, **op.body(world)
        )
        assert r.status_code == op.success_status, (
            f"{op} with params {params} headers {extra_headers} answered {r.status_code}: {r.text}"
        )
        assert_hides(r, world.b, op)


# --- tests ---------------------------------------------------------------------------------------------


async def test_foreign_key_gets_404_on_every_route_and_changes_nothing(
    app: Any, world: World, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    ops = operations(app.openapi())
    before = await snapshot(world.b, sessionmaker)
    assert world.b.account_id in str(before["accounts"])
    assert world.b.audit_id in str(before["audit"])

    exercised: set[str] = set()
    for op in ops:
        if op.path in TOKEN_PATHS.keys() | STATE_PATHS:
            exercised.add(str(op))  # public: see test_an_unsubscribe_token_reaches_only_its_workspace
            continue
        op.check_required_params_known()
        if op.object_params:
            await foreign_object(op, world)
            if len(op.object_params) > 1:
                for name in op.object_params:
                    await foreign_object(op, world, foreign=name)
            await own_object(op, world)
        elif op.method == "get" or op.id in BODIES:
            await collection(op, world)
        else:
            pytest.fail(f"{op}: no isolation rule for a {op.method.upper()} without path parameters or body")
        exercised.add(str(op))

    assert exercised == {str(op) for op in ops}
    assert any(op.path_params for op in ops), "no route with a path parameter was walked"
    assert {"email_accounts_update", "email_accounts_verify"} <= {op.id for op in ops}, "verifying routes walked"
    assert any(len(op.path_params) > 1 for op in ops), "a route with nested path parameters was walked"
    after = await snapshot(world.b, sessionmaker)
    assert after == before, "workspace A's calls changed workspace B's objects"


@pytest.mark.parametrize(
    "credential",
    ["none", "malformed", "unknown", "revoked", "other-scheme"],
)
async def test_every_route_needs_a_live_key(
    app: Any, world: World, sessionmaker: async_sessionmaker[AsyncSession], credential: str
) -> None:
    headers = {
        "none": {},
        "malformed": {"Authorization": "Bearer not-a-key"},
        "unknown": {"Authorization": "Bearer " + world.b.tenant.token[:-6] + "zzzzzz"},
        "revoked": {"Authorization": f"Bearer {world.revoked_token}"},
        "other-scheme": {"Authorization": f"Basic {world.b.tenant.token}"},
    }[credential]
    document = app.openapi()
    ops = operations(document)
    before = await snapshot(world.b, sessionmaker)
    exercised: set[str] = set()
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://nimbus.test", headers=headers
    ) as client:
        for op in ops:
            if op.path in TOKEN_PATHS:
                # no key needed: an unknown token is a 404, not a 401 (a known one is walked elsewhere)
                assert "security" not in op.spec, f"{op} is public but documents a security requirement"
                r = await client.request(op.method, op.path.replace("{token}", "unknown-token"))
                assert r.status_code == 404 and r.json()["code"] == TOKEN_PATHS[op.path], f"{op}: {r.text}"
                exercised.add(str(op))
                continue
            if op.path in STATE_PATHS:
                assert "security" not in op.spec, f"{op} is public but documents a security requirement"
                r = await client.request(op.method, op.url(world.b), params={"state": "unknown", "code": "x"})
                assert r.status_code == 400 and r.json()["code"] == "oauth.state_invalid", f"{op}: {r.text}"
                exercised.add(str(op))
                continue
            r = await client.request(op.method, op.url(world.b), **op.body(world))
            if op.path in PUBLIC_PATHS:
                assert "security" not in op.spec, f"{op} is public but documents a security requirement"
                assert r.status_code == op.success_status, f"{op}: {r.status_code} {r.text}"
            else:
                assert op.spec.get("security") == [{"HTTPBearer": []}], f"{op} does not document its auth"
                assert r.status_code == 401, f"{op} without a live key answered {r.status_code}: {r.text}"
                assert r.headers["content-type"] == PROBLEM
                assert r.headers["www-authenticate"] == "Bearer"
                problem = r.json()
                assert problem["code"] == "auth.invalid_api_key"
                assert problem["code"] in op.documented_codes(401)
                assert problem["type"] == "urn:nimbus:problem:auth.invalid_api_key"
                assert_hides(
                    r, world.b, op, allow=tuple(w for w, v in world.b.secrets_to_hide().items() if v in r.url.path)
                )
            exercised.add(str(op))
    assert exercised == {str(op) for op in ops}
    assert await snapshot(world.b, sessionmaker) == before


async def test_same_address_in_two_workspaces_stays_two_objects(
    world: World, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    """Connecting B's exact address from A is no conflict (no existence oracle) and shares nothing."""
    before = await snapshot(world.b, sessionmaker)
    r = await world.a.tenant.client.post(
        "/v1/email-accounts",
        json=account_payload(email=world.b.email),
        headers={"Idempotency-Key": world.b.idempotency_key},
    )
    assert r.status_code == 201, r.text
    assert "idempotent-replayed" not in r.headers
    mine = r.json()
    assert mine["email"] == world.b.email
    assert mine["id"] != world.b.account_id
    assert mine["domain_id"] != world.b.domain_id
    domain = (await world.a.tenant.client.get(f"/v1/domains/{mine['domain_id']}")).json()
    assert domain["account_count"] == 1
    assert await snapshot(world.b, sessionmaker) == before


async def test_an_unsubscribe_token_reaches_only_its_workspace(
    app: Any, world: World, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    """The public link needs no key, so the token is the only thing scoping it: A's token suppresses A's
    contact in A, even when B has a contact with the same address, enrolled in B's campaign."""
    a, b = world.a, world.b
    (twin,) = [(await b.tenant.client.post("/v1/contacts", json={"email": a.contact_email.upper()})).json()["id"]]
    r = await b.tenant.client.post(f"/v1/campaigns/{b.campaign_id}/enrollments", json={"contact_ids": [twin]})
    assert r.json()["enrolled"] == 1, r.text
    before = await snapshot(b, sessionmaker)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://nimbus.test") as public:
        for method in ("get", "post", "post"):
            r = await public.request(method, f"/u/{a.unsubscribe_token}", data={"List-Unsubscribe": "One-Click"})
            assert r.status_code == 200, r.text
            assert_hides(r, b, Operation(method, "/u/{token}", {}))
            assert_hides(r, a, Operation(method, "/u/{token}", {}), allow=("unsubscribe token",))
    assert await snapshot(b, sessionmaker) == before, "A's unsubscribe link changed workspace B"
    suppressed = (await a.tenant.client.get("/v1/suppressions", params={"reason": "unsubscribed"})).json()["data"]
    assert [s["email"] for s in suppressed] == [a.contact_email]
    enrollments = (await a.tenant.client.get(f"/v1/campaigns/{a.campaign_id}/enrollments")).json()["data"]
    assert [(e["email"], e["status"]) for e in enrollments] == [(a.contact_email, "stopped")]
