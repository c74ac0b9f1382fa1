from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, File, Query, Response, UploadFile

from nimbus_api.api.deps import AuthContext, Session
from nimbus_api.api.idempotency import IdempotencyDep
from nimbus_api.contacts import importer, service
from nimbus_api.contacts.schemas import (
    ContactCreate,
    ContactImport,
    ContactPage,
    ContactRead,
    ContactUpdate,
    ImportReport,
)
from nimbus_api.kit.pagination import DEFAULT_LIMIT, Cursor, Limit
from nimbus_api.kit.problems import problem_responses
from nimbus_api.kit.schemas import ANY_LINE_PATTERN

router = APIRouter(prefix="/v1/contacts", tags=["contacts"], responses=problem_responses(401))

_IDEMPOTENCY_CODES = ["idempotency_key.mismatch", "idempotency_key.invalid"]
_GET = problem_responses(404, 422, codes={404: ["contact.not_found"]})
_IMPORT = problem_responses(422, codes={422: ["validation_error", *_IDEMPOTENCY_CODES]})


@router.post(
    "",
    name="contacts_create",
    summary="Create a contact",
    status_code=201,
    response_model=ContactRead,
    responses=problem_responses(
        409, 422, codes={409: ["contact.exists"], 422: ["validation_error", *_IDEMPOTENCY_CODES]}
    ),
)
async def contacts_create(
    payload: ContactCreate, auth: AuthContext, session: Session, idem: IdempotencyDep
) -> Response:
    async def operation() -> ContactRead:
        contact = await service.create(session, auth.workspace_id, payload)
        return (await service.to_read(session, auth.workspace_id, [contact]))[0]

    response: Response = await idem.run(201, operation)
    return response


@router.get("", name="contacts_list", summary="List contacts", responses=problem_responses(422))
async def contacts_list(
    auth: AuthContext,
    session: Session,
    cursor: Cursor = None,
    limit: Limit = DEFAULT_LIMIT,
    email: Annotated[
        str | None, Query(max_length=320, pattern=ANY_LINE_PATTERN, description="Exact address, any case.")
    ] = None,
) -> ContactPage:
    contacts, next_cursor = await service.list_page(session, auth.workspace_id, email=email, cursor=cursor, limit=limit)
    return ContactPage(data=await service.to_read(session, auth.workspace_id, contacts), next_cursor=next_cursor)


@router.post(
    "/import",
    name="contacts_import",
    summary="Import up to 10,000 contacts (JSON)",
    response_model=ImportReport,
    responses=_IMPORT,
)
async def contacts_import(
    payload: ContactImport, auth: AuthContext, session: Session, idem: IdempotencyDep
) -> Response:
    """Each row is validated on its own: bad rows are reported in `rejected` (row, address, field,
    reason) and the others imported. Rows with the same address are merged; an existing contact takes
    the values given and merges custom fields. Suppressed addresses are imported and listed in
    `suppressed`."""

    async def operation() -> ImportReport:
        return await importer.import_rows(session, auth.workspace_id, enumerate(payload.contacts))

    response: Response = await idem.run(200, operation)
    return response


@router.post(
    "/import/csv",
    name="contacts_import_csv",
    summary="Import up to 10,000 contacts (CSV upload)",
    response_model=ImportReport,
    responses=_IMPORT,
)
async def contacts_import_csv(
    file: Annotated[
        UploadFile,
        File(
            description="`multipart/form-data` field `file`: UTF-8 CSV with a header row. `email`, `first_name`, "
            "`last_name` and `company` columns map to the contact, every other column is a custom field "
            "(`Job Title` -> `job_title`). At most 10,000 rows and 20 MB."
        ),
    ],
    auth: AuthContext,
    session: Session,
    idem: IdempotencyDep,
) -> Response:
    """The same import as `contacts_import`, from a spreadsheet export. `row` in the report is the line
    of the file (the header is line 1). A file that cannot be read (no `email` column, not UTF-8, a column
    name that cannot be a field name) is a 422 naming `file`."""
    data = await file.read(importer.MAX_CSV_BYTES + 1)

    async def operation() -> ImportReport:
        return await importer.import_rows(session, auth.workspace_id, importer.parse_csv(data))

    response: Response = await idem.run(200, operation, request_body=b"csv:" + data)
    return response


@router.get("/{contact_id}", name="contacts_get", summary="Get a contact", responses=_GET)
async def contacts_get(contact_id: uuid.UUID, auth: AuthContext, session: Session) -> ContactRead:
    contact = await service.get(session, auth.workspace_id, contact_id)
    return (await service.to_read(session, auth.workspace_id, [contact]))[0]


@router.patch(
    "/{contact_id}",
    name="contacts_update",
    summary="Update a contact",
    responses=problem_responses(404, 409, 422, codes={404: ["contact.not_found"], 409: ["contact.exists"]}),
)
async def contacts_update(
    contact_id: uuid.UUID, payload: ContactUpdate, auth: AuthContext, session: Session
) -> ContactRead:
    """Only the fields given change; `fields` is merged into the stored custom fields (null removes one)."""
    contact = await service.update(session, auth.workspace_id, contact_id, payload)
    return (await service.to_read(session, auth.workspace_id, [contact]))[0]


@router.delete(
    "/{contact_id}",
    name="contacts_delete",
    summary="Delete a contact with its enrollments and messages",
    status_code=204,
    responses=_GET,
)
async def contacts_delete(contact_id: uuid.UUID, auth: AuthContext, session: Session) -> Response:
    """The suppression list is not touched: a suppressed address stays suppressed."""
    await service.delete_contact(session, auth.workspace_id, contact_id)
    return Response(status_code=204)
