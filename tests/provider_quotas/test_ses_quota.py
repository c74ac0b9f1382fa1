"""The SES send quota against moto's SES server on loopback (IAM authentication on, so a wrong key is
refused as by SES): credentials set through the API (write-only), the worker's refresh reads the quota,
the daily limit is kept under it, and a refused key is a recorded error, never a leaked secret."""

from __future__ import annotations

import json
import logging
import socket
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta

import boto3
import pytest
from moto.core.authorization import enable_iam_authentication
from moto.server import ThreadedMotoServer
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from nimbus_api.config import Settings
from nimbus_api.credentials.vault import Vault
from nimbus_api.kit.egress import EgressPolicy
from nimbus_api.kit.net import build_net_context
from nimbus_api.models import AccountEvent, CredentialAccess, EmailAccount
from nimbus_api.provider_quotas.service import RefreshConfig, refresh_due, refresh_one
from nimbus_api.provider_quotas.tasks import refresh_provider_quotas
from nimbus_api.sending.mx import MxChecker
from nimbus_api.smtp.pool import SmtpPool
from nimbus_api.worker.context import WorkerResources
from tests.conftest import Tenant, account_payload

REGION = "eu-west-1"


@dataclass(frozen=True)
class Ses:
    url: str
    access_key_id: str
    secret_access_key: str


@pytest.fixture(scope="module")
def ses() -> Iterator[Ses]:
    """moto's server on a free loopback port, with one IAM user allowed ses:GetSendQuota, then IAM
    authentication switched on (moto accepts any key until then)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    url = f"http://127.0.0.1:{port}"
    try:
        iam = boto3.client(
            "iam", endpoint_url=url, region_name="us-east-1", aws_access_key_id="setup", aws_secret_access_key="setup"
        )
        iam.create_user(UserName="nimbus-quota")
        document = {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": "ses:GetSendQuota", "Resource": "*"}],
        }
        policy = iam.create_policy(PolicyName="quota-read", PolicyDocument=json.dumps(document))
        iam.attach_user_policy(UserName="nimbus-quota", PolicyArn=policy["Policy"]["Arn"])
        key = iam.create_access_key(UserName="nimbus-quota")["AccessKey"]
        with enable_iam_authentication():
            yield Ses(url, key["AccessKeyId"], key["SecretAccessKey"])
    finally:
        server.stop()


def _config(settings: Settings, ses: Ses, **overrides: object) -> RefreshConfig:
    return RefreshConfig(
        net=build_net_context(settings), endpoint_url=ses.url, timeout=5, interval=timedelta(hours=1), **overrides
    )  # type: ignore[arg-type]


async def _inbox(tenant: Tenant, daily_send_limit: int) -> uuid.UUID:
    r = await tenant.client.post(
        "/v1/email-accounts", json=account_payload(imap=None, daily_send_limit=daily_send_limit)
    )
    assert r.status_code == 201, r.text
    return uuid.UUID(r.json()["id"])


async def test_the_quota_is_read_and_the_limit_kept_under_it(
    tenant: Tenant, ses: Ses, settings: Settings, sessionmaker: async_sessionmaker[AsyncSession], vault: Vault
) -> None:
    inbox = await _inbox(tenant, 500)
    body = {
        "ses_api": {"access_key_id": ses.access_key_id, "secret_access_key": ses.secret_access_key, "region": REGION}
    }
    r = await tenant.client.patch(f"/v1/email-accounts/{inbox}", json=body)
    assert r.status_code == 200, r.text
    shown = r.json()
    assert shown["ses_api_configured"] is True
    assert shown["provider_quota"] == {
        "provider": "ses",
        "region": REGION,
        "max_24_hour_send": None,
        "sent_last_24_hours": None,
        "max_send_rate": None,
        "read_at": None,
        "checked_at": None,  # due now
        "error_code": None,
        "error_detail": None,
    }
    assert ses.secret_access_key not in r.text and ses.access_key_id not in r.text

    counts = await refresh_due(sessionmaker, vault, _config(settings, ses))
    assert counts["ok"] >= 1
    got = (await tenant.client.get(f"/v1/email-accounts/{inbox}")).json()
    quota = got["provider_quota"]
    assert quota["max_24_hour_send"] == 200  # moto's sandbox quota
    assert quota["max_send_rate"] == 1
    assert quota["sent_last_24_hours"] == 0
    assert quota["read_at"] is not None and quota["error_code"] is None
    assert got["daily_send_limit"] == 200  # lowered from 500 to the quota
    events = (await tenant.client.get(f"/v1/email-accounts/{inbox}/events")).json()["data"]
    lowered = [e for e in events if e["kind"] == "daily_limit_lowered"]
    assert lowered and lowered[0]["detail"] == {"from": 500, "to": 200, "reason": "ses_max_24_hour_send"}
    assert lowered[0]["actor"] == "system:provider_quota"

    # A person may lower it further, not raise it above the quota; a refresh within the hour reads nothing.
    assert (await tenant.client.patch(f"/v1/email-accounts/{inbox}", json={"daily_send_limit": 150})).status_code == 200
    refused = await tenant.client.patch(f"/v1/email-accounts/{inbox}", json={"daily_send_limit": 300})
    assert refused.status_code == 422 and refused.json()["errors"][0]["field"] == "daily_send_limit"
    async with sessionmaker() as session:
        before = (await session.get_one(EmailAccount, inbox)).provider_quota_checked_at
    await refresh_due(sessionmaker, vault, _config(settings, ses))
    async with sessionmaker() as session:
        account = await session.get_one(EmailAccount, inbox)
        audits = list(
            await session.scalars(select(CredentialAccess.purpose).where(CredentialAccess.account_id == inbox))
        )
    assert account.provider_quota_checked_at == before
    assert account.daily_send_limit == 150
    assert audits.count("provider_quota") == 1  # one decrypt, audited

    # Removing the credentials removes the quota and its secret.
    gone = (await tenant.client.patch(f"/v1/email-accounts/{inbox}", json={"ses_api": None})).json()
    assert gone["ses_api_configured"] is False and gone["provider_quota"] is None


@pytest.mark.parametrize("wrong", ["secret", "key"])
async def test_a_refused_key_is_a_recorded_error_without_the_secret(
    wrong: str,
    tenant: Tenant,
    ses: Ses,
    settings: Settings,
    sessionmaker: async_sessionmaker[AsyncSession],
    vault: Vault,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.DEBUG)  # everything the product logs, at any level
    caplog.set_level(logging.INFO, logger="moto")  # the test server's own request dumps are not the product's
    inbox = await _inbox(tenant, 100)
    key_id = ses.access_key_id if wrong == "secret" else "AKIA" + uuid.uuid4().hex[:16].upper()
    secret = "wrong-" + uuid.uuid4().hex
    body = {"ses_api": {"access_key_id": key_id, "secret_access_key": secret, "region": REGION}}
    assert (await tenant.client.patch(f"/v1/email-accounts/{inbox}", json=body)).status_code == 200
    assert await refresh_one(sessionmaker, vault, _config(settings, ses), inbox) is False
    r = await tenant.client.get(f"/v1/email-accounts/{inbox}")
    quota = r.json()["provider_quota"]
    assert quota["error_code"] == "ses.auth_failed"
    assert "access key id and secret" in quota["error_detail"]
    assert quota["checked_at"] is not None and quota["read_at"] is None
    assert r.json()["daily_send_limit"] == 100
    printed = capsys.readouterr()  # structlog's own output (no stdlib handler is configured in tests)
    assert "provider_quota_failed" in printed.out + printed.err + caplog.text  # the failure was logged...
    for text in (r.text, caplog.text, printed.out, printed.err, *(str(rec.__dict__) for rec in caplog.records)):
        assert secret not in text  # ...and nothing of the key pair, at any level
        assert key_id not in text


async def test_the_egress_policy_applies_to_the_ses_endpoint(
    tenant: Tenant, ses: Ses, settings: Settings, sessionmaker: async_sessionmaker[AsyncSession], vault: Vault
) -> None:
    inbox = await _inbox(tenant, 100)
    body = {
        "ses_api": {"access_key_id": ses.access_key_id, "secret_access_key": ses.secret_access_key, "region": REGION}
    }
    assert (await tenant.client.patch(f"/v1/email-accounts/{inbox}", json=body)).status_code == 200
    strict = build_net_context(settings.model_copy(update={"egress_allow": []}))
    assert strict.policy == EgressPolicy.from_entries([])
    config = RefreshConfig(net=strict, endpoint_url=ses.url, timeout=5, interval=timedelta(hours=1))
    assert await refresh_one(sessionmaker, vault, config, inbox) is False
    async with sessionmaker() as session:
        account = await session.get_one(EmailAccount, inbox)
        events = list(await session.scalars(select(AccountEvent.kind).where(AccountEvent.account_id == inbox)))
    assert account.provider_quota_error_code == "ses.host_not_allowed"
    assert account.provider_quota_max_24h is None and "daily_limit_lowered" not in events


async def test_ses_api_input_is_validated_and_write_only(tenant: Tenant) -> None:
    inbox = await _inbox(tenant, 100)
    for bad in (
        {"access_key_id": "short", "secret_access_key": "x", "region": REGION},
        {"access_key_id": "AKIAIOSFODNN7EXAMPLE", "secret_access_key": "x", "region": "evil.example.com/"},
        {"access_key_id": "AKIAIOSFODNN7EXAMPLE", "secret_access_key": "", "region": REGION},
    ):
        r = await tenant.client.patch(f"/v1/email-accounts/{inbox}", json={"ses_api": bad})
        assert r.status_code == 422, bad
        assert r.json()["code"] == "validation_error"
    listed = await tenant.client.get("/v1/email-accounts")
    assert all(a["ses_api_configured"] is False and a["provider_quota"] is None for a in listed.json()["data"])


async def test_the_worker_job_reads_the_quota_of_accounts_just_set(
    tenant: Tenant,
    ses: Ses,
    settings: Settings,
    engine: AsyncEngine,
    sessionmaker: async_sessionmaker[AsyncSession],
    vault: Vault,
) -> None:
    inbox = await _inbox(tenant, 80)
    body = {
        "ses_api": {"access_key_id": ses.access_key_id, "secret_access_key": ses.secret_access_key, "region": REGION}
    }
    assert (await tenant.client.patch(f"/v1/email-accounts/{inbox}", json=body)).status_code == 200
    net = build_net_context(settings)
    async with SmtpPool(net) as pool:
        ctx = {
            "nimbus": WorkerResources(
                settings=settings.model_copy(update={"ses_endpoint_url": ses.url}),
                engine=engine,
                sessionmaker=sessionmaker,
                vault=vault,
                pool=pool,
                pacer=None,
                mx=MxChecker(net.resolver),
                worker_id="quota-test-worker",
            )
        }
        counts = await refresh_provider_quotas(ctx)
        again = await refresh_provider_quotas(ctx)
    assert counts["ok"] >= 1
    assert again["ok"] == 0  # read within the hour: nothing is due again
    quota = (await tenant.client.get(f"/v1/email-accounts/{inbox}")).json()["provider_quota"]
    assert quota["max_24_hour_send"] == 200 and quota["error_code"] is None
    async with sessionmaker() as session:
        account = await session.get_one(EmailAccount, inbox)
    assert account.daily_send_limit == 80  # under the quota already: unchanged
