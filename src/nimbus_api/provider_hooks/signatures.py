"""The signature schemes of Postmark, SendGrid, Mailgun and SMTP2GO, and the freshness of a signed time.

* Postmark and SMTP2GO sign nothing: a hook may require HTTP basic credentials (put in the URL pasted
  into the provider), checked against a salted digest. Without them the URL token alone authenticates.
* SendGrid Signed Event Webhook: ECDSA P-256 / SHA-256 over the ``X-Twilio-Email-Event-Webhook-Timestamp``
  header followed by the exact body bytes, the DER signature base64 in
  ``X-Twilio-Email-Event-Webhook-Signature``.
* Mailgun: ``signature.signature`` is the hex HMAC-SHA256, under the HTTP webhook signing key, of
  ``signature.timestamp`` followed by ``signature.token``. The token is remembered (``apply.seen_token``):
  the same signed request sent again is refused.

A signed timestamp more than ``NIMBUS_PROVIDER_HOOKS_MAX_AGE_SECONDS`` away from now is stale: refused,
so a captured request cannot be replayed after the window in which replays are remembered.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from datetime import datetime
from hashlib import sha256

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.hashes import SHA256
from starlette.datastructures import Headers

from nimbus_api.models import ProviderHook
from nimbus_api.provider_hooks import service
from nimbus_api.provider_hooks.errors import HookSignatureInvalid, HookStale, HookUnauthorized
from nimbus_api.provider_hooks.schemas import load_public_key

SENDGRID_SIGNATURE = "X-Twilio-Email-Event-Webhook-Signature"
SENDGRID_TIMESTAMP = "X-Twilio-Email-Event-Webhook-Timestamp"


def check_fresh(moment: float, now: datetime, max_age: int) -> None:
    if abs(now.timestamp() - moment) > max_age:
        raise HookStale(f"the signed timestamp is more than {max_age} seconds away from now")


def check_basic(hook: ProviderHook, headers: Headers) -> None:
    if not hook.basic_username or not hook.basic_password_hash:
        return
    scheme, _, value = headers.get("authorization", "").partition(" ")
    if scheme.lower() != "basic":
        raise HookUnauthorized("this hook takes HTTP basic credentials")
    try:
        username, _, password = base64.b64decode(value.strip(), validate=True).decode("utf-8").partition(":")
    except (binascii.Error, UnicodeDecodeError):
        raise HookUnauthorized("the basic credentials cannot be read") from None
    user_ok = hmac.compare_digest(username.encode(), hook.basic_username.encode())
    password_ok = service.password_matches(hook.basic_password_hash, password)
    if not (user_ok and password_ok):
        raise HookUnauthorized("wrong basic credentials")


def check_sendgrid(hook: ProviderHook, headers: Headers, body: bytes, now: datetime, max_age: int) -> None:
    if not hook.public_key:
        return
    signature, timestamp = headers.get(SENDGRID_SIGNATURE, ""), headers.get(SENDGRID_TIMESTAMP, "")
    if not signature or not timestamp.isdigit():
        raise HookSignatureInvalid(f"send {SENDGRID_SIGNATURE} and {SENDGRID_TIMESTAMP}")
    try:
        der = base64.b64decode(signature, validate=True)
        load_public_key(hook.public_key).verify(der, timestamp.encode() + body, ec.ECDSA(SHA256()))
    except (binascii.Error, ValueError, InvalidSignature):
        raise HookSignatureInvalid("the SendGrid signature does not verify") from None
    check_fresh(int(timestamp), now, max_age)


def check_mailgun(signing_key: str, timestamp: str, token: str, signature: str, now: datetime, max_age: int) -> None:
    expected = hmac.new(signing_key.encode(), (timestamp + token).encode(), sha256).hexdigest()
    if not hmac.compare_digest(expected.encode(), signature.lower().encode()):
        raise HookSignatureInvalid("the Mailgun signature does not verify")
    if not timestamp.isdigit():
        raise HookSignatureInvalid("the Mailgun timestamp is not a number")
    check_fresh(int(timestamp), now, max_age)
