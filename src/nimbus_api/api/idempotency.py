"""``Idempotency-Key`` for POST requests, scoped to the workspace.

The record is written in the request's own transaction, so it exists exactly when the effect does:

1. No key: run the operation.
2. Key seen, same method, path and body: replay the stored status and body (``Idempotent-Replayed``).
3. Key seen with a different request: 422 ``idempotency_key.mismatch``.
4. Key new: insert a claim (``ON CONFLICT DO NOTHING``). A concurrent request with the same key blocks
   on the unique index until the first commits, then finds its record and replays it; if the first
   rolls back, the claim goes to the second. The operation runs and its response is stored before
   the commit. An operation that fails rolls back the claim too: errors are not replayed.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import Depends, Header, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert

from nimbus_api.api.deps import AuthContext, Session
from nimbus_api.kit.ids import new_id
from nimbus_api.kit.problems import Problem
from nimbus_api.models import IdempotencyRecord

REPLAY_HEADER = "Idempotent-Replayed"
# 1 to 255 printable ASCII characters, not starting or ending with a space (HTTP trims those).
KEY_PATTERN = r"^[!-~]([ -~]{0,253}[!-~])?$"
_KEY = re.compile(KEY_PATTERN)


class IdempotencyKeyMismatch(Problem):
    status = 422
    code = "idempotency_key.mismatch"
    title = "This Idempotency-Key was used with a different request"


class IdempotencyKeyInvalid(Problem):
    status = 422
    code = "idempotency_key.invalid"
    title = "Idempotency-Key must be 1 to 255 printable ASCII characters, without a space at either end"


class Idempotency:
    def __init__(self, request: Request, session: Session, auth: AuthContext, key: str | None) -> None:
        self.request = request
        self.session = session
        self.auth = auth
        self.key = key

    async def _request_hash(self, body: bytes | None) -> str:
        if body is None:
            body = await self.request.body()
        try:
            canonical = json.dumps(json.loads(body), sort_keys=True, separators=(",", ":")).encode()
        except ValueError:
            canonical = body
        digest = hashlib.sha256()
        for part in (self.request.method.encode(), self.request.url.path.encode(), canonical):
            digest.update(len(part).to_bytes(8, "big") + part)
        return digest.hexdigest()

    async def _find(self) -> IdempotencyRecord | None:
        return await self.session.scalar(
            select(IdempotencyRecord).where(
                IdempotencyRecord.workspace_id == self.auth.workspace_id, IdempotencyRecord.key == self.key
            )
        )

    @staticmethod
    def _replay(record: IdempotencyRecord, request_hash: str) -> JSONResponse:
        if record.request_hash != request_hash:
            raise IdempotencyKeyMismatch(
                "the same Idempotency-Key was sent with another method, path or body; use a new key"
            )
        return JSONResponse(record.response_body, status_code=record.response_status, headers={REPLAY_HEADER: "true"})

    async def run(
        self, status_code: int, operation: Callable[[], Awaitable[BaseModel]], *, request_body: bytes | None = None
    ) -> Any:
        """``request_body``: what identifies the request when the raw body was consumed by parsing (an
        upload's content); by default the raw body."""
        if self.key is None:
            return JSONResponse((await operation()).model_dump(mode="json"), status_code=status_code)
        if not _KEY.fullmatch(self.key):
            raise IdempotencyKeyInvalid()
        request_hash = await self._request_hash(request_body)
        existing = await self._find()
        if existing is not None:
            return self._replay(existing, request_hash)
        claimed = await self.session.scalar(
            insert(IdempotencyRecord)
            .values(
                id=new_id(),
                workspace_id=self.auth.workspace_id,
                key=self.key,
                method=self.request.method,
                path=self.request.url.path,
                request_hash=request_hash,
                response_status=0,
                response_body={},
            )
            .on_conflict_do_nothing(index_elements=["workspace_id", "key"])
            .returning(IdempotencyRecord.id)
        )
        if claimed is None:
            existing = await self._find()
            assert existing is not None
            await self.session.refresh(existing)
            return self._replay(existing, request_hash)
        body = (await operation()).model_dump(mode="json")
        await self.session.execute(
            update(IdempotencyRecord)
            .where(IdempotencyRecord.id == claimed)
            .values(response_status=status_code, response_body=body)
        )
        return JSONResponse(body, status_code=status_code)


def _key_schema(schema: dict[str, Any]) -> None:
    """The header as the server checks it (``Idempotency.run``): an optional string, never null."""
    schema.pop("anyOf", None)
    schema.update(type="string", minLength=1, maxLength=255, pattern=KEY_PATTERN)


def _idempotency(
    request: Request,
    session: Session,
    auth: AuthContext,
    idempotency_key: Annotated[
        str | None,
        Header(
            description="Retry-safe POST: the same key and body replay the first response (24 h by default); "
            "the same key with another request is a 422 `idempotency_key.mismatch`, a key off the pattern a 422 "
            "`idempotency_key.invalid`.",
            json_schema_extra=_key_schema,
        ),
    ] = None,
) -> Idempotency:
    return Idempotency(request, session, auth, idempotency_key)


IdempotencyDep = Annotated[Idempotency, Depends(_idempotency)]
