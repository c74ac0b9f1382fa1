from __future__ import annotations

from typing import Literal

from nimbus_api.kit.problems import NotFound, Problem

UrlRefusal = Literal["scheme", "credentials", "host", "port", "address", "unresolvable"]


class WebhookEndpointNotFound(NotFound):
    code = "webhook_endpoint.not_found"
    title = "No such webhook endpoint in this workspace"


class WebhookUrlRefused(Problem):
    """The URL is one deliveries may not be sent to. ``reason`` says which rule refused it; the detail
    names the host only, never an address it resolved to."""

    status = 422
    code = "webhook_endpoint.url_refused"
    title = "The webhook URL is not allowed"

    def __init__(self, reason: UrlRefusal, detail: str) -> None:
        super().__init__(detail, extra={"reason": reason})
