"""One POST of a signed body to a receiver, through the egress policy, and what came of it.

Built on ``httpcore`` (the connection layer under httpx) so the policy sits in the one place every
connection passes: ``EgressBackend.connect_tcp`` resolves the URL's host with our resolver, refuses
unless every address passes the policy, and connects to a checked address. TLS is then verified
against the URL's host name (httpcore's ``server_hostname``), and connections are pooled per URL
origin, so a kept-alive connection is one that was checked when it was opened. Redirects are never
followed (httpcore does not follow them; a 3xx is a failed attempt). One deadline covers the whole
attempt, connect to the last byte read: ``NIMBUS_WEBHOOK_TIMEOUT_SECONDS``.

An attempt ends as an ``Outcome``: the status code, the latency, the first 2 KB of the answer, and on
failure an error class: ``timeout``, ``connect_refused``, ``connect_error``, ``tls``, ``protocol``,
``egress_refused``, ``unresolvable``, ``redirect``, ``http_status``, ``gone`` (410).
"""

from __future__ import annotations

import asyncio
import ssl
import time
import typing
from dataclasses import dataclass

import dns.asyncresolver
import httpcore
import httpx

from nimbus_api.kit.egress import EgressPolicy
from nimbus_api.webhooks.errors import WebhookUrlRefused
from nimbus_api.webhooks.urls import allowed_addresses, check_static

BODY_KEPT = 2048
BODY_READ = 64 * 1024
USER_AGENT = b"nimbus_api-webhooks/1"


class EgressRefused(Exception):
    """A connection the policy does not allow; raised before any socket is opened."""

    def __init__(self, refusal: WebhookUrlRefused) -> None:
        super().__init__(refusal.detail)
        self.error_class = "unresolvable" if refusal.extra.get("reason") == "unresolvable" else "egress_refused"


class EgressBackend(httpcore.AsyncNetworkBackend):
    def __init__(self, policy: EgressPolicy, resolver: dns.asyncresolver.Resolver) -> None:
        self.policy = policy
        self.resolver = resolver
        self.inner = httpcore.AnyIOBackend()
        self.connections = 0

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: typing.Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        if not self.policy.web_port_allowed(port):
            raise EgressRefused(WebhookUrlRefused("port", f"port {port} is not allowed"))
        try:
            addresses = await allowed_addresses(self.policy, self.resolver, host)
        except WebhookUrlRefused as refusal:
            raise EgressRefused(refusal) from None
        failure: Exception | None = None
        for address in addresses:
            try:
                stream = await self.inner.connect_tcp(str(address), port, timeout, local_address, socket_options)
            except httpcore.ConnectError as exc:
                failure = exc
                continue
            self.connections += 1
            return stream
        assert failure is not None
        raise failure

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: typing.Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise EgressRefused(WebhookUrlRefused("host", "unix sockets are not webhook receivers"))

    async def sleep(self, seconds: float) -> None:
        await self.inner.sleep(seconds)


@dataclass(frozen=True)
class Outcome:
    status_code: int | None
    latency_ms: int
    body: str | None
    error_class: str | None
    error: str | None
    retry_after: str | None = None
    abort: bool = False

    @property
    def ok(self) -> bool:
        return self.error_class is None


def _text(raw: bytes) -> str:
    return raw[:BODY_KEPT].decode("utf-8", errors="replace").replace("\x00", "\ufffd")


def _cause_chain(exc: BaseException) -> typing.Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def classify(exc: BaseException) -> str:
    chain = list(_cause_chain(exc))
    if any(isinstance(e, ssl.SSLError | ssl.CertificateError) for e in chain):
        return "tls"
    if any(isinstance(e, TimeoutError | httpcore.TimeoutException) for e in chain):
        return "timeout"
    if any(isinstance(e, ConnectionRefusedError) for e in chain):
        return "connect_refused"
    if isinstance(exc, httpcore.ConnectError):
        return "connect_refused" if "refused" in str(exc).lower() else "connect_error"
    return "protocol"


def _short(exc: BaseException, error_class: str) -> str:
    text = str(exc).strip() or type(exc).__name__
    return f"{error_class}: {text}"[:300]


class WebhookTransport:
    """A process's HTTP client for deliveries: one connection pool, the egress policy inside it."""

    def __init__(
        self,
        *,
        policy: EgressPolicy,
        resolver: dns.asyncresolver.Resolver,
        tls: ssl.SSLContext,
        timeout: float,
        allow_http: bool,
        max_connections: int = 256,
    ) -> None:
        self.policy = policy
        self.timeout = timeout
        self.allow_http = allow_http
        self.backend = EgressBackend(policy, resolver)
        self.pool = httpcore.AsyncConnectionPool(
            ssl_context=tls,
            max_connections=max_connections,
            max_keepalive_connections=max_connections,
            keepalive_expiry=30.0,
            retries=0,
            network_backend=self.backend,
        )

    async def close(self) -> None:
        await self.pool.aclose()

    async def post(self, url: str, headers: list[tuple[bytes, bytes]], body: bytes) -> Outcome:
        started = time.perf_counter()

        def elapsed() -> int:
            return int((time.perf_counter() - started) * 1000)

        try:
            check_static(url, policy=self.policy, allow_http=self.allow_http)
            target = httpx.URL(url)
        except WebhookUrlRefused as refusal:
            return Outcome(None, elapsed(), None, "egress_refused", f"egress_refused: {refusal.detail}"[:300])
        except httpx.InvalidURL as exc:
            return Outcome(None, elapsed(), None, "egress_refused", f"egress_refused: {exc}"[:300])
        request_url = httpcore.URL(
            scheme=target.raw_scheme, host=target.raw_host, port=target.port, target=target.raw_path
        )
        host_header = target.netloc
        all_headers = [
            (b"host", host_header),
            (b"content-type", b"application/json"),
            (b"user-agent", USER_AGENT),
            *headers,
        ]
        limits = {"connect": self.timeout, "read": self.timeout, "write": self.timeout, "pool": self.timeout}
        try:
            async with asyncio.timeout(self.timeout):
                async with self.pool.stream(
                    "POST", request_url, headers=all_headers, content=body, extensions={"timeout": limits}
                ) as response:
                    raw = b""
                    async for chunk in response.aiter_stream():
                        raw += chunk
                        if len(raw) >= BODY_READ:
                            break
                    status = response.status
                    answer = {k.lower(): v for k, v in response.headers}
        except EgressRefused as refusal:
            return Outcome(None, elapsed(), None, refusal.error_class, f"{refusal.error_class}: {refusal}"[:300])
        except (TimeoutError, httpcore.TimeoutException):
            return Outcome(None, elapsed(), None, "timeout", f"timeout: no complete answer within {self.timeout:g} s")
        except (httpcore.NetworkError, httpcore.ProtocolError, OSError) as exc:
            error_class = classify(exc)
            return Outcome(None, elapsed(), None, error_class, _short(exc, error_class))
        latency = elapsed()
        text = _text(raw) if raw else None
        retry_after = answer.get(b"retry-after", b"").decode("latin-1") or None
        abort = answer.get(b"webhook-delivery", b"").decode("latin-1").strip().lower() == "abort-message"
        if 200 <= status < 300:
            return Outcome(status, latency, text, None, None)
        if 300 <= status < 400:
            error_class, error = "redirect", f"redirect: answered {status}; redirects are not followed"
        elif status == 410:
            error_class, error = "gone", "gone: answered 410, the endpoint is disabled"
        else:
            error_class, error = "http_status", f"http_status: answered {status}"
        return Outcome(status, latency, text, error_class, error, retry_after=retry_after, abort=abort)
