"""A real OAuth 2 authorization server on loopback for the XOAUTH2/OAUTHBEARER tests (authlib + Flask).

It runs werkzeug's threaded server in a daemon thread on ``127.0.0.1`` and a free port (plain http).
authlib's server side does the protocol: the authorization code grant with PKCE (S256 required), the
refresh token grant, client authentication by ``client_secret_post`` and ``client_secret_basic``, RFC 7009
revocation. RFC 7662 introspection is a plain route without client authentication, because Dovecot's
``introspection_mode = post`` and the test SMTP server post only ``token=...``.

There is no login page: the test chooses the user with ``login_hint=<email>`` on the authorize URL and
may ask for a denial with ``deny=1`` (the redirect then carries ``error=access_denied``).

Python API::

    server = OAuthTestServer().start()          # .stop() at the end
    server.issuer, server.authorize_url, server.token_url, server.revoke_url, server.introspect_url, server.jwks_url
    server.add_client("cid", "secret", ["http://127.0.0.1/cb"])   # -> TestClient
    server.add_user("a@example.com", "Ann", hosted_domain="example.com")  # -> TestUser
    server.add_user("b@example.com", imap_disabled=True)   # Dovecot refuses its tokens like Gmail with IMAP off
    server.granted_scope = "other"              # None: grant what was asked; a string: grant that instead
    server.access_token_lifetime = 2            # seconds, for new tokens
    server.revoke_status = 503                  # None: revoke; a status: answer it and revoke nothing
    server.refresh_status = 503                 # None: refresh; a status: refresh grants answer it
    server.authorize(client_id=..., redirect_uri=..., login_hint=..., scope=..., state=..., code_challenge=...)
        # follows the authorize redirect like a browser; -> AuthorizeResult(code, state, error, location)
    server.issue_tokens("cid", "a@example.com", scope="https://mail.google.com/")   # whole flow, -> token dict
    server.revoke_user(email)                   # every token of the user dies; a later refresh: invalid_grant
    server.revoke_refresh_token(refresh_token)
    server.expire_access_tokens()               # every access token issued so far is expired
    server.counters                             # {"token": n, "authorization_code": n, "refresh_token": n,
                                                #  "introspect": n, "revoke": n}
    server.public_jwk                           # the RS256 key that signs the id_tokens (JWK dict)

``introspect_url`` answers ``{"active": false}`` for an unknown, expired or revoked token; with
``?scope=X`` on the URL also for a token not granted X, and with ``?scope=X&scope=Y`` for a token granted
neither (how Dovecot and the SMTP server check scope: a Google token holds ``https://mail.google.com/``, a
Microsoft one ``https://outlook.office.com/SMTP.Send`` and ``.../IMAP.AccessAsUser.All``). ``?caller=NAME``
names who asks: ``introspections`` records (caller, email or None, active) for every call. For a user added
with ``imap_disabled`` an active answer also says ``"imap": "disabled"`` and ``"reason": <the refusal>``
(``GMAIL_IMAP_DISABLED``, Gmail's text, unless a string was given): the mail world's Dovecot then refuses
the login with that text, as Gmail does when IMAP is turned off (SMTP still accepts the token).

A client added with ``style="microsoft"`` behaves like Microsoft's identity platform: its id_tokens state
the address as ``preferred_username`` (no ``email`` claim, no hosted domain, a ``tid``), and each refresh
returns a new refresh token (the old one keeps working, as Microsoft's do until they expire). The
default ``style="google"`` keeps the first refresh token and states ``email``/``email_verified``/``hd``.

Token responses carry an ``id_token``: an RS256 JWT with ``iss``, ``aud`` (the client id), ``sub``,
``email``, ``email_verified``, ``name`` and ``hd`` when the user has a hosted domain.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlencode, urlparse

import httpx
from authlib.integrations.flask_oauth2 import AuthorizationServer
from authlib.oauth2 import OAuth2Error
from authlib.oauth2.rfc6749 import grants
from authlib.oauth2.rfc7009 import RevocationEndpoint
from authlib.oauth2.rfc7636 import CodeChallenge
from flask import Flask, jsonify, redirect, request
from joserfc import jwt
from joserfc.jwk import RSAKey
from werkzeug.serving import make_server

GMAIL_SCOPE = "https://mail.google.com/"
MS_SMTP_SCOPE = "https://outlook.office.com/SMTP.Send"
MS_IMAP_SCOPE = "https://outlook.office.com/IMAP.AccessAsUser.All"
#: Gmail's refusal of a login to an account with IMAP turned off (its tagged NO, after ``[ALERT]``)
GMAIL_IMAP_DISABLED = (
    "Your account is not enabled for IMAP use. Please visit your Gmail settings page and enable your account "
    "for IMAP access. (Failure)"
)
MS_SCOPE = f"{MS_SMTP_SCOPE} {MS_IMAP_SCOPE} offline_access openid email profile"


@dataclass
class TestClient:
    client_id: str
    client_secret: str
    redirect_uris: list[str]
    scope: str = ""  # empty: any scope
    style: str = "google"  # or "microsoft" (module docstring)

    __test__ = False

    # authlib's ClientMixin
    def get_client_id(self) -> str:
        return self.client_id

    def get_default_redirect_uri(self) -> str:
        return self.redirect_uris[0]

    def get_allowed_scope(self, scope: str | None) -> str:
        return scope or ""

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return redirect_uri in self.redirect_uris

    def check_client_secret(self, client_secret: str) -> bool:
        return secrets.compare_digest(client_secret, self.client_secret)

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        return method in ("client_secret_basic", "client_secret_post")

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code"

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type in ("authorization_code", "refresh_token")


@dataclass
class TestUser:
    email: str
    name: str
    hosted_domain: str | None = None
    revoked_before: float = 0.0  # tokens issued before this instant are dead
    imap_refusal: str | None = None  # IMAP refuses the tokens with this text (``add_user(imap_disabled=...)``)

    __test__ = False

    def get_user_id(self) -> str:
        return self.email


@dataclass
class AuthCode:
    code: str
    client_id: str
    redirect_uri: str
    scope: str
    email: str
    code_challenge: str | None
    code_challenge_method: str | None
    expires_at: float

    def get_redirect_uri(self) -> str:
        return self.redirect_uri

    def get_scope(self) -> str:
        return self.scope

    def is_expired(self) -> bool:
        return time.time() > self.expires_at

    def get_code_challenge(self) -> str | None:
        return self.code_challenge

    def get_code_challenge_method(self) -> str | None:
        return self.code_challenge_method

    def get_nonce(self) -> None:
        return None

    def get_auth_time(self) -> None:
        return None


@dataclass
class Token:
    access_token: str
    refresh_token: str | None
    client_id: str
    email: str
    scope: str
    issued_at: float
    expires_at: float
    revoked: bool = False
    refresh_revoked: bool = False

    # authlib's TokenMixin
    def check_client(self, client: TestClient) -> bool:
        return client.client_id == self.client_id

    def get_scope(self) -> str:
        return self.scope

    def get_expires_in(self) -> int:
        return int(self.expires_at - self.issued_at)

    def is_expired(self) -> bool:
        return time.time() >= self.expires_at

    def is_revoked(self) -> bool:
        return self.revoked


@dataclass(frozen=True)
class AuthorizeResult:
    location: str
    code: str | None
    state: str | None
    error: str | None


def pkce_pair() -> tuple[str, str]:
    """(code_verifier, S256 code_challenge)."""
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class OAuthTestServer:
    host: str = "127.0.0.1"
    port: int = 0
    access_token_lifetime: int = 3600
    granted_scope: str | None = None
    revoke_status: int | None = None
    refresh_status: int | None = None
    clients: dict[str, TestClient] = field(default_factory=dict)
    users: dict[str, TestUser] = field(default_factory=dict)
    codes: dict[str, AuthCode] = field(default_factory=dict)
    tokens: dict[str, Token] = field(default_factory=dict)  # by access token
    counters: dict[str, int] = field(
        default_factory=lambda: {"token": 0, "authorization_code": 0, "refresh_token": 0, "introspect": 0, "revoke": 0}
    )
    #: every introspection: (the ``caller`` of the URL, the token's email or None, answered active)
    introspections: list[tuple[str, str | None, bool]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _thread: threading.Thread | None = None
    _http: Any = None

    def __post_init__(self) -> None:
        self._key = RSAKey.generate_key(2048)
        self._kid = secrets.token_hex(8)
        self.app = self._build_app()

    # -- configuration --------------------------------------------------------------------------------

    @property
    def issuer(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def authorize_url(self) -> str:
        return f"{self.issuer}/authorize"

    @property
    def token_url(self) -> str:
        return f"{self.issuer}/token"

    @property
    def revoke_url(self) -> str:
        return f"{self.issuer}/revoke"

    @property
    def introspect_url(self) -> str:
        return f"{self.issuer}/introspect"

    @property
    def jwks_url(self) -> str:
        return f"{self.issuer}/jwks"

    @property
    def public_jwk(self) -> dict[str, Any]:
        jwk = dict(self._key.as_dict(private=False))
        jwk.update(kid=self._kid, alg="RS256", use="sig")
        return jwk

    def add_client(
        self, client_id: str, client_secret: str, redirect_uris: list[str], *, style: str = "google"
    ) -> TestClient:
        client = TestClient(client_id, client_secret, list(redirect_uris), style=style)
        self.clients[client_id] = client
        return client

    def add_user(
        self, email: str, name: str = "", hosted_domain: str | None = None, *, imap_disabled: bool | str = False
    ) -> TestUser:
        """``imap_disabled``: the user's tokens are live but IMAP refuses them like Gmail does for an account
        with IMAP turned off (``True``: Gmail's alert; a string: that text instead)."""
        refusal = (GMAIL_IMAP_DISABLED if imap_disabled is True else imap_disabled) or None
        user = TestUser(email.lower(), name or email.split("@")[0], hosted_domain, imap_refusal=refusal)
        self.users[user.email] = user
        return user

    def revoke_user(self, email: str) -> None:
        with self._lock:
            for token in self.tokens.values():
                if token.email == email.lower():
                    token.revoked = token.refresh_revoked = True

    def revoke_refresh_token(self, refresh_token: str) -> None:
        with self._lock:
            for token in self.tokens.values():
                if token.refresh_token == refresh_token:
                    token.refresh_revoked = True

    def expire_access_tokens(self) -> None:
        with self._lock:
            now = time.time() - 1
            for token in self.tokens.values():
                token.expires_at = min(token.expires_at, now)

    def token_record(self, access_token: str) -> Token | None:
        return self.tokens.get(access_token)

    # -- lifecycle ------------------------------------------------------------------------------------

    def start(self) -> OAuthTestServer:
        if not self.port:
            self.port = _free_port()
        self._http = make_server(self.host, self.port, self.app, threaded=True)
        self._thread = threading.Thread(target=self._http.serve_forever, name="oauth-test-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None

    # -- browser-side helpers -------------------------------------------------------------------------

    def authorize(
        self,
        *,
        client_id: str,
        redirect_uri: str,
        login_hint: str,
        scope: str = GMAIL_SCOPE,
        state: str | None = None,
        code_challenge: str | None = None,
        code_challenge_method: str = "S256",
        deny: bool = False,
        extra: dict[str, str] | None = None,
    ) -> AuthorizeResult:
        """GET the authorize URL as a browser would and read the redirect (code + state, or error)."""
        params = {
            "response_type": "code",
            "client_id": client_id,
            "redirect_uri": redirect_uri,
            "scope": scope,
            "login_hint": login_hint,
        }
        if state is not None:
            params["state"] = state
        if code_challenge is not None:
            params.update(code_challenge=code_challenge, code_challenge_method=code_challenge_method)
        if deny:
            params["deny"] = "1"
        params.update(extra or {})
        return self.follow(f"{self.authorize_url}?{urlencode(params)}")

    def follow(self, url: str) -> AuthorizeResult:
        """GET a full authorize URL (e.g. one the API built) and read the redirect."""
        reply = httpx.get(url, follow_redirects=False, timeout=10)
        location = reply.headers.get("location", "")
        if reply.status_code not in (302, 303) or not location:
            return AuthorizeResult(location="", code=None, state=None, error=f"http {reply.status_code}: {reply.text}")
        query = parse_qs(urlparse(location).query)
        first = {k: v[0] for k, v in query.items()}
        return AuthorizeResult(location, first.get("code"), first.get("state"), first.get("error"))

    def issue_tokens(self, client_id: str, email: str, scope: str = GMAIL_SCOPE) -> dict[str, Any]:
        """The whole code flow for ``email`` (PKCE, client_secret_post); the token endpoint's JSON."""
        client = self.clients[client_id]
        verifier, challenge = pkce_pair()
        result = self.authorize(
            client_id=client_id,
            redirect_uri=client.redirect_uris[0],
            login_hint=email,
            scope=scope,
            state=secrets.token_urlsafe(8),
            code_challenge=challenge,
        )
        assert result.code, result
        reply = httpx.post(
            self.token_url,
            data={
                "grant_type": "authorization_code",
                "code": result.code,
                "redirect_uri": client.redirect_uris[0],
                "client_id": client_id,
                "client_secret": client.client_secret,
                "code_verifier": verifier,
            },
            timeout=10,
        )
        reply.raise_for_status()
        return dict(reply.json())

    def refresh(self, client_id: str, refresh_token: str) -> httpx.Response:
        client = self.clients[client_id]
        return httpx.post(
            self.token_url,
            data={"grant_type": "refresh_token", "refresh_token": refresh_token},
            auth=(client_id, client.client_secret),
            timeout=10,
        )

    # -- the Flask app --------------------------------------------------------------------------------

    def _id_token(self, client: TestClient, user: TestUser) -> str:
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "aud": client.client_id,
            "sub": hashlib.sha256(user.email.encode()).hexdigest()[:21],
            "name": user.name,
            "iat": now,
            "exp": now + 3600,
        }
        if client.style == "microsoft":  # the UPN; ``email`` is an optional claim an app may not get
            claims |= {"preferred_username": user.email, "tid": "9188040d-6c67-4c5b-b112-36a304b66dad"}
        else:
            claims |= {"email": user.email, "email_verified": True}
            if user.hosted_domain:
                claims["hd"] = user.hosted_domain
        return jwt.encode({"alg": "RS256", "kid": self._kid}, claims, self._key)

    def _generate_token(
        self,
        grant_type: str,
        client: TestClient,
        user: TestUser | None = None,
        scope: str | None = None,
        expires_in: int | None = None,
        include_refresh_token: bool = True,
        **_: Any,
    ) -> dict[str, Any]:
        assert user is not None
        granted = self.granted_scope if self.granted_scope is not None else (scope or "")
        lifetime = self.access_token_lifetime
        token: dict[str, Any] = {
            "token_type": "Bearer",
            "access_token": ("EwB" if client.style == "microsoft" else "ya29.") + secrets.token_urlsafe(32),
            "expires_in": lifetime,
            "scope": granted,
        }
        if include_refresh_token or (grant_type == "refresh_token" and client.style == "microsoft"):
            token["refresh_token"] = ("M." if client.style == "microsoft" else "1//") + secrets.token_urlsafe(32)
        token["id_token"] = self._id_token(client, user)
        return token

    def _save_token(self, token: dict[str, Any], req: Any) -> None:
        now = time.time()
        refresh_token = token.get("refresh_token")
        with self._lock:
            if refresh_token is None:  # a refresh: the old refresh token stays valid (Google's behaviour)
                refresh_token = request.form.get("refresh_token")
            self.tokens[token["access_token"]] = Token(
                access_token=token["access_token"],
                refresh_token=refresh_token,
                client_id=req.client.client_id,
                email=req.user.email,
                scope=token.get("scope", ""),
                issued_at=now,
                expires_at=now + int(token["expires_in"]),
            )

    def _build_app(self) -> Flask:
        app = Flask("oauth-test-server")
        world = self

        def query_client(client_id: str) -> TestClient | None:
            return world.clients.get(client_id)

        server = AuthorizationServer(app, query_client=query_client, save_token=self._save_token)
        server.register_token_generator("default", self._generate_token)

        class CodeGrant(grants.AuthorizationCodeGrant):
            TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "client_secret_post"]

            def save_authorization_code(self, code: str, req: Any) -> None:
                world.codes[code] = AuthCode(
                    code=code,
                    client_id=req.client.client_id,
                    redirect_uri=request.args.get("redirect_uri") or req.client.get_default_redirect_uri(),
                    scope=request.args.get("scope") or "",
                    email=req.user.email,
                    code_challenge=_arg(req, "code_challenge"),
                    code_challenge_method=_arg(req, "code_challenge_method"),
                    expires_at=time.time() + 300,
                )

            def query_authorization_code(self, code: str, client: TestClient) -> AuthCode | None:
                item = world.codes.get(code)
                if item is None or item.client_id != client.client_id or item.is_expired():
                    return None
                return item

            def delete_authorization_code(self, authorization_code: AuthCode) -> None:
                world.codes.pop(authorization_code.code, None)

            def authenticate_user(self, authorization_code: AuthCode) -> TestUser | None:
                return world.users.get(authorization_code.email)

        class RefreshGrant(grants.RefreshTokenGrant):
            TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "client_secret_post"]
            INCLUDE_NEW_REFRESH_TOKEN = False

            def authenticate_refresh_token(self, refresh_token: str) -> Token | None:
                for token in world.tokens.values():
                    if token.refresh_token == refresh_token:
                        return None if token.refresh_revoked else token
                return None

            def authenticate_user(self, refresh_token: Token) -> TestUser | None:
                return world.users.get(refresh_token.email)

            def revoke_old_credential(self, refresh_token: Token) -> None:
                return None

        class Revocation(RevocationEndpoint):
            CLIENT_AUTH_METHODS = ["client_secret_basic", "client_secret_post"]

            def query_token(self, token_string: str, token_type_hint: str | None) -> Token | None:
                if token_string in world.tokens:
                    return world.tokens[token_string]
                for token in world.tokens.values():
                    if token.refresh_token == token_string:
                        return token
                return None

            def revoke_token(self, token: Token, req: Any) -> None:
                # Google revokes the whole grant (the refresh token and its access tokens).
                with world._lock:
                    for other in world.tokens.values():
                        if other.refresh_token == token.refresh_token:
                            other.revoked = other.refresh_revoked = True
                    token.revoked = token.refresh_revoked = True

        server.register_grant(CodeGrant, [CodeChallenge(required=True)])
        server.register_grant(RefreshGrant)
        server.register_endpoint(Revocation)

        @app.route("/authorize", methods=["GET"])
        def authorize() -> Any:
            user = world.users.get((request.args.get("login_hint") or "").lower())
            if user is None and not request.args.get("deny"):
                return jsonify(error="unknown_user"), 400
            try:
                grant = server.get_consent_grant(end_user=user)
            except OAuth2Error as error:  # bad client, redirect URI, missing PKCE...
                return server.handle_error_response(None, error)
            if not request.args.get("code_challenge") or request.args.get("code_challenge_method") != "S256":
                # PKCE with S256 is required (Google's and Microsoft's public-client rule, here for every client)
                query = {"error": "invalid_request", "error_description": "PKCE (S256) is required"}
                if request.args.get("state"):
                    query["state"] = request.args["state"]
                return redirect(f"{request.args['redirect_uri']}?{urlencode(query)}")
            granted = None if request.args.get("deny") else user
            return server.create_authorization_response(grant=grant, grant_user=granted)

        @app.route("/token", methods=["POST"])
        def issue_token() -> Any:
            with world._lock:
                world.counters["token"] += 1
                grant = request.form.get("grant_type", "")
                if grant in world.counters:
                    world.counters[grant] += 1
            if grant == "refresh_token" and world.refresh_status is not None:  # the endpoint is failing
                return jsonify(error="temporarily_unavailable"), world.refresh_status
            return server.create_token_response()

        @app.route("/revoke", methods=["POST"])
        def revoke() -> Any:
            with world._lock:
                world.counters["revoke"] += 1
            if world.revoke_status is not None:  # the endpoint is failing
                return jsonify(error="temporarily_unavailable"), world.revoke_status
            return server.create_endpoint_response(Revocation.ENDPOINT_NAME)

        @app.route("/introspect", methods=["GET", "POST"])
        def introspect() -> Any:
            with world._lock:
                world.counters["introspect"] += 1
            value = request.form.get("token") or request.args.get("token") or ""
            auth = request.headers.get("Authorization", "")
            if not value and auth.lower().startswith("bearer "):
                value = auth[7:]
            token = world.tokens.get(value)
            caller = request.args.get("caller", "")
            if not _introspected_active(world, token, request.args.getlist("scope")):
                with world._lock:
                    world.introspections.append((caller, token.email if token else None, False))
                return jsonify(active=False)
            assert token is not None
            with world._lock:
                world.introspections.append((caller, token.email, True))
            info: dict[str, Any] = {
                "active": True,
                "scope": token.scope,
                "username": token.email,
                "email": token.email,
                "client_id": token.client_id,
                "token_type": "Bearer",
                "exp": int(token.expires_at),
                "iat": int(token.issued_at),
            }
            user = world.users.get(token.email)
            if user is not None and user.imap_refusal:  # Dovecot refuses the login (tests/servers/dovecot.py)
                info |= {"imap": "disabled", "reason": user.imap_refusal}
            return jsonify(info)

        @app.route("/jwks", methods=["GET"])
        def jwks() -> Any:
            return jsonify(keys=[world.public_jwk])

        return app


def _introspected_active(world: OAuthTestServer, token: Token | None, acceptable: list[str]) -> bool:
    """Live, and (``?scope=`` on the URL, as the mail servers of the mail world call it) granted one of
    the acceptable scopes."""
    if token is None or token.revoked or token.is_expired():
        return False
    if acceptable and not set(acceptable) & set(token.scope.split()):
        return False
    user = world.users.get(token.email)
    return not (user is not None and token.issued_at < user.revoked_before)


def _arg(req: Any, name: str) -> str | None:
    # The authorize request is a GET: its parameters are the query string of the Flask request.
    return request.args.get(name)
