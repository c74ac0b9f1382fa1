"""Generate a Python client from the committed OpenAPI document with openapi-python-client (offline)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
COMMITTED = ROOT / "openapi" / "openapi.json"
CONFIG = ROOT / "openapi" / "openapi-python-client.yaml"
BIN = Path(sys.executable).parent


def generate_client(package: Path) -> str:
    """Write the client package to ``package``; returns the generator's output (it must not warn)."""
    generator = BIN / "openapi-python-client"
    assert generator.exists(), f"{generator} is missing: install the dev extra (`make install`)"
    # The generator runs `ruff` as a post-hook: put the venv's on PATH; no network is needed.
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    result = subprocess.run(
        [
            str(generator),
            "generate",
            "--path",
            str(COMMITTED),
            "--output-path",
            str(package),
            "--meta",
            "none",
            "--config",
            str(CONFIG),
            "--fail-on-warning",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=180,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"openapi-python-client failed:\n{output}"
    assert "warning" not in output.lower(), f"openapi-python-client warned about the document:\n{output}"
    assert (package / "client.py").exists(), output
    return output
