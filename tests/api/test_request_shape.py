"""What the edge answers before an operation runs: unparsable bodies (400 ``request.malformed``), the
wrong Content-Type (415), dates in the query (ISO 8601 only), and 405 with every method of the path."""

from __future__ import annotations

import json

import httpx
import pytest
from pydantic import BaseModel, model_validator

from nimbus_api.api.app import create_app
from nimbus_api.api.state import AppState
from nimbus_api.config import Settings
from tests.conftest import Tenant

PROBLEM = "application/problem+json"
JSON = {"content-type": "application/json"}


class Window(BaseModel):
    """A body with a rule over the whole of it."""

    start: int
    end: int

    @model_validator(mode="after")
    def _ordered(self) -> Window:
        if self.start >= self.end:
            raise ValueError("start must come before end")
        return self


def _problem(r: httpx.Response, status: int, code: str) -> dict[str, object]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == PROBLEM
    body: dict[str, object] = r.json()
    assert body["code"] == code and body["status"] == status
    assert body["type"] == f"urn:nimbus:problem:{code}"
    return body


# --- unparsable bodies: 400 request.malformed with a detail ----------------------------------------


@pytest.mark.parametrize(
    ("raw", "says"),
    [
        (b'{"name": ', "not valid JSON"),
        (b"{'name': 'single quotes'}", "not valid JSON"),
        (b'{"name": "\xff\xfe"}', "not valid UTF-8"),
        (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
        (b'{"name": ' + b'{"a": ' * 100_000 + b"1" + b"}" * 100_001, "nested too deeply"),
        (b"null", "must be a JSON object"),
        (b"[]", "must be a JSON object"),
        (b'[{"name": "a list of one"}]', "must be a JSON object"),
        (b'"just a string"', "must be a JSON object"),
        (b"12", "must be a JSON object"),
    ],
)
async def test_unparsable_body_is_400_malformed_with_a_detail(tenant: Tenant, raw: bytes, says: str) -> None:
    before = (await tenant.client.get("/v1/workspace")).json()
    r = await tenant.client.patch("/v1/workspace", content=raw, headers=JSON)
    body = _problem(r, 400, "request.malformed")
    assert says in str(body["detail"])
    assert "single quotes" not in r.text and "a list of one" not in r.text  # the input is never echoed
    assert (await tenant.client.get("/v1/workspace")).json() == before


async def test_empty_body_where_one_is_required_is_400(tenant: Tenant) -> None:
    r = await tenant.client.post("/v1/contacts", headers=JSON)
    body = _problem(r, 400, "request.malformed")
    assert "none (or `null`) was sent" in str(body["detail"])


async def test_a_field_error_is_still_422_with_the_field(tenant: Tenant) -> None:
    r = await tenant.client.post("/v1/contacts", json={"email": "not-an-address"})
    body = _problem(r, 422, "validation_error")
    assert body["errors"][0]["field"] == "email"  # type: ignore[index]


async def test_a_rule_of_the_whole_body_is_still_422(settings: Settings, app_state: AppState) -> None:
    """A model validator's error has the location of the whole body, as "not an object" has: it stays
    a 422 naming `body`."""

    async def take(window: Window) -> dict[str, int]:
        return {"start": window.start}

    app = create_app(settings, state=app_state)
    app.add_api_route("/test/window", take, methods=["POST"])
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://nimbus.test") as client:
        r = await client.post("/test/window", json={"start": 2, "end": 1})
        ok = await client.post("/test/window", json={"start": 1, "end": 2})
    body = _problem(r, 422, "validation_error")
    assert body["errors"] == [{"field": "body", "message": "start must come before end", "type": "value_error"}]
    assert ok.status_code == 200


# --- Content-Type ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        {},  # none at all
        {"content-type": "text/plain"},
        {"content-type": "application/x-www-form-urlencoded"},
        {"content-type": "multipart/form-data; boundary=x"},
        {"content-type": "application/xml"},
        {"content-type": "garbage\x01"},
    ],
)
async def test_json_operation_refuses_another_content_type_with_415(tenant: Tenant, headers: dict[str, str]) -> None:
    r = await tenant.client.post("/v1/contacts", content=b'{"email": "ct@example.org"}', headers=headers)
    body = _problem(r, 415, "request.unsupported_media_type")
    assert "application/json" in str(body["detail"])
    assert (await tenant.client.get("/v1/contacts")).json()["data"] == []


@pytest.mark.parametrize("content_type", ["application/json; charset=utf-8", "application/merge-patch+json"])
async def test_json_and_json_suffixed_types_are_accepted(tenant: Tenant, content_type: str) -> None:
    r = await tenant.client.patch(
        "/v1/workspace",
        content=json.dumps({"monthly_send_quota": 1000}).encode(),
        headers={"content-type": content_type},
    )
    assert r.status_code == 200, r.text


async def test_csv_import_refuses_a_json_body_with_415(tenant: Tenant) -> None:
    r = await tenant.client.post("/v1/contacts/import/csv", json={"file": "email\na@example.org\n"})
    body = _problem(r, 415, "request.unsupported_media_type")
    assert "multipart/form-data" in str(body["detail"])


async def test_415_comes_before_the_body_is_read_and_before_auth(http: httpx.AsyncClient) -> None:
    """The media type is checked on the headers: an unauthenticated request with the wrong type is a
    415 too (nothing about the workspace is revealed either way)."""
    r = await http.post("/v1/contacts", content=b"<contact/>", headers={"content-type": "application/xml"})
    _problem(r, 415, "request.unsupported_media_type")


# --- dates in the query are ISO 8601 ---------------------------------------------------------------


@pytest.mark.parametrize("name", ["since", "until"])
@pytest.mark.parametrize("value", ["0.5", "1700000000", "-1", "1e10", "now", "2026-13-01T00:00:00Z", ""])
async def test_audit_log_dates_are_iso_8601_only(tenant: Tenant, name: str, value: str) -> None:
    r = await tenant.client.get("/v1/audit-log", params={name: value})
    body = _problem(r, 422, "validation_error")
    assert [e["field"] for e in body["errors"]] == [name]  # type: ignore[attr-defined]


@pytest.mark.parametrize("value", ["2026-01-31T12:00:00Z", "2026-01-31T12:00:00+02:00", "2026-01-31"])
async def test_audit_log_takes_iso_dates(tenant: Tenant, value: str) -> None:
    r = await tenant.client.get("/v1/audit-log", params={"since": value, "until": "2099-01-01T00:00:00Z"})
    assert r.status_code == 200, r.text


# --- 405 lists every method of the path ------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("PUT", "/v1/workspace", "GET, PATCH"),
        ("DELETE", "/v1/workspace", "GET, PATCH"),
        ("PUT", "/v1/contacts", "GET, POST"),
        ("PUT", "/v1/contacts/0190a6e2-0000-7000-8000-000000000000", "GET, PATCH, DELETE"),
        ("GET", "/v1/contacts/import", "POST"),
        ("PATCH", "/v1/contacts/import", "POST"),
        ("DELETE", "/v1/contacts/import", "POST"),
        ("GET", "/v1/contacts/import/csv", "POST"),
        ("PATCH", "/v1/contacts/import/csv", "POST"),
        ("DELETE", "/v1/contacts/import/csv", "POST"),
        ("POST", "/v1/providers", "GET"),
        ("PUT", "/u/sometoken", "GET, POST"),
    ],
)
async def test_405_lists_every_method_of_the_path(tenant: Tenant, method: str, path: str, allow: str) -> None:
    r = await tenant.client.request(method, path)
    body = _problem(r, 405, "method_not_allowed")
    assert r.headers["allow"] == allow
    assert allow in str(body["detail"])


async def test_the_literal_path_still_serves_its_own_method_and_ids_their_routes(tenant: Tenant) -> None:
    imported = await tenant.client.post("/v1/contacts/import", json={"contacts": [{"email": "lit@example.org"}]})
    assert imported.status_code == 200, imported.text
    contact = (await tenant.client.get("/v1/contacts")).json()["data"][0]
    assert (await tenant.client.get(f"/v1/contacts/{contact['id']}")).status_code == 200
    # A path that is no id and no literal path is still a 422 naming the id.
    r = await tenant.client.get("/v1/contacts/not-an-id")
    body = _problem(r, 422, "validation_error")
    assert body["errors"][0]["field"] == "contact_id"  # type: ignore[index]
