"""The problems the hook management API and the public ingest answer with (stable codes)."""

from __future__ import annotations

from nimbus_api.kit.problems import NotFound, Problem

NOT_FOUND = "provider_hook.not_found"
MALFORMED = "provider_hook.malformed"
UNAUTHORIZED = "provider_hook.unauthorized"
SIGNATURE_INVALID = "provider_hook.signature_invalid"
STALE = "provider_hook.stale"
REPLAYED = "provider_hook.replayed"
CERT_URL_REFUSED = "provider_hook.cert_url_refused"
TOPIC_MISMATCH = "provider_hook.topic_mismatch"
UPSTREAM_FAILED = "provider_hook.upstream_failed"


class ProviderHookNotFound(NotFound):
    """No hook of this workspace by that id; on the public path: no hook for that provider and token."""

    code = NOT_FOUND
    title = "No such provider hook"


class HookPayloadMalformed(Problem):
    """The notification is not the provider's format (not JSON, fields missing or of the wrong type)."""

    status = 400
    code = MALFORMED
    title = "The notification cannot be read"


class HookUnauthorized(Problem):
    """The hook has HTTP basic credentials and the request did not carry them."""

    status = 401
    code = UNAUTHORIZED
    title = "Missing or wrong credentials for this hook"

    def __init__(self, detail: str | None = None) -> None:
        super().__init__(detail, headers={"WWW-Authenticate": 'Basic realm="nimbus provider hook"'})


class HookSignatureInvalid(Problem):
    status = 403
    code = SIGNATURE_INVALID
    title = "The notification's signature does not verify"


class HookStale(Problem):
    """The signed timestamp is outside ``NIMBUS_PROVIDER_HOOKS_MAX_AGE_SECONDS``: a replay, or a clock off."""

    status = 403
    code = STALE
    title = "The notification is too old (or from the future)"


class HookReplayed(Problem):
    """A Mailgun signature token seen before: the same signed request sent again."""

    status = 403
    code = REPLAYED
    title = "The notification was already received"


class HookCertUrlRefused(Problem):
    """An SNS SigningCertURL or SubscribeURL that is not Amazon SNS's (``NIMBUS_PROVIDER_HOOKS_SNS_URL_PATTERN``)."""

    status = 403
    code = CERT_URL_REFUSED
    title = "The SNS certificate or subscription URL is not allowed"


class HookTopicMismatch(Problem):
    status = 403
    code = TOPIC_MISMATCH
    title = "The SNS topic is not the one this hook is pinned to"


class HookUpstreamFailed(Problem):
    """The SNS signing certificate could not be fetched, or the subscription could not be confirmed."""

    status = 502
    code = UPSTREAM_FAILED
    title = "Amazon SNS could not be reached"
