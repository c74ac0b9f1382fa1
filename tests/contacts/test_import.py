"""Bulk import, JSON and CSV: validated row by row, duplicates merged, custom fields kept, a report of
what was rejected and why, suppressed addresses imported but flagged; one statement, so it is fast."""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nimbus_api.models import Contact
from tests.conftest import Tenant

BUDGET_SECONDS = 5.0


async def _import(tenant: Tenant, rows: list[Any], **kw: Any) -> dict[str, Any]:
    r = await tenant.client.post("/v1/contacts/import", json={"contacts": rows}, **kw)
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


async def _contact(tenant: Tenant, email: str) -> dict[str, Any]:
    data = (await tenant.client.get("/v1/contacts", params={"email": email})).json()["data"]
    assert len(data) == 1, data
    return data[0]  # type: ignore[no-any-return]


async def test_ten_thousand_contacts_in_one_call(
    tenant: Tenant, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    rows: list[Any] = [
        {"email": f"person{i}@example.com", "first_name": f"P{i}", "fields": {"row": str(i), "source": "fair"}}
        for i in range(9_990)
    ]
    rows += [
        {"email": "person5@EXAMPLE.com", "last_name": "Fifth", "fields": {"extra": "yes"}},  # duplicate of row 5
        {"email": "PERSON6@example.com", "first_name": "Sixth"},  # duplicate, a later value wins
        {"email": "not an address"},
        {"email": "mallory@example.com", "first_name": "Mallory\r\nBcc: victim@example.com"},
        {"email": "x@example.com", "fields": {"Bad Key": "v"}},
        {"email": "y@example.com", "fields": {"note": "line\nbreak"}},
        {"first_name": "no address"},
        "not an object",
        {"email": "z@example.com", "unknown": 1},
        {"email": "w@example.com", "company": "c" * 201},
    ]
    assert len(rows) == 10_000
    started = time.perf_counter()
    report = await _import(tenant, rows)
    elapsed = time.perf_counter() - started
    print(f"\nimport of 10,000 rows: {elapsed:.2f} s")
    assert elapsed < BUDGET_SECONDS, f"the import took {elapsed:.2f} s"

    assert (report["created"], report["updated"], report["unchanged"], report["duplicates"]) == (9_990, 0, 0, 2)
    rejected = {r["row"]: r for r in report["rejected"]}
    assert sorted(rejected) == [9_992, 9_993, 9_994, 9_995, 9_996, 9_997, 9_998, 9_999]
    assert rejected[9_992]["field"] == "email" and rejected[9_992]["email"] == "not an address"
    assert rejected[9_992]["reason"].startswith("not a valid email address")
    assert (rejected[9_993]["field"], rejected[9_993]["email"]) == ("first_name", "mallory@example.com")
    assert "CR, LF" in rejected[9_993]["reason"]
    assert rejected[9_994]["field"] == "fields.Bad Key.[key]"
    assert rejected[9_995]["field"] == "fields.note"
    assert (rejected[9_996]["field"], rejected[9_996]["email"]) == ("email", None)
    assert rejected[9_997]["reason"] == "not a JSON object"
    assert rejected[9_998]["field"] == "unknown"
    assert rejected[9_999]["field"] == "company"
    assert report["suppressed"] == []

    async with sessionmaker() as session:
        count = await session.scalar(
            select(func.count()).select_from(Contact).where(Contact.workspace_id == tenant.workspace_id)
        )
    assert count == 9_990
    fifth = await _contact(tenant, "person5@example.com")
    assert (fifth["first_name"], fifth["last_name"]) == ("P5", "Fifth")
    assert fifth["fields"] == {"row": "5", "source": "fair", "extra": "yes"}
    assert (await _contact(tenant, "person6@example.com"))["first_name"] == "Sixth"

    # the same file again: nothing to do, and as fast
    started = time.perf_counter()
    again = await _import(tenant, rows)
    assert time.perf_counter() - started < BUDGET_SECONDS
    assert (again["created"], again["updated"], again["unchanged"], again["duplicates"]) == (0, 0, 9_990, 2)
    assert len(again["rejected"]) == 8


async def test_existing_contacts_merge_given_values_win_blanks_keep(tenant: Tenant) -> None:
    await tenant.client.post(
        "/v1/contacts",
        json={"email": "ann@example.com", "first_name": "Ann", "company": "Old Co", "fields": {"a": "1", "b": "2"}},
    )
    report = await _import(
        tenant,
        [
            {"email": "ANN@example.com", "first_name": "", "company": "New Co", "fields": {"b": "20", "c": "3"}},
            {"email": "ben@example.com"},
        ],
    )
    assert (report["created"], report["updated"], report["unchanged"]) == (1, 1, 0)
    ann = await _contact(tenant, "ann@example.com")
    assert (ann["email"], ann["first_name"], ann["company"]) == ("ann@example.com", "Ann", "New Co")
    assert ann["fields"] == {"a": "1", "b": "20", "c": "3"}
    same = await _import(tenant, [{"email": "ann@example.com", "fields": {"c": "3"}}])
    assert (same["created"], same["updated"], same["unchanged"]) == (0, 0, 1)


async def test_suppressed_addresses_are_imported_and_flagged(tenant: Tenant) -> None:
    await tenant.client.post("/v1/suppressions", json={"email": "Gone@example.com"})
    report = await _import(tenant, [{"email": "kept@example.com"}, {"email": "gone@EXAMPLE.com", "first_name": "G"}])
    assert report["created"] == 2
    assert report["suppressed"] == [{"row": 1, "email": "gone@example.com", "reason": "manual"}]
    assert (await _contact(tenant, "gone@example.com"))["suppressed"] is True


async def test_too_many_rows_or_fields_refuse_the_whole_import(tenant: Tenant) -> None:
    r = await tenant.client.post(
        "/v1/contacts/import", json={"contacts": [{"email": f"a{i}@example.com"} for i in range(10_001)]}
    )
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "contacts"
    assert (await tenant.client.post("/v1/contacts/import", json={"contacts": []})).status_code == 422
    await tenant.client.post(
        "/v1/contacts", json={"email": "full@example.com", "fields": {f"f{i}": "x" for i in range(30)}}
    )
    r = await tenant.client.post(
        "/v1/contacts/import",
        json={"contacts": [{"email": "full@example.com", "fields": {f"g{i}": "y" for i in range(30)}}]},
    )
    assert r.status_code == 422, r.text
    assert len((await _contact(tenant, "full@example.com"))["fields"]) == 30, "nothing was written"


async def test_imports_stay_in_their_workspace(tenant: Tenant, make_tenant: Any) -> None:
    other = await make_tenant()
    await _import(other, [{"email": "shared@example.com", "first_name": "Other"}])
    report = await _import(tenant, [{"email": "shared@example.com", "first_name": "Mine"}])
    assert report["created"] == 1
    assert (await _contact(other, "shared@example.com"))["first_name"] == "Other"


# --- CSV --------------------------------------------------------------------------------------------------


async def _csv(tenant: Tenant, content: str | bytes, **kw: Any) -> Any:
    return await tenant.client.post(
        "/v1/contacts/import/csv", files={"file": ("contacts.csv", content, "text/csv")}, **kw
    )


async def test_csv_import_maps_columns_and_reports_rows(tenant: Tenant) -> None:
    content = (
        "\ufeffE-mail,First Name,Surname,Organization,Job Title,city\r\n"
        "ada@example.com,Ada,Lovelace,Engines,Countess,London\r\n"
        "\r\n"
        "bad-address,,,,,\r\n"
        '"eve@example.com","Eve\r\nBcc: victim@example.com",,,,\r\n'
        "ADA@example.com,,,,Mathematician,\r\n"
        "bob@example.com,Bob,,,,,too many\r\n"
        "carl@example.com\r\n"
    )
    r = await _csv(tenant, content, headers={"Idempotency-Key": "csv-1"})
    assert r.status_code == 200, r.text
    report = r.json()
    assert (report["created"], report["updated"], report["unchanged"], report["duplicates"]) == (2, 0, 0, 1)
    rejected = {row["row"]: row for row in report["rejected"]}
    assert sorted(rejected) == [4, 5, 7]
    assert (rejected[4]["field"], rejected[4]["email"]) == ("email", "bad-address")
    assert rejected[5]["field"] == "first_name", "a CR/LF inside a quoted cell is refused like any other"
    assert "more values than the header" in rejected[7]["reason"]
    ada = await _contact(tenant, "ada@example.com")
    assert (ada["first_name"], ada["last_name"], ada["company"]) == ("Ada", "Lovelace", "Engines")
    assert ada["fields"] == {"job_title": "Mathematician", "city": "London"}
    carl = await _contact(tenant, "carl@example.com")
    assert carl["first_name"] is None and carl["fields"] == {}
    replay = await _csv(tenant, content, headers={"Idempotency-Key": "csv-1"})
    assert replay.headers["Idempotent-Replayed"] == "true" and replay.json() == report
    other = await _csv(tenant, content + "dan@example.com\r\n", headers={"Idempotency-Key": "csv-1"})
    assert other.status_code == 422 and other.json()["code"] == "idempotency_key.mismatch"


async def test_csv_files_that_cannot_be_read_are_a_422_naming_file(tenant: Tenant) -> None:
    for content, message in [
        ("first_name,last_name\nAda,Lovelace\n", "no email column"),
        ("", "no header row"),
        ("email,1st choice\na@example.com,x\n", "cannot be a custom field name"),
        ("email,City,city\na@example.com,x,y\n", "columns repeat"),
        ("email,,x\na@example.com,,\n", "column 2 has no name"),
        (b"email\n\xff\xfe@example.com\n", "not UTF-8"),
        ("email," + ",".join(f"f{i}" for i in range(51)) + "\n", "more than 50 custom field columns"),
        ("email\n" + "".join(f"a{i}@example.com\n" for i in range(10_001)), "more than 10000 rows"),
    ]:
        r = await _csv(tenant, content)
        assert r.status_code == 422, (content[:40], r.text)
        error = r.json()["errors"][0]
        assert error["field"] == "file" and message in error["message"], (message, error)
    missing = await tenant.client.post("/v1/contacts/import/csv", files={"other": ("a.csv", "email\n", "text/csv")})
    assert missing.status_code == 422 and missing.json()["errors"][0]["field"] == "file"
    assert (await tenant.client.get("/v1/contacts")).json()["data"] == []
