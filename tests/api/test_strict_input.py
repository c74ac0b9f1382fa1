"""Request bodies are strict JSON, and the document declares exactly what the server checks.

A boolean is not a number, a numeric string is not an integer, a number is not a string; a number with no
fraction (``12.0``, ``1e3``) is an integer, as JSON Schema counts it; what JSON can only carry as a string
(UUIDs, enum values) is accepted as one. Query parameters are strings by nature and keep their conversion
(`limit=2`), still validated. Every refusal is a 422 naming the field, and changes nothing.
"""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

import email_validator
import pytest
from pydantic import BaseModel, ValidationError

from nimbus_api.api.idempotency import KEY_PATTERN
from nimbus_api.api.openapi_export import export_openapi
from nimbus_api.kit.ids import new_id
from nimbus_api.kit.pagination import CURSOR_PATTERN, encode_cursor
from nimbus_api.kit.schemas import ANY_LINE_PATTERN, SINGLE_LINE_PATTERN, StrictModel
from nimbus_api.kit.validators import DNS_LABEL_PATTERN, SPECIAL_USE_DOMAINS, SPECIAL_USE_PATTERN, DnsLabel, HeaderText
from tests.conftest import Tenant

PROBLEM = "application/problem+json"


def _fields(r: Any) -> list[str]:
    assert r.status_code == 422, r.text
    assert r.headers["content-type"] == PROBLEM
    body = r.json()
    assert body["code"] == "validation_error", body
    return [e["field"] for e in body["errors"]]


async def _campaign(tenant: Tenant, **overrides: Any) -> dict[str, Any]:
    body = {"name": f"c-{uuid.uuid4().hex[:6]}", "type": "cold", **overrides}
    r = await tenant.client.post("/v1/campaigns", json=body)
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


# --- JSON types -------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [False, True, "12", 12.5, 1e-9, [12], {"n": 12}])
async def test_an_integer_is_only_a_json_integer(tenant: Tenant, value: Any) -> None:
    before = (await tenant.client.get("/v1/workspace")).json()
    r = await tenant.client.patch("/v1/workspace", json={"monthly_send_quota": value})
    assert _fields(r) == ["monthly_send_quota"]
    assert (await tenant.client.get("/v1/workspace")).json() == before


@pytest.mark.parametrize(("sent", "stored"), [("12.0", 12), ("1e3", 1000), ("-0.0", 0), ("12", 12)])
async def test_a_number_with_no_fraction_is_an_integer(tenant: Tenant, sent: str, stored: int) -> None:
    r = await tenant.client.patch(
        "/v1/workspace", content=f'{{"monthly_send_quota": {sent}}}', headers={"content-type": "application/json"}
    )
    assert r.status_code == 200, r.text
    assert r.json()["monthly_send_quota"] == stored
    assert type(r.json()["monthly_send_quota"]) is int


async def test_integral_numbers_in_lists_and_nested_objects_are_integers(tenant: Tenant) -> None:
    body = {
        "name": "floats",
        "type": "cold",
        "schedule": {"days": [0.0, 2.0, 4.0]},
        "randomize_delay_seconds": {"min": 5.0, "max": 10.0},
        "steps": [{"subject": "Hi", "text": "Hello", "delay_seconds": 0.0}],
    }
    r = await tenant.client.post("/v1/campaigns", json=body)
    assert r.status_code == 201, r.text
    created = r.json()
    assert created["schedule"]["days"] == [0, 2, 4]
    assert created["randomize_delay_seconds"] == {"min": 5, "max": 10}
    assert created["steps"][0]["delay_seconds"] == 0
    # A fraction is still refused, in a list item as anywhere.
    r = await tenant.client.post("/v1/campaigns", json={"name": "f", "type": "cold", "schedule": {"days": [0.5]}})
    assert _fields(r) == ["schedule.days.0"]


async def test_an_integer_and_null_are_accepted(tenant: Tenant) -> None:
    r = await tenant.client.patch("/v1/workspace", json={"monthly_send_quota": 12})
    assert r.status_code == 200, r.text
    assert r.json()["monthly_send_quota"] == 12
    r = await tenant.client.patch("/v1/workspace", json={"monthly_send_quota": None})
    assert r.status_code == 200, r.text
    assert r.json()["monthly_send_quota"] is None


@pytest.mark.parametrize("value", [1, 0, "true", "false", None])
async def test_a_boolean_is_only_a_json_boolean(tenant: Tenant, value: Any) -> None:
    r = await tenant.client.post("/v1/campaigns", json={"name": "b", "type": "cold", "verify_email_mx": value})
    assert _fields(r) == ["verify_email_mx"]


@pytest.mark.parametrize("value", [5, 5.5, True, ["Ada"], {"x": "Ada"}])
async def test_a_string_is_only_a_json_string(tenant: Tenant, value: Any) -> None:
    r = await tenant.client.post(
        "/v1/contacts", json={"email": f"s-{uuid.uuid4().hex[:6]}@example.com", "company": value}
    )
    assert _fields(r) == ["company"]
    r = await tenant.client.post("/v1/contacts", json={"email": 5})
    assert _fields(r) == ["email"]


async def test_a_number_field_takes_integers_and_floats_but_not_booleans_or_strings(tenant: Tenant) -> None:
    assert (await _campaign(tenant, min_health_score=70))["min_health_score"] == 70.0
    assert (await _campaign(tenant, min_health_score=70.5))["min_health_score"] == 70.5
    for value in (True, "70"):
        r = await tenant.client.post("/v1/campaigns", json={"name": "n", "type": "cold", "min_health_score": value})
        assert _fields(r) == ["min_health_score"]


async def test_enum_values_are_strings_of_the_set(tenant: Tenant) -> None:
    assert (await _campaign(tenant, type="nurture"))["type"] == "nurture"
    for value in ("COLD", "cold ", 1, None):
        r = await tenant.client.post("/v1/campaigns", json={"name": "e", "type": value})
        assert _fields(r) == ["type"]


async def test_uuids_are_accepted_as_json_strings_only(tenant: Tenant) -> None:
    campaign = await _campaign(tenant)
    contact = await tenant.client.post("/v1/contacts", json={"email": f"u-{uuid.uuid4().hex[:6]}@example.com"})
    assert contact.status_code == 201, contact.text
    url = f"/v1/campaigns/{campaign['id']}/enrollments"
    r = await tenant.client.post(url, json={"contact_ids": [contact.json()["id"]]})
    assert r.status_code == 200, r.text
    assert r.json()["already_enrolled"] == 0
    for value in (5, uuid.UUID(contact.json()["id"]).int, "not-a-uuid", True):
        r = await tenant.client.post(url, json={"contact_ids": [value]})
        assert _fields(r) == ["contact_ids.0"]


async def test_unknown_fields_are_refused(tenant: Tenant) -> None:
    r = await tenant.client.patch("/v1/workspace", json={"monthly_send_quota": 1, "name": "x"})
    assert _fields(r) == ["name"]


async def test_query_parameters_keep_their_conversion_and_are_validated(tenant: Tenant) -> None:
    assert (await tenant.client.get("/v1/contacts", params={"limit": "2"})).status_code == 200
    assert (await tenant.client.get("/v1/email-accounts", params={"is_active": "true"})).status_code == 200
    ok = await tenant.client.get("/v1/audit-log", params={"since": "2026-01-01T00:00:00Z"})
    assert ok.status_code == 200, ok.text
    assert _fields(await tenant.client.get("/v1/contacts", params={"limit": "two"})) == ["limit"]
    assert _fields(await tenant.client.get("/v1/contacts", params={"limit": "0"})) == ["limit"]
    assert _fields(await tenant.client.get("/v1/email-accounts", params={"is_active": "maybe"})) == ["is_active"]
    assert _fields(await tenant.client.get("/v1/campaigns", params={"type": "COLD"})) == ["type"]


# --- nulls, cursors, keys ---------------------------------------------------------------------------


async def test_a_field_that_refuses_null_refuses_it_before_the_lookup(tenant: Tenant) -> None:
    # The document declares these optional, not nullable: null is a 422 naming the field, not a 404.
    r = await tenant.client.patch(f"/v1/contacts/{uuid.uuid4()}", json={"email": None})
    assert _fields(r) == ["email"]
    campaign = await _campaign(tenant)
    r = await tenant.client.patch(f"/v1/campaigns/{campaign['id']}", json={"name": None, "steps": None})
    assert sorted(_fields(r)) == ["name", "steps"]
    after = (await tenant.client.get(f"/v1/campaigns/{campaign['id']}")).json()
    assert after["name"] == campaign["name"]
    # A nullable field still takes null.
    r = await tenant.client.patch(f"/v1/campaigns/{campaign['id']}", json={"randomize_delay_seconds": None})
    assert r.status_code == 200, r.text


async def test_cursors_are_22_url_safe_characters(tenant: Tenant) -> None:
    ok = await tenant.client.get("/v1/contacts", params={"cursor": encode_cursor(new_id())})
    assert ok.status_code == 200, ok.text
    for cursor in ("%%%", "", "A" * 21, "A" * 23, "A" * 21 + "="):
        assert _fields(await tenant.client.get("/v1/contacts", params={"cursor": cursor})) == ["cursor"]


@pytest.mark.parametrize(
    ("key", "valid"),
    [("k", True), ("a b", True), ("~!" * 127 + "x", True), ("x" * 256, False), ("a\x7f", False)],
)
async def test_idempotency_keys_follow_the_declared_pattern(tenant: Tenant, key: str, valid: bool) -> None:
    assert bool(re.fullmatch(KEY_PATTERN, key)) is valid
    body = {"email": f"k-{uuid.uuid4().hex[:6]}@example.com"}
    r = await tenant.client.post("/v1/contacts", json=body, headers={"Idempotency-Key": key})
    if valid:
        assert r.status_code == 201, r.text
    else:
        assert r.status_code == 422, r.text
        assert r.json()["code"] == "idempotency_key.invalid"
        assert (await tenant.client.get("/v1/contacts", params={"email": body["email"]})).json()["data"] == []


async def test_duplicate_weekdays_and_campaign_types_are_refused(tenant: Tenant) -> None:
    r = await tenant.client.post("/v1/campaigns", json={"name": "d", "type": "cold", "schedule": {"days": [1, 1]}})
    assert _fields(r) == ["schedule.days"]


async def test_the_one_click_form_field_is_never_null(tenant: Tenant) -> None:
    r = await tenant.client.post(f"/u/{uuid.uuid4().hex}", data={"List-Unsubscribe": "null"})
    assert _fields(r) == ["List-Unsubscribe"]


# --- the document says what the validators check ----------------------------------------------------

SAMPLES = [
    "Ada",
    " Ada ",
    "",
    " ",
    "\t",
    "a\nb",
    "a\r",
    "\x00",
    "\x85",
    "\u3000x",
    "\x1c",
    "\ufeff",
    "\u200b",
    "x\u2028",
    "Zoë",
]


class _Line(StrictModel):
    value: HeaderText


class _Label(StrictModel):
    value: DnsLabel


def _accepts(model: type[BaseModel], value: str) -> bool:
    try:
        model.model_validate({"value": value})
    except ValidationError:
        return False
    return True


@pytest.mark.parametrize("value", SAMPLES)
def test_single_line_pattern_is_what_the_model_accepts(value: str) -> None:
    assert bool(re.search(SINGLE_LINE_PATTERN, value)) is _accepts(_Line, value), repr(value)
    assert bool(re.search(ANY_LINE_PATTERN, value)) is not any(ch in value for ch in "\r\n\x00"), repr(value)


@pytest.mark.parametrize("value", ["s1", "S_1", "-s", "s-", "a-b", " s1", "s1 ", "s.1", "x" * 63, "x" * 64, ""])
def test_dns_label_pattern_is_what_the_model_accepts(value: str) -> None:
    assert bool(re.search(DNS_LABEL_PATTERN, value)) is _accepts(_Label, value), repr(value)


def test_special_use_domains_are_the_validators() -> None:
    assert set(SPECIAL_USE_DOMAINS) == set(email_validator.SPECIAL_USE_DOMAIN_NAMES)
    for address in ("a@b.test", "a@B.TEST", "a@x.onion.", "a@localhost", "a@x.local"):
        assert re.search(SPECIAL_USE_PATTERN, address), address
    for address in ("a@test.example.com", "a@tester.com", "a@bücher.example"):
        assert not re.search(SPECIAL_USE_PATTERN, address), address


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    return json.loads(export_openapi())  # type: ignore[no-any-return]


def _walk(node: Any, path: str = "") -> Any:
    if isinstance(node, dict):
        yield path, node
        for key, value in node.items():
            yield from _walk(value, f"{path}/{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _walk(value, f"{path}/{i}")


NAMED_SETS = {
    "CampaignType": ["cold", "nurture"],
    "CampaignStatus": ["draft", "active", "paused", "completed"],
    "TlsMode": ["ssl", "starttls", "none"],
    "EnrollmentStatus": ["active", "completed", "replied", "stopped", "bounced", "failed"],
    "InboundKind": ["reply", "auto_reply", "bounce", "delivery_report", "complaint", "other"],
    "SyncState": ["pending", "ok", "failing"],
    "SuppressionReason": ["unsubscribed", "hard_bounce", "complaint", "manual"],
    "CheckStatus": ["passed", "failed", "skipped"],
    "CheckName": ["dns", "smtp", "imap", "roundtrip"],
    "VerificationStatus": ["passed", "failed"],
    "ProviderId": None,
    "IneligibleReason": None,
    "DecryptPurpose": None,
    "CredentialKind": None,
    "DependencyStatus": ["ok", "unavailable"],
}


def test_every_value_set_is_one_named_schema(document: dict[str, Any]) -> None:
    schemas = document["components"]["schemas"]
    inline = [path for path, node in _walk(document) if "enum" in node and path.count("/") != 3]
    assert inline == [], f"enums declared inline instead of as a named schema: {inline}"
    for name, values in NAMED_SETS.items():
        assert name in schemas, name
        assert schemas[name]["type"] == "string"
        if values is not None:
            assert schemas[name]["enum"] == values
    refs = {node["$ref"] for _, node in _walk(document) if "$ref" in node}
    assert {f"#/components/schemas/{name}" for name in NAMED_SETS} <= refs


def test_declared_formats_patterns_and_limits(document: dict[str, Any]) -> None:
    schemas = document["components"]["schemas"]
    for model in ("ContactCreate", "SuppressionCreate"):
        email = schemas[model]["properties"]["email"]
        assert (email["format"], email["maxLength"]) == ("email", 254), model
        assert email["not"] == {"pattern": SPECIAL_USE_PATTERN}
    assert schemas["ContactUpdate"]["properties"]["email"]["format"] == "email"
    assert "anyOf" not in schemas["ContactUpdate"]["properties"]["email"], "refuses null: not nullable"
    assert schemas["Schedule"]["properties"]["days"]["uniqueItems"] is True
    assert schemas["EmailAccountCreate"]["properties"]["campaign_types"]["uniqueItems"] is True
    assert schemas["EmailAccountCreate"]["properties"]["dkim_selector"]["anyOf"][0]["pattern"] == DNS_LABEL_PATTERN
    fields = schemas["ContactCreate"]["properties"]["fields"]
    assert fields["propertyNames"] == {"pattern": "^[a-z][a-z0-9_]{0,63}$"}
    assert fields["additionalProperties"]["maxLength"] == 1000
    for path, item in document["paths"].items():
        for method, op in item.items():
            for param in op.get("parameters", []):
                where = f"{method.upper()} {path} {param['name']}"
                if param["name"] == "cursor":
                    assert param["schema"]["anyOf"][0] == {
                        "type": "string",
                        "minLength": 22,
                        "maxLength": 22,
                        "pattern": CURSOR_PATTERN,
                    }, where
                if param["name"] == "idempotency-key":
                    schema = param["schema"]
                    assert (schema["type"], schema["minLength"], schema["maxLength"]) == ("string", 1, 255), where
                    assert schema["pattern"] == KEY_PATTERN, where
    form = schemas["Body_unsubscribe_one_click"]["properties"]["List-Unsubscribe"]
    assert form.get("const") == "One-Click" and "anyOf" not in form, form


@pytest.mark.parametrize(
    ("url", "param"),
    [
        ("/v1/contacts", "email"),
        ("/v1/suppressions", "email"),
        ("/v1/domains", "name"),
        ("/v1/email-accounts", "domain"),
        ("/v1/email-accounts", "q"),
    ],
)
async def test_search_text_in_the_query_is_one_line(tenant: Tenant, url: str, param: str) -> None:
    # A NUL reached PostgreSQL and answered 500; the document says one line, and so does the server.
    nul = await tenant.client.get(url, params={param: "a\x00b"})  # refused at the edge, before validation
    assert (nul.status_code, nul.json()["code"]) == (400, "request.malformed")
    assert _fields(await tenant.client.get(url, params={param: "a\nb"})) == [param]
    assert (await tenant.client.get(url, params={param: "zoë"})).status_code == 200


async def test_an_unsubscribe_token_is_url_safe_base64(http: Any) -> None:
    assert (await http.get("/u/abc_-1")).status_code == 404
    nul = await http.get("/u/a%00b")  # refused at the edge, before validation
    assert (nul.status_code, nul.json()["code"]) == (400, "request.malformed")
    for token in ("a.b", "x" * 129):
        r = await http.get(f"/u/{token}")
        assert _fields(r) == ["token"], token


# --- NUL ------------------------------------------------------------------------------------------


def _request_body_strings(doc: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """Every string of every request body schema (following ``$ref``), with where it is."""
    schemas = doc["components"]["schemas"]
    found: list[tuple[str, dict[str, Any]]] = []
    seen: set[str] = set()

    def walk(schema: dict[str, Any], where: str) -> None:
        ref = schema.get("$ref")
        if ref is not None:
            name = ref.rsplit("/", 1)[1]
            if name not in seen:
                seen.add(name)
                walk(schemas[name], name)
            return
        if schema.get("type") == "string":
            found.append((where, schema))
        for key, sub in schema.get("properties", {}).items():
            walk(sub, f"{where}.{key}")
        for key in ("items", "additionalProperties"):
            if isinstance(schema.get(key), dict):
                walk(schema[key], f"{where}.{key}")
        for key in ("anyOf", "oneOf", "allOf"):
            for sub in schema.get(key, []):
                walk(sub, where)

    for path, item in doc["paths"].items():
        for method, operation in item.items():
            for content in operation.get("requestBody", {}).get("content", {}).values():
                walk(content["schema"], f"{method} {path}")
    return found


# Strings whose value is checked against a set the description names (a host name or IP address, an
# IANA time zone) rather than a pattern, and the uploaded CSV file (bytes).
_CHECKED_OTHERWISE = {".host", ".timezone", ".file"}


def test_every_free_text_field_of_a_request_declares_what_it_refuses() -> None:
    """PostgreSQL cannot store NUL in text or jsonb: a body string that the document does not restrict
    (pattern, format or value set) would be a schema-valid request the server cannot keep."""
    strings = _request_body_strings(json.loads(export_openapi()))
    assert len(strings) > 40  # the walk reaches the nested schemas
    unrestricted = [
        where
        for where, schema in strings
        if not {"pattern", "format", "enum", "const"} & set(schema)
        and not any(where.endswith(name) for name in _CHECKED_OTHERWISE)
    ]
    assert unrestricted == []


async def test_nul_in_a_template_is_a_422_naming_it_and_nothing_is_saved(tenant: Tenant) -> None:
    before = (await tenant.client.get("/v1/campaigns")).json()["data"]
    for field in ("text", "html"):
        step = {"subject": "Hi", "text": "Hello", "delay_seconds": 0, field: "a\u0000b"}
        r = await tenant.client.post("/v1/campaigns", json={"name": "nul", "type": "cold", "steps": [step]})
        assert _fields(r) == [f"steps.0.{field}"]
    assert (await tenant.client.get("/v1/campaigns")).json()["data"] == before
