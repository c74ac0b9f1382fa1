"""schemathesis hooks of `make contract` (loaded through SCHEMATHESIS_HOOKS by scripts/contract.py).

They touch only requests generated as *valid* (positive mode), and only to honour rules that the document
states in words because JSON Schema cannot say them; every check stays on for everything else, and
invalid (negative) requests go out as generated:

- ``Idempotency-Key``: a client sends a new key with each new request. The same key with another body is
  a 422 ``idempotency_key.mismatch`` by design (the header's description says so), and schemathesis
  would otherwise reuse one generated key across different requests.
- ``randomize_delay_seconds``: ``max`` is at least ``min`` (cross-field; the field's description).
- ``steps``: a step after the first has ``delay_seconds`` of at least 1 (cross-field; the description).
- ``schedule.timezone``: a name from the time zone database (a list that changes with the database).
- step templates: they must compile and render (the template language's grammar; the field's description).
- webhook endpoint ``url``: its host must resolve to addresses the egress policy allows (the field's
  description). A generated host resolves nowhere, so a valid request's URL is replaced by the contract's
  own receiver on loopback, which the contract server allowlists (``POST .../test`` delivers to it: the
  run reaches nothing outside this machine).
- ``contacts_import_csv``: the file is a UTF-8 CSV with an ``email`` column (file content; the field's
  description). Generated files are random bytes, so here the one failure dropped is a valid request
  refused with a 422 whose every error names ``file``; anything else about the operation is checked.
- provider hooks: the fields must fit the ``provider`` (``signing_key`` Mailgun's and required there,
  ``public_key`` SendGrid's and a P-256 key, ``basic_auth`` Postmark's and SMTP2GO's, ``topic_arn`` SES's;
  the fields' descriptions): a valid request keeps only its provider's fields, with a real key.
- OAuth ``frontend_url``: its origin must be one of ``NIMBUS_OAUTH_FRONTEND_ORIGINS`` (the field's
  description): a valid request's URL is replaced by one on the origin the contract server allows.
- the OAuth callback: ``state`` must be one this API issued for a consent screen (the operation's
  description); none exists in the run, so the one failure dropped is a valid request refused with a 400
  ``oauth.state_invalid``.
- ``email_account_imports_create``: the file is CSV text with an ``email`` column (the field's description),
  like ``contacts_import_csv``: the one failure dropped is a 422 whose every error names ``file``.
- alert rules: a ``threshold`` must fit the rule's kind (bounds per kind, none for ``listed`` and
  ``domain_unhealthy``; the field's description), and a PATCH's kind is the stored rule's. The one failure
  dropped is a valid request refused with a 422 naming only ``threshold``.

One thing here is about the tester, not the API: CPython 3.11 can raise ``SystemError: AST constructor
recursion depth mismatch`` when two threads run ``ast.parse`` at once (gh-106905), and hypothesis parses
source files to describe the filters schemathesis builds, from each of the ``--workers`` threads. The run
then reports a tool error on some operation at random. ``ast.parse`` is serialized below for this process.
"""

from __future__ import annotations

import ast
import contextlib
import copy
import os
import threading
import uuid
from typing import Any
from zoneinfo import ZoneInfo

import schemathesis
from schemathesis import GenerationMode
from schemathesis.core.failures import AcceptedNegativeData
from schemathesis.openapi.checks import RejectedPositiveData

from nimbus_api.campaigns.templates import TemplateProblem, check_template

_PARSE_LOCK = threading.Lock()
_parse = ast.parse


def _serialized_parse(*args: Any, **kwargs: Any) -> Any:
    with _PARSE_LOCK:
        return _parse(*args, **kwargs)


ast.parse = _serialized_parse  # type: ignore[assignment]

_CAMPAIGN_OPERATIONS = {"campaigns_create", "campaigns_update"}
_WEBHOOK_OPERATIONS = {"webhook_endpoints_create", "webhook_endpoints_update"}
# the receiver scripts/contract.py runs on loopback, which the contract server's egress policy allowlists
PUBLIC_WEBHOOK_URL = os.environ.get("CONTRACT_WEBHOOK_URL", "https://93.184.216.34/hooks/contract")
_OAUTH_OPERATIONS = {"oauth_authorize", "email_accounts_reauthorize"}
FRONTEND_URL = "https://app.contract.test/settings/inboxes"  # on scripts/contract.py's allowed origin
_TEMPLATE_PARTS = ("subject", "text", "html")
# What each provider hook takes (cross-field; the fields' descriptions), and a real SendGrid key (P-256).
_PROVIDER_FIELDS = {
    "ses": {"topic_arn"},
    "postmark": {"basic_auth"},
    "sendgrid": {"public_key"},
    "mailgun": {"signing_key"},
    "smtp2go": {"basic_auth"},
}
_SENDGRID_KEY = (
    "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEaUswv3cBUOyegP4oqLKpXQDc4ZdY91YXMOF4SuDF"
    "QNJ2/txUQpOl7pIGZM3HHkHK72bsoQtwoTbjpsJCT30rvg=="
)


def _fit_provider_hook(body: dict[str, Any]) -> dict[str, Any]:
    fields = _PROVIDER_FIELDS.get(str(body.get("provider")))
    if fields is None:
        return body
    fitted = {k: v for k, v in body.items() if k not in {"signing_key", "public_key", "basic_auth", "topic_arn"}}
    fitted.update({k: v for k, v in body.items() if k in fields})
    if "public_key" in fitted and fitted["public_key"] is not None:
        fitted["public_key"] = _SENDGRID_KEY
    if body.get("provider") == "mailgun" and not isinstance(fitted.get("signing_key"), str):
        fitted["signing_key"] = "key-contract-signing-key"
    return fitted


def _valid_zone(name: Any) -> bool:
    if not isinstance(name, str):
        return True  # a type the schema allows would have been generated as a string
    try:
        ZoneInfo(name)
    except Exception:
        return False
    return True


def _is_number(value: Any) -> bool:
    """A JSON number (an integer field also takes ``3105.0``), not a boolean."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _fix_campaign(body: dict[str, Any]) -> None:
    delay = body.get("randomize_delay_seconds")
    ordered = isinstance(delay, dict) and all(_is_number(delay.get(k)) for k in ("min", "max"))
    if ordered and delay["min"] > delay["max"]:
        delay["min"], delay["max"] = delay["max"], delay["min"]
    schedule = body.get("schedule")
    if isinstance(schedule, dict) and "timezone" in schedule and not _valid_zone(schedule["timezone"]):
        schedule["timezone"] = "UTC"
    for index, step in enumerate(body.get("steps") or []):
        if not isinstance(step, dict):
            continue
        # Cross-field (the field's description): a step after the first waits at least 1 s.
        if index > 0 and _is_number(step.get("delay_seconds")) and step["delay_seconds"] < 1:
            step["delay_seconds"] = 1
        for part in _TEMPLATE_PARTS:
            source = step.get(part)
            if not isinstance(source, str):
                continue
            try:
                check_template(part, source.strip() if part == "subject" else source)  # type: ignore[arg-type]
            except (TemplateProblem, ValueError):
                step[part] = "Hello {{ contact.first_name }}"


@schemathesis.hook
def before_call(ctx: Any, case: Any, kwargs: dict[str, Any]) -> None:
    meta = case.meta
    if meta is not None and meta.generation.mode != GenerationMode.POSITIVE:
        return
    headers = case.headers
    if headers is not None and any(name.lower() == "idempotency-key" for name in headers):
        fresh = type(headers)({k: v for k, v in headers.items() if k.lower() != "idempotency-key"})
        fresh["Idempotency-Key"] = f"contract-{uuid.uuid4().hex}"
        case.headers = fresh
    operation_id = case.operation.definition.raw.get("operationId")
    if operation_id in _CAMPAIGN_OPERATIONS and isinstance(case.body, dict):
        # Generated values may be shared between cases: change a copy.
        body = copy.deepcopy(case.body)
        with contextlib.suppress(Exception):
            _fix_campaign(body)
        case.body = body
    if operation_id == "provider_hooks_create" and isinstance(case.body, dict):
        case.body = _fit_provider_hook(case.body)
    if operation_id in _OAUTH_OPERATIONS and isinstance(case.body, dict) and "frontend_url" in case.body:
        case.body = {**case.body, "frontend_url": FRONTEND_URL}
    if operation_id in _WEBHOOK_OPERATIONS and isinstance(case.body, dict) and isinstance(case.body.get("url"), str):
        case.body = {**case.body, "url": PUBLIC_WEBHOOK_URL}


# Operations whose request content has a rule only their description can state, by the fields a 422 names.
# An alert rule's threshold has bounds per kind (and none for the yes/no kinds); on a PATCH the kind is the
# stored rule's, which no schema of the request can see.
_CONTENT_RULES = {
    "contacts_import_csv": {"file"},
    "email_account_imports_create": {"file"},
    "alert_rules_create": {"threshold"},
    "alert_rules_update": {"threshold"},
}


@schemathesis.hook
def filter_failure(ctx: Any, failure: Any, case: Any, response: Any) -> bool:
    if isinstance(failure, AcceptedNegativeData) and response.status_code == 413:
        # Not accepted: refused before it was read, for its size (a generated negative body of several MB:
        # an HTML field of 500,000 characters, escaped). 413 is documented on every operation with a body.
        return False
    operation_id = case.operation.definition.raw.get("operationId")
    if operation_id == "oauth_callback" and isinstance(failure, RejectedPositiveData) and response.status_code == 400:
        with contextlib.suppress(ValueError):
            if response.json().get("code") == "oauth.state_invalid":
                return False
    fields = _CONTENT_RULES.get(operation_id)
    if not fields or not isinstance(failure, RejectedPositiveData) or response.status_code != 422:
        return True
    try:
        body = response.json()
    except ValueError:
        return True
    errors = body.get("errors") or ([{"field": body["field"]}] if body.get("field") else [])
    return not (errors and all(e.get("field") in fields for e in errors))
