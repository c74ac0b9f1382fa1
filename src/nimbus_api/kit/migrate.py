"""Apply alembic migrations from code (``nimbus migrate``, ``nimbus dev``, the test set-up)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from alembic import command
from alembic.config import Config


def find_alembic_ini() -> Path:
    """``NIMBUS_ALEMBIC_INI``, else ``./alembic.ini``, else the one beside the source checkout."""
    candidates = [
        Path(os.environ["NIMBUS_ALEMBIC_INI"]) if os.environ.get("NIMBUS_ALEMBIC_INI") else None,
        Path.cwd() / "alembic.ini",
        Path(__file__).resolve().parents[3] / "alembic.ini",
    ]
    for candidate in candidates:
        if candidate is not None and candidate.is_file():
            return candidate
    raise FileNotFoundError("alembic.ini not found (set NIMBUS_ALEMBIC_INI)")


def alembic_config(database_url: str) -> Config:
    cfg = Config(str(find_alembic_ini()))
    cfg.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return cfg


def upgrade_head(database_url: str) -> None:
    """Run ``alembic upgrade head``. Safe to call from inside a running event loop."""
    cfg = alembic_config(database_url)
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        command.upgrade(cfg, "head")
        return
    # env.py runs its own event loop; give it a thread of its own.
    import threading

    errors: list[BaseException] = []

    def target() -> None:
        try:
            command.upgrade(cfg, "head")
        except BaseException as exc:  # re-raised in the caller's thread
            errors.append(exc)

    thread = threading.Thread(target=target)
    thread.start()
    thread.join()
    if errors:
        raise errors[0]
