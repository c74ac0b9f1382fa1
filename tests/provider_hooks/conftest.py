"""Provider hooks against the running API: the inbox's mail loop (an inbox in a campaign, step 1 really
sent through the mail world's SMTP server) for the messages a notification is about, a loopback HTTP
server standing in for Amazon SNS (its signing certificate and the subscription confirmation), and an
app whose SNS URL pattern lets it fetch from there."""

from __future__ import annotations

import base64
import datetime as dt
import json
import secrets
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nimbus_api.api.app import create_app
from nimbus_api.config import Settings
from nimbus_api.credentials.vault import Vault
from nimbus_api.models import AccountDailyUsage, Suppression
from nimbus_api.provider_hooks import sns
from tests.conftest import build_app_state
from tests.inbox.conftest import Loop, campaigns, deps, loop, make_loop, make_runner, pool
from tests.servers.http_receiver import HttpReceiver, Received, Reply

__all__ = ["campaigns", "deps", "loop", "make_loop", "make_runner", "pool"]

TOPIC = "arn:aws:sns:us-east-1:123456789012:ses-notifications"


async def create_hook(loop: Loop, provider: str, **body: Any) -> tuple[str, str]:
    """A hook of the loop's workspace: ``(id, path)`` (the path of its URL, with the token)."""
    r = await loop.tenant.client.post("/v1/provider-hooks", json={"provider": provider, **body})
    assert r.status_code == 201, r.text
    url = r.json()["url"]
    return r.json()["id"], "/hooks/" + url.split("/hooks/", 1)[1]


async def usage(loop: Loop) -> tuple[int, int]:
    async with loop.sessionmaker() as session:
        row = (
            await session.execute(
                select(func.sum(AccountDailyUsage.bounces), func.sum(AccountDailyUsage.complaints)).where(
                    AccountDailyUsage.account_id == loop.inbox_id
                )
            )
        ).one()
        return int(row[0] or 0), int(row[1] or 0)


async def suppressed(loop: Loop, email: str) -> str | None:
    async with loop.sessionmaker() as session:
        return await session.scalar(
            select(Suppression.reason).where(
                Suppression.workspace_id == loop.tenant.workspace_id, Suppression.email == email.lower()
            )
        )


@dataclass
class FakeSns:
    """Amazon SNS as a hook sees it: a signing certificate at a URL, and a subscription to confirm."""

    receiver: HttpReceiver
    key: rsa.RSAPrivateKey
    client: httpx.AsyncClient
    app: Any

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.receiver.port}"

    @property
    def cert_url(self) -> str:
        return f"{self.base}/SimpleNotificationService-test.pem"

    def confirmations(self) -> list[Received]:
        return [r for r in self.receiver.requests if r.target.startswith("/confirm")]

    def message(
        self,
        kind: str,
        message: str,
        *,
        version: str = "1",
        topic: str = TOPIC,
        cert_url: str | None = None,
        timestamp: dt.datetime | None = None,
        key: rsa.RSAPrivateKey | None = None,
    ) -> dict[str, str]:
        moment = timestamp or dt.datetime.now(dt.UTC)
        fields = {
            "Type": kind,
            "MessageId": str(uuid.uuid4()),
            "TopicArn": topic,
            "Message": message,
            "Timestamp": moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z",
            "SignatureVersion": version,
            "SigningCertURL": cert_url or self.cert_url,
        }
        if kind == "Notification":
            fields["Subject"] = "Amazon SES Email Event Notification"
            fields["UnsubscribeURL"] = f"{self.base}/unsubscribe"
        else:
            token = secrets.token_hex(32)
            fields["Token"] = token
            fields["SubscribeURL"] = f"{self.base}/confirm?Action=ConfirmSubscription&Token={token}"
        algorithm = hashes.SHA1() if version == "1" else hashes.SHA256()
        signature = (key or self.key).sign(sns.string_to_sign(fields), padding.PKCS1v15(), algorithm)
        fields["Signature"] = base64.b64encode(signature).decode()
        return fields

    async def post(self, path: str, fields: dict[str, str], client: httpx.AsyncClient | None = None) -> httpx.Response:
        return await (client or self.client).post(
            path,
            content=json.dumps(fields).encode(),
            headers={"Content-Type": "text/plain; charset=UTF-8", "x-amz-sns-message-type": fields["Type"]},
        )


def _certificate(key: rsa.RSAPrivateKey) -> bytes:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sns.us-east-1.amazonaws.com")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM)


@pytest.fixture(scope="session")
def sns_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture
async def fake_sns(
    settings: Settings,
    engine: Any,
    sessionmaker: async_sessionmaker[AsyncSession],
    redis: Any,
    vault: Vault,
    sns_key: rsa.RSAPrivateKey,
) -> AsyncIterator[FakeSns]:
    pem = _certificate(sns_key)

    def behaviour(request: Received) -> Reply:
        if request.target.endswith(".pem"):
            return Reply(body=pem, headers=(("content-type", "application/x-pem-file"),))
        if request.target.startswith("/confirm"):
            return Reply(body=b"<ConfirmSubscriptionResponse/>", headers=(("content-type", "text/xml"),))
        return Reply(status=404, body=b"")

    own = settings.model_copy(update={"provider_hooks_sns_url_pattern": r"^http://127\.0\.0\.1:[0-9]+/"})
    app = create_app(own, state=build_app_state(own, engine, sessionmaker, redis, vault))
    async with (
        HttpReceiver(behaviour=behaviour) as receiver,
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://nimbus.test") as client,
    ):
        yield FakeSns(receiver=receiver, key=sns_key, client=client, app=app)
