"""The `nimbus` command line, run as a real subprocess against the test database."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from nimbus_api.config import Settings

NIMBUS = str(Path(sys.executable).with_name("nimbus"))


def run(settings: Settings, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("NIMBUS_")} | {
        "NIMBUS_DATABASE_URL": settings.database_url or "",
        "NIMBUS_REDIS_URL": settings.redis_url or "",
        "NIMBUS_MASTER_KEYS": ",".join(k.get_secret_value() for k in settings.master_keys),
    }
    return subprocess.run(
        [NIMBUS, *args], env=base | (env or {}), capture_output=True, text=True, timeout=60, check=False
    )


async def test_workspace_create_prints_a_working_key_once_and_revoke_kills_it(settings: Settings, app) -> None:  # type: ignore[no-untyped-def]
    name = f"cli-{os.getpid()}-{os.urandom(3).hex()}"
    out = run(settings, "workspace", "create", name)
    assert out.returncode == 0, out.stderr
    tokens = re.findall(r"nmb_[A-Za-z0-9_-]{20,}", out.stdout)
    assert len(tokens) == 1
    assert tokens[0] not in out.stderr

    again = run(settings, "workspace", "create", name)
    assert again.returncode == 2 and "exists" in again.stderr

    second = run(settings, "api-key", "create", "--workspace", name, "--name", "ci")
    assert second.returncode == 0
    token2 = re.findall(r"nmb_[A-Za-z0-9_-]{20,}", second.stdout)[0]

    listed = run(settings, "api-key", "list", "--workspace", name)
    assert listed.returncode == 0
    assert token2[:12] in listed.stdout and token2 not in listed.stdout

    async def call(token: str) -> int:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            r = await client.get("/v1/workspace", headers={"Authorization": f"Bearer {token}"})
            return r.status_code

    assert await call(token2) == 200
    revoked = run(settings, "api-key", "revoke", token2[:12])
    assert revoked.returncode == 0, revoked.stderr
    assert await call(token2) == 401
    assert await call(tokens[0]) == 200


def test_services_refuse_to_start_without_a_master_key(settings: Settings) -> None:
    for command in (["api"], ["worker"], ["workspace", "create", "x"]):
        out = run(settings, *command, env={"NIMBUS_MASTER_KEYS": ""})
        assert out.returncode == 2, (command, out.stderr)
        assert "NIMBUS_MASTER_KEYS" in out.stderr


def test_invalid_master_key_is_refused(settings: Settings) -> None:
    out = run(settings, "api", env={"NIMBUS_MASTER_KEYS": "not-a-fernet-key"})
    assert out.returncode == 2 and "not a valid Fernet key" in out.stderr
    assert "not-a-fernet-key" not in out.stderr


def test_migrate_is_idempotent(settings: Settings) -> None:
    out = run(settings, "migrate")
    assert out.returncode == 0, out.stderr


@pytest.mark.parametrize("command", [["--help"], ["keys", "--help"], ["api-key", "--help"]])
def test_help(command: list[str], settings: Settings) -> None:
    assert run(settings, *command).returncode == 0


def test_keys_generate_prints_a_fernet_key(settings: Settings) -> None:
    from cryptography.fernet import Fernet

    out = run(settings, "keys", "generate")
    Fernet(out.stdout.strip().encode())


def test_classify_prints_one_json_line_per_file(settings: Settings, tmp_path: Path) -> None:
    import json

    bounce = tmp_path / "bounce.eml"
    bounce.write_bytes(
        b"From: MAILER-DAEMON@mx.example.org\r\nTo: ada@example.com\r\nSubject: Undelivered Mail Returned to Sender\r\n"
        b'MIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=delivery-status; boundary="b"\r\n\r\n'
        b"--b\r\nContent-Type: text/plain\r\n\r\nnot delivered\r\n--b\r\nContent-Type: message/delivery-status\r\n\r\n"
        b"Reporting-MTA: dns; mx.example.org\r\n\r\nFinal-Recipient: rfc822; lead@example.org\r\nAction: failed\r\n"
        b"Status: 5.1.1\r\nDiagnostic-Code: smtp; 550 5.1.1 User unknown\r\n\r\n--b\r\n"
        b"Content-Type: text/rfc822-headers\r\n\r\nMessage-ID: <ours-1@example.com>\r\n\r\n--b--\r\n"
    )
    garbage = tmp_path / "garbage.eml"
    garbage.write_bytes(b"\xff\x00 not mail")
    out = run(settings, "classify", str(bounce), str(garbage), str(tmp_path / "missing.eml"))
    assert out.returncode == 1, out.stderr  # the missing file
    lines = [json.loads(line) for line in out.stdout.splitlines()]
    assert [line["file"] for line in lines] == [str(bounce), str(garbage), str(tmp_path / "missing.eml")]
    first = lines[0]
    assert first["kind"] == "bounce" and first["matched_message_id"] == "ours-1@example.com"
    [rcpt] = first["recipients"]
    assert (rcpt["address"], rcpt["status"], rcpt["hard"], rcpt["reason"]) == (
        "lead@example.org",
        "5.1.1",
        True,
        "userunknown",
    )
    assert first["reasons"] and "diagnostic" in rcpt
    assert lines[1]["kind"] == "other" and lines[1]["parse_notes"]
    assert "error" in lines[2]
