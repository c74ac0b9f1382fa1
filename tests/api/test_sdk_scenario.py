"""A client generated from the committed document drives a real `nimbus api` process, and the generated
package together with the scenario passes `mypy --strict`: what an SDK user meets, typed end to end.

The scenario (``SCENARIO`` below, written to a file and run in its own process) lists the providers,
creates contacts, pages through them with the cursor, creates and reads a campaign, and reads the stable
``code`` of a 404 and a 409 from the typed ``ProblemDetail``; enums are the named value sets
(``CampaignType``, ``CampaignStatus``, ``ProviderId``).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.api.sdk import BIN, generate_client
from tests.conftest import Tenant

PACKAGE = "nimbus_sdk"

SCENARIO = textwrap.dedent(
    '''
    """SDK scenario: run as `python scenario.py BASE_URL TOKEN`."""

    from __future__ import annotations

    import sys
    import uuid

    from nimbus_sdk import AuthenticatedClient
    from nimbus_sdk.api.campaigns import campaigns_create, campaigns_get
    from nimbus_sdk.api.contacts import contacts_create, contacts_get, contacts_list
    from nimbus_sdk.api.providers import providers_list
    from nimbus_sdk.models import (
        CampaignCreate,
        CampaignRead,
        CampaignStatus,
        CampaignType,
        ContactCreate,
        ContactPage,
        ContactRead,
        ProblemDetail,
        ProviderId,
        ProviderPreset,
        StepIn,
        TlsMode,
    )


    def main(base_url: str, token: str) -> None:
        run = uuid.uuid4().hex[:8]
        with AuthenticatedClient(base_url=base_url, token=token, raise_on_unexpected_status=True) as client:
            providers = providers_list.sync(client=client)
            assert isinstance(providers, list), providers
            gmail = [p for p in providers if isinstance(p, ProviderPreset) and p.id == ProviderId.GMAIL]
            assert gmail and gmail[0].smtp.mode in (TlsMode.SSL, TlsMode.STARTTLS), providers

            created: list[ContactRead] = []
            for n in range(3):
                body = ContactCreate(email=f"sdk-{run}-{n}@example.com", first_name=f"Ada {n}")
                response = contacts_create.sync_detailed(client=client, body=body, idempotency_key=f"sdk-{run}-{n}")
                assert response.status_code == 201, response.content
                assert isinstance(response.parsed, ContactRead), response.parsed
                created.append(response.parsed)

            first = contacts_list.sync(client=client, limit=2)
            assert isinstance(first, ContactPage), first
            assert len(first.data) == 2
            assert isinstance(first.next_cursor, str), first.next_cursor
            second = contacts_list.sync(client=client, limit=2, cursor=first.next_cursor)
            assert isinstance(second, ContactPage), second
            assert second.next_cursor is None
            paged = [c.id for c in first.data + second.data]
            assert paged == [c.id for c in reversed(created)], (paged, created)

            campaign_body = CampaignCreate(
                name=f"SDK {run}",
                type_=CampaignType.COLD,
                steps=[StepIn(delay_seconds=0, subject="Hello {{ contact.first_name }}", text="Hi!")],
            )
            made = campaigns_create.sync_detailed(client=client, body=campaign_body)
            assert made.status_code == 201, made.content
            assert isinstance(made.parsed, CampaignRead), made.parsed
            read = campaigns_get.sync(campaign_id=made.parsed.id, client=client)
            assert isinstance(read, CampaignRead), read
            assert read.status == CampaignStatus.DRAFT
            assert read.type_ == CampaignType.COLD
            assert [s.subject for s in read.steps] == ["Hello {{ contact.first_name }}"]

            missing = contacts_get.sync_detailed(contact_id=uuid.uuid4(), client=client)
            assert missing.status_code == 404
            assert isinstance(missing.parsed, ProblemDetail), missing.parsed
            assert missing.parsed.code == "contact.not_found", missing.parsed

            duplicate = contacts_create.sync_detailed(client=client, body=ContactCreate(email=created[0].email))
            assert duplicate.status_code == 409
            assert isinstance(duplicate.parsed, ProblemDetail), duplicate.parsed
            assert duplicate.parsed.code == "contact.exists", duplicate.parsed
        print("sdk scenario passed")


    if __name__ == "__main__":
        main(sys.argv[1], sys.argv[2])
    '''
)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def sdk_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("sdk")
    generate_client(out / PACKAGE)
    (out / "scenario.py").write_text(SCENARIO, encoding="utf-8")
    return out


@pytest.fixture(scope="module")
def api_server(
    database_url: str, redis_url: str, master_key: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """The real `nimbus api` (uvicorn) on a free loopback port, on this run's database and Redis index."""
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "NIMBUS_DATABASE_URL": database_url,
        "NIMBUS_REDIS_URL": redis_url,
        "NIMBUS_MASTER_KEYS": master_key,
        "NIMBUS_LOG_LEVEL": "warning",
    }
    log_path = tmp_path_factory.mktemp("sdk-server") / "api.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            [str(BIN / "nimbus"), "api", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            for _ in range(300):
                assert proc.poll() is None, log_path.read_text()
                try:
                    if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                time.sleep(0.1)
            else:
                pytest.fail(f"nimbus api did not become ready:\n{log_path.read_text()}")
            yield base
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def test_generated_sdk_and_scenario_pass_mypy_strict(sdk_dir: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", PACKAGE, "scenario.py"],
        cwd=sdk_dir,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={**os.environ, "MYPYPATH": str(sdk_dir)},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Success" in result.stdout


def test_generated_sdk_drives_a_real_server(sdk_dir: Path, api_server: str, tenant: Tenant) -> None:
    result = subprocess.run(
        [sys.executable, "scenario.py", api_server, tenant.token],
        cwd=sdk_dir,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "sdk scenario passed" in result.stdout
