"""``nimbus accounts import`` and ``export`` as real subprocesses against the mail world: the import
verifies in the command's own process with a progress bar and prints a summary table; the export reads
back through the import into another workspace with the same settings (a formula-looking label too)."""

from __future__ import annotations

import asyncio
import csv
import io
import os
import sys
from pathlib import Path
from typing import Any

from nimbus_api.config import Settings
from tests.account_imports.fleet import GOOD_PASSWORD, Fleet, to_csv
from tests.conftest import Tenant, TenantFactory

NIMBUS = str(Path(sys.executable).with_name("nimbus"))
COMPARED = (
    "email",
    "from_name",
    "label",
    "provider",
    "dkim_selector",
    "daily_send_limit",
    "warmup_enabled",
)


async def nimbus(settings: Settings, *args: str) -> tuple[int, str, str]:
    """The command in a subprocess; the event loop stays free for the mail world's servers meanwhile."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("NIMBUS_")} | {
        "NIMBUS_DATABASE_URL": settings.database_url or "",
        "NIMBUS_REDIS_URL": settings.redis_url or "",
        "NIMBUS_MASTER_KEYS": ",".join(k.get_secret_value() for k in settings.master_keys),
        "NIMBUS_DNS_NAMESERVERS": ",".join(settings.dns_nameservers),
        "NIMBUS_EGRESS_ALLOW": ",".join(settings.egress_allow),
        "NIMBUS_EXTRA_CA_FILE": str(settings.extra_ca_file),
        "NIMBUS_ALLOW_SPECIAL_USE_DOMAINS": "true",
        "NIMBUS_VERIFY_LIMIT_PER_ACCOUNT": "10000",
        "NIMBUS_ROUNDTRIP_TIMEOUT": "10",
    }
    proc = await asyncio.create_subprocess_exec(
        NIMBUS, *args, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def _settings_of(account: dict[str, Any]) -> tuple[Any, ...]:
    smtp, imap = account["smtp"], account["imap"]
    return (
        *(account[name] for name in COMPARED),
        *(smtp[k] for k in ("host", "port", "mode", "username")),
        *(imap[k] for k in ("host", "port", "mode", "username", "folder")),
    )


async def _accounts(tenant: Tenant) -> list[dict[str, Any]]:
    data: list[dict[str, Any]] = (await tenant.client.get("/v1/email-accounts", params={"limit": 200})).json()["data"]
    return sorted(data, key=lambda a: a["email"])


async def test_import_shows_progress_and_a_summary_and_export_round_trips(
    make_tenant: TenantFactory, fleet: Fleet, settings: Settings, tmp_path: Path
) -> None:
    source, target = await make_tenant(), await make_tenant()
    rows, _ = fleet.rows(good=3, wrong_password=1, unreachable=0)
    path = tmp_path / "fleet.csv"
    path.write_bytes(to_csv(rows))
    status, out, err = await nimbus(settings, "accounts", "import", str(path), "--workspace", source.name)
    assert status == 1, (out, err)  # one row did not connect
    assert "verifying fleet.csv" in err and "4/4" in err, err
    assert "connected 3, failed 1" in out, out
    [failed_line] = [line for line in out.splitlines() if "smtp.auth_failed" in line]
    assert rows[3]["email"] in failed_line and failed_line.split()[0] == "5"  # the file's line 5
    assert GOOD_PASSWORD not in out + err and "wrong-password" not in out + err

    accounts = await _accounts(source)
    assert len(accounts) == 3
    r = await source.client.patch(f"/v1/email-accounts/{accounts[0]['id']}", json={"label": "=HYPERLINK(1)"})
    assert r.status_code == 200, r.text
    accounts = await _accounts(source)

    status, out, err = await nimbus(settings, "accounts", "export", "--workspace", source.name)
    assert status == 0, err
    exported = list(csv.DictReader(io.StringIO(out)))
    assert len(exported) == 3 and "3 account(s)" in err
    assert {row["smtp_password"] for row in exported} == {""} and {row["imap_password"] for row in exported} == {""}
    assert "'=HYPERLINK(1)" in {row["label"] for row in exported}, "a formula-looking cell is guarded"
    for row in exported:
        row["smtp_password"] = GOOD_PASSWORD
    filled = tmp_path / "filled.csv"
    filled.write_bytes(to_csv(exported))
    status, out, err = await nimbus(settings, "accounts", "import", str(filled), "--workspace", target.name)
    assert status == 0, (out, err)
    assert "connected 3" in out
    assert [_settings_of(a) for a in await _accounts(target)] == [_settings_of(a) for a in accounts]

    # the same file again: every address exists in the workspace now
    status, out, _ = await nimbus(settings, "accounts", "import", str(filled), "--workspace", target.name)
    assert status == 1 and "duplicate 3" in out, out
    status, _, err = await nimbus(settings, "accounts", "import", str(filled), "--workspace", "no-such-workspace")
    assert status == 2 and "no-such-workspace" in err
