"""``/v1/email-accounts/imports``: upload a fleet of mailboxes, watch it being verified, list imports."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

import structlog
from fastapi import APIRouter, BackgroundTasks, Query, Request, Response
from starlette.datastructures import UploadFile

from nimbus_api.account_imports import columns, service
from nimbus_api.account_imports.columns import ParsedFile
from nimbus_api.account_imports.schemas import (
    AccountImportDetail,
    AccountImportPage,
    AccountImportRead,
    ImportRowState,
)
from nimbus_api.account_imports.tasks import enqueue_run
from nimbus_api.api.deps import AuthContext, Session, SettingsDep, VaultDep, app_state
from nimbus_api.config import Settings
from nimbus_api.kit.pagination import DEFAULT_LIMIT, Cursor, Limit
from nimbus_api.kit.problems import FieldError, UnsupportedMediaType, ValidationProblem, problem_responses

log = structlog.get_logger(__name__)
router = APIRouter(prefix="/v1/email-accounts/imports", tags=["email-accounts"], responses=problem_responses(401))
PATH = "/v1/email-accounts/imports"
_FILE_DESCRIPTION = (
    "A CSV file with a header row (UTF-8, a BOM is fine, or UTF-16 with its BOM; comma, semicolon or tab "
    "separated). Columns: README, Importing a fleet of mailboxes."
)
# Only the upload is declared: the same operation also reads a bare `text/csv` body and the JSON shape (see
# the description), but generated clients mishandle an operation with several body types.
REQUEST_BODY: dict[str, Any] = {
    "required": True,
    "content": {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "title": "AccountImportUpload",
                "required": ["file"],
                "properties": {"file": {"type": "string", "format": "binary", "description": _FILE_DESCRIPTION}},
            }
        },
    },
}
_NOT_FOUND = problem_responses(404, 422, codes={404: ["account_import.not_found"], 422: ["validation_error"]})


def _media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


async def _read_upload(request: Request, settings: Settings) -> tuple[ParsedFile, str, str | None]:
    """The body as a parsed file: (rows, source, file name). 415 for another media type."""
    media = _media_type(request)
    limit = settings.account_import_max_bytes
    max_rows = settings.account_import_max_rows
    too_big = ValidationProblem(
        [FieldError(field="file", message=f"the file is larger than {limit} bytes", type="value_error")]
    )
    if media == "multipart/form-data":
        form = await request.form(max_files=1, max_fields=10)
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise ValidationProblem([FieldError(field="file", message="Field required", type="missing")])
        data = await upload.read(limit + 1)
        if len(data) > limit:
            raise too_big
        name = (upload.filename or "")[:255].replace("\x00", "") or None
        return columns.parse_csv(data, max_rows=max_rows), "csv", name
    if media == "text/csv":
        data = await request.body()
        if len(data) > limit:
            raise too_big
        return columns.parse_csv(data, max_rows=max_rows), "csv", None
    main, _, sub = media.partition("/")
    if main == "application" and (sub == "json" or sub.endswith("+json")):
        data = await request.body()
        if len(data) > limit:
            raise too_big
        return columns.parse_json(columns.load_json(data), max_rows=max_rows), "json", None
    given = f"`{media}`" if media else "none"
    raise UnsupportedMediaType(
        f"send the body as `application/json`, `text/csv` or `multipart/form-data` (Content-Type given: {given})"
    )


async def _wake(request: Request, import_id: uuid.UUID) -> None:
    try:
        await enqueue_run(app_state(request).redis, import_id)
    except Exception as exc:  # the resume cron starts it within seconds
        log.warning("account_import_enqueue_failed", import_id=str(import_id), error=repr(exc))


@router.post(
    "",
    name="email_account_imports_create",
    summary="Import up to 1,000 mailboxes (CSV or JSON)",
    status_code=202,
    response_model=AccountImportRead,
    openapi_extra={"requestBody": REQUEST_BODY},
    responses=problem_responses(422, codes={422: ["validation_error"]}),
)
async def email_account_imports_create(
    request: Request,
    auth: AuthContext,
    session: Session,
    vault: VaultDep,
    settings: SettingsDep,
    background: BackgroundTasks,
) -> Response:
    """Takes a CSV upload (`multipart/form-data`, field `file`), the same CSV as the whole body
    (`Content-Type: text/csv`), or JSON (`application/json`): `{"accounts": [{"email": ..., "smtp_host": ...,
    ...}, ...]}`, one object per mailbox keyed by the CSV's column names, values strings, numbers, booleans
    or null; any other JSON shape is a 422, a body that is not JSON a 400, another media type a 415.

    The upload is read and every row validated at once; the answer is 202 with the import's id and the
    rows are verified in the workers, each with the checks of `POST /v1/email-accounts` (DNS, SMTP login and
    test send, IMAP login, the test message read back), a few at a time per mail server. Follow them with
    `GET /v1/email-accounts/imports/{import_id}`.

    Passwords are encrypted as soon as the upload is read, and erased from the import when its row is done.
    A bad row does not refuse the upload: it is `failed` with the column and the reason. Only an upload that
    cannot be read (no email column, not text, more than 1,000 rows, larger than 5 MB) is a 422, and a body
    that is not JSON a 400."""
    parsed, source, filename = await _read_upload(request, settings)
    record = await service.create(
        session,
        vault,
        auth.workspace_id,
        parsed,
        source=source,
        filename=filename,
        created_by=auth.actor.value,
    )
    counts = (await service.counts(session, [record.id]))[record.id]
    out = service.to_read(record, counts, parsed.ignored_columns)
    if record.status == "running":
        background.add_task(_wake, request, record.id)
    return Response(
        out.model_dump_json(),
        status_code=202,
        media_type="application/json",
        headers={"Location": f"{PATH}/{record.id}"},
        background=background,
    )


@router.get("", name="email_account_imports_list", summary="List account imports", responses=problem_responses(422))
async def email_account_imports_list(
    auth: AuthContext, session: Session, cursor: Cursor = None, limit: Limit = DEFAULT_LIMIT
) -> AccountImportPage:
    """Newest first, with the count of rows in each state."""
    data, next_cursor = await service.list_page(session, auth.workspace_id, cursor, limit)
    return AccountImportPage(data=data, next_cursor=next_cursor)


@router.get(
    "/{import_id}",
    name="email_account_imports_get",
    summary="An account import's progress and its rows",
    responses=_NOT_FOUND,
)
async def email_account_imports_get(
    import_id: uuid.UUID,
    auth: AuthContext,
    session: Session,
    cursor: Cursor = None,
    limit: Limit = DEFAULT_LIMIT,
    state: Annotated[ImportRowState | None, Query(description="Only rows in this state.")] = None,
) -> AccountImportDetail:
    """Counts per state and one page of rows in file order: `pending`, `verifying`, `connected` (with
    `account_id`), `failed` (`code`, `detail`, `hint`), `duplicate`."""
    return await service.detail(session, auth.workspace_id, import_id, cursor=cursor, limit=limit, state=state)
