"""Provider hook bodies. The token is only in ``ProviderHookWithUrl`` (the create answer); no answer ever
shows a signing key or a basic-auth password, only whether one is set."""

from __future__ import annotations

import base64
import binascii
import uuid
from datetime import datetime
from typing import Annotated, Literal

from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_der_public_key
from pydantic import BaseModel, Field, field_validator, model_validator
from typing_extensions import TypeAliasType

from nimbus_api.kit.schemas import SINGLE_LINE_PATTERN, StrictModel, as_sent

Provider = TypeAliasType("Provider", Literal["ses", "postmark", "sendgrid", "mailgun", "smtp2go"])
PROVIDERS: tuple[str, ...] = ("ses", "postmark", "sendgrid", "mailgun", "smtp2go")
SignatureScheme = TypeAliasType(
    "SignatureScheme", Literal["sns", "sendgrid_ecdsa", "mailgun_hmac", "basic_auth", "token_only"]
)

Description = Annotated[str, Field(min_length=1, max_length=500, pattern=SINGLE_LINE_PATTERN), as_sent(500)]
_KEY_PATTERN = r"^[\x21-\x7e]+$"
SigningKey = Annotated[
    str,
    Field(
        min_length=8,
        max_length=200,
        pattern=_KEY_PATTERN,
        description="Mailgun's HTTP webhook signing key (Sending > Webhooks). Stored encrypted, never shown.",
    ),
    as_sent(200, _KEY_PATTERN),
]
_B64_PATTERN = r"^[A-Za-z0-9+/=]+$"
PublicKey = Annotated[
    str,
    Field(
        min_length=40,
        max_length=400,
        pattern=_B64_PATTERN,
        description="SendGrid's Signed Event Webhook verification key: the base64 of the DER public key "
        "(ECDSA P-256), as SendGrid shows it.",
    ),
    as_sent(400, _B64_PATTERN),
]
_TOPIC_PATTERN = r"^arn:aws(-[a-z]+)*:sns:[a-z0-9-]+:[0-9]{12}:[A-Za-z0-9_-]{1,256}$"
TopicArn = Annotated[
    str,
    Field(
        min_length=20,
        max_length=300,
        pattern=_TOPIC_PATTERN,
        description="Amazon SNS: accept only notifications of this topic.",
        examples=["arn:aws:sns:us-east-1:123456789012:ses-bounces"],
    ),
    as_sent(300, _TOPIC_PATTERN),
]
_USER_PATTERN = r"^[\x21-\x39\x3b-\x7e]+$"  # printable ASCII without ':' (RFC 7617)
Username = Annotated[str, Field(min_length=1, max_length=200, pattern=_USER_PATTERN), as_sent(200, _USER_PATTERN)]
Password = Annotated[str, Field(min_length=12, max_length=200, pattern=_KEY_PATTERN), as_sent(200, _KEY_PATTERN)]


class BasicAuth(StrictModel):
    """HTTP basic credentials the provider sends (Postmark, SMTP2GO: put them in the URL you paste)."""

    username: Username
    password: Password = Field(description="At least 12 characters; kept as a salted digest, never shown.")


def load_public_key(value: str) -> ec.EllipticCurvePublicKey:
    """The SendGrid verification key as a P-256 public key (``ValueError`` when it is not one)."""
    try:
        key = load_der_public_key(base64.b64decode(value, validate=True))
    except (binascii.Error, ValueError) as exc:
        raise ValueError("is not the base64 of a DER public key") from exc
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp256r1":
        raise ValueError("is not an ECDSA P-256 public key")
    return key


_NEEDS: dict[str, set[str]] = {
    "ses": {"topic_arn"},
    "postmark": {"basic_auth"},
    "sendgrid": {"public_key"},
    "mailgun": {"signing_key"},
    "smtp2go": {"basic_auth"},
}


class ProviderHookCreate(StrictModel):
    provider: Provider
    description: Description | None = None
    signing_key: SigningKey | None = Field(default=None, description="Mailgun only, and required there.")
    public_key: PublicKey | None = Field(
        default=None, description="SendGrid only: with it, every request must carry a valid signature."
    )
    basic_auth: BasicAuth | None = Field(
        default=None, description="Postmark and SMTP2GO only: with it, every request must carry them."
    )
    topic_arn: TopicArn | None = Field(default=None, description="Amazon SES (SNS) only.")

    @field_validator("public_key")
    @classmethod
    def _a_p256_key(cls, value: str | None) -> str | None:
        if value is not None:
            load_public_key(value)
        return value

    @model_validator(mode="after")
    def _fits_the_provider(self) -> ProviderHookCreate:
        allowed = _NEEDS[self.provider]
        for name in ("signing_key", "public_key", "basic_auth", "topic_arn"):
            if getattr(self, name) is not None and name not in allowed:
                raise ValueError(f"`{name}` does not apply to provider `{self.provider}`")
        if self.provider == "mailgun" and self.signing_key is None:
            raise ValueError("provider `mailgun` needs `signing_key` (its HTTP webhook signing key)")
        return self


class ProviderHookRead(BaseModel):
    id: uuid.UUID
    provider: Provider
    description: str | None
    signature: SignatureScheme = Field(description="How a notification to this hook is authenticated.")
    topic_arn: str | None
    basic_auth_username: str | None
    subscription_confirmed_at: datetime | None = Field(description="Amazon SNS: when the subscription was confirmed.")
    last_received_at: datetime | None
    created_at: datetime


class ProviderHookWithUrl(ProviderHookRead):
    url: str = Field(description="Paste this into the provider's webhook settings. Shown in this answer only.")


class ProviderHookPage(BaseModel):
    data: list[ProviderHookRead]
    next_cursor: str | None


NotificationKind = TypeAliasType("NotificationKind", Literal["bounce", "complaint", "other", "subscription"])
NotificationOutcome = TypeAliasType(
    "NotificationOutcome",
    Literal["bounced", "complained", "already_counted", "soft_bounce", "unmatched", "ignored", "received", "none"],
)


class ProviderHookNotification(BaseModel):
    """One report a hook accepted, and what it did."""

    id: uuid.UUID
    event_id: str = Field(description="The provider's id of the event (SNS MessageId, Postmark ID...).")
    kind: NotificationKind
    email: str | None
    message_id: uuid.UUID | None = Field(description="Our sent message it matched.")
    outcome: NotificationOutcome = Field(
        description="`bounced`, `complained`; `already_counted` (reported before, by mail or webhook); "
        "`soft_bounce` (recorded only); `unmatched` (no message of ours); `ignored` (another event)."
    )
    created_at: datetime


class ProviderHookNotificationPage(BaseModel):
    data: list[ProviderHookNotification]
    next_cursor: str | None


class ProviderHookReceipt(BaseModel):
    """What a notification did. A replayed one (the provider's event id seen before) counts as a duplicate."""

    received: int = Field(description="Bounce and complaint reports in the notification.")
    applied: int = Field(description="Matched to one of our messages and acted on (or already counted).")
    unmatched: int = Field(description="About no message of this workspace: recorded, nothing else.")
    duplicates: int = Field(description="Seen before: nothing done again.")
    ignored: int = Field(description="Other events (deliveries, opens, soft bounces...): recorded only.")
    subscription_confirmed: bool = False
