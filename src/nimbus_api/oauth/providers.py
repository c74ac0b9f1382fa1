"""The OAuth providers, as configured by the operator (``NIMBUS_OAUTH_<PROVIDER>_*``).

Each provider names the scopes it asks for (the mail scopes the SMTP and IMAP logins need, plus OpenID's
``openid email profile`` for the address and display name), the ones a grant must hold to be accepted,
and where its mail servers are. The endpoint URLs default to the providers' own; an override points them
elsewhere (a test authorization server, a single-tenant Microsoft endpoint).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from typing_extensions import TypeAliasType

from nimbus_api.config import Settings
from nimbus_api.kit.crypto import Secret
from nimbus_api.oauth.errors import ProviderNotConfigured

OAuthProviderId = TypeAliasType("OAuthProviderId", Literal["google", "microsoft"])
PROVIDERS: tuple[OAuthProviderId, ...] = ("google", "microsoft")

GOOGLE_MAIL_SCOPE = "https://mail.google.com/"
MICROSOFT_SMTP_SCOPE = "https://outlook.office.com/SMTP.Send"
MICROSOFT_IMAP_SCOPE = "https://outlook.office.com/IMAP.AccessAsUser.All"
IDENTITY_SCOPES = ("openid", "email", "profile")


@dataclass(frozen=True)
class MailHost:
    host: str
    port: int
    mode: Literal["ssl", "starttls"]


@dataclass(frozen=True)
class Provider:
    id: OAuthProviderId
    client_id: str
    client_secret: Secret
    authorize_url: str
    token_url: str
    revoke_url: str | None
    scopes: tuple[str, ...]
    #: what the grant must hold (the provider may grant less than asked: a consent screen with checkboxes)
    required_scopes: tuple[str, ...]
    #: extra authorize parameters: Google gives a refresh token only with offline access and consent
    authorize_params: tuple[tuple[str, str], ...]
    smtp: MailHost
    imap: MailHost

    @property
    def scope(self) -> str:
        return " ".join(self.scopes)

    def missing_scopes(self, granted: str) -> list[str]:
        have = set(granted.split())
        return [s for s in self.required_scopes if s not in have]


def provider(settings: Settings, provider_id: str) -> Provider:
    """The provider's configuration; ``ProviderNotConfigured`` (409) while the operator set no client."""
    if provider_id == "google":
        cid, secret = settings.oauth_google_client_id, settings.oauth_google_client_secret
        if not cid or secret is None:
            raise ProviderNotConfigured("Google OAuth is not configured: set NIMBUS_OAUTH_GOOGLE_CLIENT_ID/_SECRET")
        return Provider(
            id="google",
            client_id=cid,
            client_secret=Secret(secret.get_secret_value()),
            authorize_url=settings.oauth_google_authorize_url,
            token_url=settings.oauth_google_token_url,
            revoke_url=settings.oauth_google_revoke_url,
            scopes=(GOOGLE_MAIL_SCOPE, *IDENTITY_SCOPES),
            required_scopes=(GOOGLE_MAIL_SCOPE,),
            authorize_params=(("access_type", "offline"), ("prompt", "consent"), ("include_granted_scopes", "true")),
            smtp=MailHost(
                settings.oauth_google_smtp_host, settings.oauth_google_smtp_port, settings.oauth_google_smtp_mode
            ),
            imap=MailHost(settings.oauth_google_imap_host, settings.oauth_google_imap_port, "ssl"),
        )
    if provider_id == "microsoft":
        cid, secret = settings.oauth_microsoft_client_id, settings.oauth_microsoft_client_secret
        if not cid or secret is None:
            raise ProviderNotConfigured(
                "Microsoft OAuth is not configured: set NIMBUS_OAUTH_MICROSOFT_CLIENT_ID/_SECRET"
            )
        return Provider(
            id="microsoft",
            client_id=cid,
            client_secret=Secret(secret.get_secret_value()),
            authorize_url=settings.oauth_microsoft_authorize_url,
            token_url=settings.oauth_microsoft_token_url,
            revoke_url=settings.oauth_microsoft_revoke_url,
            scopes=(MICROSOFT_SMTP_SCOPE, MICROSOFT_IMAP_SCOPE, "offline_access", *IDENTITY_SCOPES),
            required_scopes=(MICROSOFT_SMTP_SCOPE, MICROSOFT_IMAP_SCOPE),
            authorize_params=(("response_mode", "query"), ("prompt", "select_account")),
            smtp=MailHost(
                settings.oauth_microsoft_smtp_host,
                settings.oauth_microsoft_smtp_port,
                settings.oauth_microsoft_smtp_mode,
            ),
            imap=MailHost(settings.oauth_microsoft_imap_host, settings.oauth_microsoft_imap_port, "ssl"),
        )
    raise ProviderNotConfigured(f"unknown OAuth provider {provider_id!r}")


def redirect_uri(settings: Settings, provider_id: str) -> str:
    """The callback URL registered with the provider (README: OAuth accounts)."""
    return f"{settings.public_url.rstrip('/')}/v1/oauth/{provider_id}/callback"


def account_provider(provider_id: str, hosted_domain: str | None, email: str) -> str:
    """The account's provider preset (``providers.presets``): its starting daily limit follows from it
    (Google Workspace 40, consumer Gmail 20, Microsoft 365 30)."""
    if provider_id == "microsoft":
        return "office365"
    if hosted_domain or not email.lower().endswith(("@gmail.com", "@googlemail.com")):
        return "google_workspace"
    return "gmail"
