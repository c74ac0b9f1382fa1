"""Whether addresses under the special-use domain names of RFC 2606/6761 are accepted.

``.test``, ``.invalid`` and ``.localhost`` (and any name under them) never reach a public mail server,
so by default an address there is refused wherever the product validates one (accounts, reply_to,
contacts, imports, suppressions), with a message naming the setting. ``NIMBUS_ALLOW_SPECIAL_USE_DOMAINS``
lets an operator accept them, to run the service against a staging or local mail world. ``.example``
is always accepted: RFC 6761 asks applications not to treat it specially (and the validation library
does not). Other reserved names (``.local``, ``.onion``, ``.arpa``) stay refused either way.

How the setting reaches the validators: address checks are pydantic validators (``kit.validators``),
run by FastAPI while it parses a request body and by plain ``model_validate`` calls, where no
``Settings`` object can be handed in. Reading ``get_settings()`` there would read the environment, not
the ``Settings`` the app or the worker was built with (``nimbus dev`` and the tests build their own),
and flipping the library's module-level ``TEST_ENVIRONMENT`` switch is one global for every caller.
So the policy is this module's own value, decided by the process's ``Settings``:

* the API: ``create_app(settings)`` installs ``SpecialUseMiddleware``, which sets a context variable
  from that app's settings for each request, so an app honours its own settings whatever else runs in
  the process (a test can build a second app with the setting off next to the suite's app);
* outside a request (the worker, the command line, the test set-up): the process default, set from
  the settings at start by ``configure_process``, which also logs a warning when the setting is on.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

import structlog
from starlette.types import ASGIApp, Receive, Scope, Send

from nimbus_api.config import Settings

log = structlog.get_logger(__name__)

REFUSED_BY_DEFAULT = ("test", "invalid", "localhost")
"""Top-level names refused unless the setting is on (``example`` is accepted anyway, see above)."""

_process_default = False
_request_policy: ContextVar[bool | None] = ContextVar("nimbus_special_use_domains", default=None)


def allowed() -> bool:
    """The policy in force here: the current request's app's, else the process default."""
    current = _request_policy.get()
    return _process_default if current is None else current


def set_process_default(allow: bool) -> None:
    global _process_default
    _process_default = allow


@contextmanager
def policy(allow: bool) -> Iterator[None]:
    """Validate under ``allow`` within the block (this task and what it starts), whatever the default."""
    token = _request_policy.set(allow)
    try:
        yield
    finally:
        _request_policy.reset(token)


def announce(settings: Settings, component: str) -> None:
    """Log, once at a component's start, that special-use names are accepted (a warning: production
    should not)."""
    if settings.allow_special_use_domains:
        log.warning(
            "special_use_domains_allowed",
            component=component,
            names=", ".join(f".{name}" for name in REFUSED_BY_DEFAULT),
            setting="NIMBUS_ALLOW_SPECIAL_USE_DOMAINS",
        )


def configure_process(settings: Settings, component: str) -> None:
    """At the start of a process (worker, command line): the default policy from ``settings``, announced."""
    set_process_default(settings.allow_special_use_domains)
    announce(settings, component)


class SpecialUseMiddleware:
    """Runs each request of an app under that app's policy (pure ASGI, so the context variable is set in
    the very task that parses the body)."""

    def __init__(self, app: ASGIApp, *, allow: bool) -> None:
        self.app = app
        self.allow = allow

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        token = _request_policy.set(self.allow)
        try:
            await self.app(scope, receive, send)
        finally:
            _request_policy.reset(token)


def refusal(domain: str, name: str) -> str:
    return (
        f"{domain} is under .{name}, a special-use domain name (RFC 6761) that no public mail server answers "
        "for; an operator can allow such addresses (a staging or local mail world) with "
        "NIMBUS_ALLOW_SPECIAL_USE_DOMAINS=true"
    )
