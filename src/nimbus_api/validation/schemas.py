from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field, PrivateAttr
from typing_extensions import TypeAliasType

CheckName = TypeAliasType("CheckName", Literal["dns", "smtp", "imap", "roundtrip"])
CheckStatus = TypeAliasType("CheckStatus", Literal["passed", "failed", "skipped"])
VerificationStatus = TypeAliasType("VerificationStatus", Literal["passed", "failed"])
CHECK_ORDER: tuple[CheckName, ...] = ("dns", "smtp", "imap", "roundtrip")


class ServerReplyOut(BaseModel):
    code: int = Field(description="Basic SMTP reply code, e.g. 535.")
    enhanced: str | None = Field(default=None, description="Enhanced status code, e.g. `5.7.8`.")
    text: str = Field(description="The server's text, with anything that looks like a credential removed.")


class CheckResult(BaseModel):
    name: CheckName
    status: CheckStatus
    code: str | None = Field(default=None, description="Stable error code when failed, e.g. `smtp.auth_failed`.")
    detail: str
    hint: str | None = Field(default=None, description="What to do about it.")
    server_reply: ServerReplyOut | None = None
    duration_ms: int
    warnings: list[str] = Field(default_factory=list)
    data: dict[str, Any] = Field(default_factory=dict, description="What the check found (records, folder...).")
    #: the roundtrip's test message as received (never serialized): domain health reads its alignment
    _captured: bytes | None = PrivateAttr(default=None)


class VerificationResult(BaseModel):
    status: VerificationStatus
    code: str | None = Field(description="Code of the first failure in the order dns, smtp, imap, roundtrip.")
    check: CheckName | None = Field(description="Name of the first failed check.")
    checks: list[CheckResult]
    verified_at: datetime
    duration_ms: int

    @property
    def captured_message(self) -> bytes | None:
        """The test message as the mailbox received it, when the roundtrip read it back (not serialized)."""
        for check in self.checks:
            if check.name == "roundtrip" and check._captured:
                return check._captured
        return None
