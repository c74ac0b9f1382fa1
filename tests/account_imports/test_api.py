"""The import endpoints: 202 at once with per-row states, progress while the runner works, and the uploads
that are refused as a whole (which change nothing)."""

from __future__ import annotations

import uuid
from typing import Any

from redis.asyncio import Redis
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nimbus_api.api.state import AppState
from nimbus_api.config import Settings
from nimbus_api.credentials.vault import Vault
from nimbus_api.models import AccountImportRow, CredentialAccess, EmailAccount
from tests.account_imports.conftest import run_import
from tests.account_imports.fleet import Fleet, to_csv
from tests.conftest import Tenant

PROBLEM = "application/problem+json"


async def _imports(tenant: Tenant) -> list[dict[str, Any]]:
    r = await tenant.client.get("/v1/email-accounts/imports")
    assert r.status_code == 200, r.text
    data: list[dict[str, Any]] = r.json()["data"]
    return data


async def test_a_csv_upload_answers_202_and_the_runner_connects_each_row(
    tenant: Tenant,
    fleet: Fleet,
    settings: Settings,
    sessionmaker: async_sessionmaker[AsyncSession],
    vault: Vault,
    redis: Redis,
    app_state: AppState,
) -> None:
    rows, expected = fleet.rows(good=4, wrong_password=1, unreachable=1)
    rows.append(dict(rows[0]))  # the same address twice in the file
    rows.append({**rows[1], "email": "not an address"})
    r = await tenant.client.post("/v1/email-accounts/imports", files={"file": ("fleet.csv", to_csv(rows), "text/csv")})
    assert r.status_code == 202, r.text
    created = r.json()
    assert r.headers["location"] == f"/v1/email-accounts/imports/{created['id']}"
    assert created["status"] == "running" and created["total"] == 8 and created["filename"] == "fleet.csv"
    assert created["counts"] == {"pending": 6, "verifying": 0, "connected": 0, "failed": 1, "duplicate": 1}
    assert "fleet-s3cret" not in r.text
    async with sessionmaker() as session:
        stored = list(
            await session.scalars(
                select(AccountImportRow).where(AccountImportRow.import_id == uuid.UUID(created["id"]))
            )
        )
    assert all(b"fleet-s3cret" not in (row.smtp_ciphertext or b"") for row in stored)
    assert all("fleet-s3cret" not in str(row.settings) for row in stored)

    assert await run_import(
        uuid.UUID(created["id"]),
        settings=settings,
        sessionmaker=sessionmaker,
        vault=vault,
        redis=redis,
        app_state=app_state,
    )
    r = await tenant.client.get(f"/v1/email-accounts/imports/{created['id']}")
    assert r.status_code == 200, r.text
    done = r.json()
    assert done["status"] == "completed" and done["finished_at"]
    assert done["counts"] == {"pending": 0, "verifying": 0, "connected": 4, "failed": 3, "duplicate": 1}
    by_row = {row["row"]: row for row in done["rows"]}
    states = {
        row["email"]: (row["state"] if row["state"] != "failed" else f"failed:{row['code']}")
        for row in done["rows"][:6]
    }
    assert states == expected
    assert by_row[8]["state"] == "duplicate" and "row 2" in by_row[8]["detail"]
    assert by_row[9]["state"] == "failed" and by_row[9]["code"] == "account_import.invalid_row"
    assert by_row[9]["field"] == "email"
    wrong = next(row for row in done["rows"] if row["code"] == "smtp.auth_failed")
    assert wrong["hint"]
    accounts = (await tenant.client.get("/v1/email-accounts", params={"limit": 200})).json()["data"]
    connected = {row["account_id"] for row in done["rows"] if row["state"] == "connected"}
    assert {a["id"] for a in accounts} == connected
    first = next(a for a in accounts if a["email"] == rows[0]["email"])
    assert first["from_name"] == "Box 0" and first["daily_send_limit"] == 25 and first["warmup_enabled"] is False
    assert first["smtp"]["password_set"] and first["imap"]["password_set"]
    async with sessionmaker() as session:
        stored = list(
            await session.scalars(
                select(AccountImportRow).where(AccountImportRow.import_id == uuid.UUID(created["id"]))
            )
        )
        audits = await session.scalar(
            select(func.count())
            .select_from(CredentialAccess)
            .where(
                CredentialAccess.workspace_id == tenant.workspace_id, CredentialAccess.actor == "system:account_import"
            )
        )
    assert all(row.smtp_ciphertext is None and row.imap_ciphertext is None for row in stored), "erased when final"
    assert audits == 12  # two decrypts for each of the six rows verified
    listed = await _imports(tenant)
    assert [i["id"] for i in listed] == [created["id"]]
    # a second run finds nothing to do and creates nothing
    await run_import(
        uuid.UUID(created["id"]),
        settings=settings,
        sessionmaker=sessionmaker,
        vault=vault,
        redis=redis,
        app_state=app_state,
    )
    async with sessionmaker() as session:
        count = await session.scalar(
            select(func.count()).select_from(EmailAccount).where(EmailAccount.workspace_id == tenant.workspace_id)
        )
    assert count == 4


async def test_json_rows_with_aliases_and_a_page_of_rows(tenant: Tenant, fleet: Fleet) -> None:
    rows, _ = fleet.rows(good=3, wrong_password=0, unreachable=0)
    accounts = [
        {
            "email": row["email"],
            "from_name": "Json Box",
            "smtp_host": row["smtp_host"],
            "smtp_port": int(row["smtp_port"]),
            "smtp_user": row["email"],
            "smtp_password": row["smtp_password"],
            "imap_host": row["imap_host"],
            "imap_port": int(row["imap_port"]),
            "max_email_per_day": 30,
            "warmup_enabled": True,
            "campaign": "ignored column",
        }
        for row in rows
    ]
    r = await tenant.client.post("/v1/email-accounts/imports", json={"accounts": accounts})
    assert r.status_code == 202, r.text
    body = r.json()
    assert body["source"] == "json" and body["counts"]["pending"] == 3 and body["ignored_columns"] == ["campaign"]
    page = (await tenant.client.get(f"/v1/email-accounts/imports/{body['id']}", params={"limit": 2})).json()
    assert [row["row"] for row in page["rows"]] == [1, 2] and page["next_cursor"]
    rest = (
        await tenant.client.get(
            f"/v1/email-accounts/imports/{body['id']}", params={"limit": 2, "cursor": page["next_cursor"]}
        )
    ).json()
    assert [row["row"] for row in rest["rows"]] == [3] and rest["next_cursor"] is None
    pending = (await tenant.client.get(f"/v1/email-accounts/imports/{body['id']}", params={"state": "pending"})).json()
    assert len(pending["rows"]) == 3


async def test_refused_uploads_change_nothing(tenant: Tenant, settings: Settings) -> None:
    url = "/v1/email-accounts/imports"
    good_row = "email,smtp_host,smtp_port\na@example.org,smtp.example.org,587\n"
    cases = [
        (
            await tenant.client.post(url, content=b'{"accounts": ', headers={"content-type": "application/json"}),
            400,
            "request.malformed",
        ),
        (
            await tenant.client.post(url, content=b"[]", headers={"content-type": "application/json"}),
            400,
            "request.malformed",
        ),
        (await tenant.client.post(url, json={"mailboxes": []}), 422, "validation_error"),
        (await tenant.client.post(url, json={"accounts": {"email": "a@example.org"}}), 422, "validation_error"),
        (
            await tenant.client.post(url, content=good_row.encode(), headers={"content-type": "text/plain"}),
            415,
            "request.unsupported_media_type",
        ),
        (
            await tenant.client.post(url, content=b"name,host\nx,y\n", headers={"content-type": "text/csv"}),
            422,
            "validation_error",
        ),
        (
            await tenant.client.post(url, content=b"email\n\xc3\x28\n", headers={"content-type": "text/csv"}),
            422,
            "validation_error",
        ),
        (
            await tenant.client.post(
                url,
                content=(
                    "email,smtp_host,smtp_port\n"
                    + "a@example.org,h.example.org,587\n" * (settings.account_import_max_rows + 1)
                ).encode(),
                headers={"content-type": "text/csv"},
            ),
            422,
            "validation_error",
        ),
        (
            await tenant.client.post(
                url,
                json={
                    "accounts": [{"email": f"r{i}@example.org"} for i in range(settings.account_import_max_rows + 1)]
                },
            ),
            422,
            "validation_error",
        ),
        (await tenant.client.post(url, files={"other": ("x.csv", good_row, "text/csv")}), 422, "validation_error"),
    ]
    for r, status, code in cases:
        assert r.status_code == status, r.text
        assert r.headers["content-type"] == PROBLEM
        assert r.json()["code"] == code
    assert await _imports(tenant) == []
    assert (await tenant.client.get(f"{url}/{uuid.uuid4()}")).json()["code"] == "account_import.not_found"
