"""The ``nimbus`` command line: run the API or the worker, migrate, manage workspaces, keys and rotation.

Settings come from ``NIMBUS_*`` environment variables (see the README). Commands that print a new API
key print it once, to standard output; it is not stored anywhere in clear.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import TypeVar

import structlog
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from nimbus_api.config import Settings, get_settings
from nimbus_api.credentials.vault import Vault
from nimbus_api.kit.crypto import KeyringError, MasterKeyring, generate_master_key
from nimbus_api.kit.db import make_engine, make_sessionmaker
from nimbus_api.kit.problems import Problem
from nimbus_api.logging import configure_logging

log = structlog.get_logger("nimbus")
T = TypeVar("T")


class CliError(Exception):
    """A message for the person at the terminal; exit status 2."""


def _require_master_keys(settings: Settings) -> MasterKeyring:
    if not settings.master_keys:
        raise CliError(
            "NIMBUS_MASTER_KEYS is not set: the service will not start without a master key.\n"
            "Generate one with `nimbus keys generate` and keep it safe (losing it loses every stored secret)."
        )
    try:
        return MasterKeyring.from_strings([k.get_secret_value() for k in settings.master_keys])
    except KeyringError as exc:
        raise CliError(str(exc)) from exc


def _require_stores(settings: Settings) -> None:
    missing = [
        name
        for name, value in (
            ("NIMBUS_DATABASE_URL", settings.database_url),
            ("NIMBUS_REDIS_URL", settings.redis_url),
        )
        if not value
    ]
    if missing:
        raise CliError(f"{' and '.join(missing)} must be set (or use `make run` / `nimbus dev` for local use)")


async def _with_db(settings: Settings, fn: Callable[[async_sessionmaker[AsyncSession], Vault], Awaitable[T]]) -> T:
    return await _with_engine(settings, lambda engine, sm, vault: fn(sm, vault))


async def _with_engine(
    settings: Settings, fn: Callable[[AsyncEngine, async_sessionmaker[AsyncSession], Vault], Awaitable[T]]
) -> T:
    assert settings.database_url
    engine = make_engine(settings.database_url)
    try:
        return await fn(engine, make_sessionmaker(engine), Vault(_require_master_keys(settings)))
    finally:
        await engine.dispose()


def _print_key(workspace: str, token: str) -> None:
    print(f"\nAPI key for workspace {workspace!r} (shown once, store it now):\n\n    {token}\n", flush=True)


# --- commands -------------------------------------------------------------------------------------


def cmd_api(settings: Settings, args: argparse.Namespace) -> None:
    import uvicorn

    from nimbus_api.api.app import create_app

    _require_stores(settings)
    _require_master_keys(settings)
    uvicorn.run(
        create_app(settings),
        host=args.host or settings.host,
        port=args.port or settings.port,
        log_config=None,
        proxy_headers=True,
    )


def cmd_worker(settings: Settings, args: argparse.Namespace) -> None:
    from nimbus_api.kit.special_use import configure_process
    from nimbus_api.worker.settings import create_worker

    _require_stores(settings)
    _require_master_keys(settings)
    configure_process(settings, "worker")
    create_worker(settings).run()


def cmd_metrics(settings: Settings, args: argparse.Namespace) -> None:
    """Serve only ``/metrics`` (this box's processes plus the PostgreSQL gauges) on a bind of its own."""
    import uvicorn

    from nimbus_api.metrics.server import create_metrics_app

    if settings.metrics_postgres and not settings.database_url:
        raise CliError("NIMBUS_DATABASE_URL must be set (or NIMBUS_METRICS_POSTGRES=false for process metrics only)")
    uvicorn.run(
        create_metrics_app(settings),
        host=args.host or settings.metrics_host,
        port=args.port or settings.metrics_port,
        log_config=None,
    )


def cmd_migrate(settings: Settings, args: argparse.Namespace) -> None:
    from nimbus_api.kit.migrate import upgrade_head

    if not settings.database_url:
        raise CliError("NIMBUS_DATABASE_URL must be set")
    upgrade_head(settings.database_url)
    log.info("migrations_applied")


def cmd_dev(settings: Settings, args: argparse.Namespace) -> None:
    from nimbus_api.dev import run_dev

    asyncio.run(run_dev(settings, host=args.host, port=args.port))


def cmd_workspace_create(settings: Settings, args: argparse.Namespace) -> None:
    from nimbus_api.workspaces import service

    _require_stores(settings)

    async def run(sm: async_sessionmaker[AsyncSession], vault: Vault) -> str:
        async with sm() as session, session.begin():
            workspace = await service.create_workspace(session, vault, args.name)
            _, token = await service.create_api_key(session, workspace.id, args.key_name)
        return token

    _print_key(args.name, asyncio.run(_with_db(settings, run)))


def cmd_workspace_list(settings: Settings, args: argparse.Namespace) -> None:
    from nimbus_api.workspaces import service

    _require_stores(settings)

    async def run(sm: async_sessionmaker[AsyncSession], vault: Vault) -> None:
        async with sm() as session:
            for ws in await service.list_workspaces(session):
                print(f"{ws.id}  {ws.name}  {ws.created_at:%Y-%m-%d}")

    asyncio.run(_with_db(settings, run))


def _account_limit(value: str) -> int | None:
    if value == "default":
        return None
    try:
        limit = int(value)
    except ValueError:
        limit = -1
    if not 0 <= limit <= 1_000_000:
        raise argparse.ArgumentTypeError(f"expected a number 0..1000000 or `default`, not {value!r}")
    return limit


def cmd_workspace_set_limit(settings: Settings, args: argparse.Namespace) -> None:
    from nimbus_api.accounts.limits import account_count, account_limit
    from nimbus_api.workspaces import service

    _require_stores(settings)

    async def run(sm: async_sessionmaker[AsyncSession], vault: Vault) -> str:
        async with sm() as session, session.begin():
            workspace = await service.set_account_limit(session, args.name, args.max_accounts)
            limit = await account_limit(session, workspace.id, settings.max_accounts_per_workspace)
            count = await account_count(session, workspace.id)
        over = f"; {count - limit.limit} over it: they stay, new ones are refused" if count > limit.limit else ""
        return f"workspace {args.name}: at most {limit.describe()}; it holds {count}{over}"

    print(asyncio.run(_with_db(settings, run)))


def cmd_api_key_create(settings: Settings, args: argparse.Namespace) -> None:
    from nimbus_api.workspaces import service

    _require_stores(settings)

    async def run(sm: async_sessionmaker[AsyncSession], vault: Vault) -> str:
        async with sm() as session, session.begin():
            workspace = await service.get_workspace_by_name(session, args.workspace)
            _, token = await service.create_api_key(session, workspace.id, args.name)
        return token

    _print_key(args.workspace, asyncio.run(_with_db(settings, run)))


def cmd_api_key_revoke(settings: Settings, args: argparse.Namespace) -> None:
    from nimbus_api.workspaces import service

    _require_stores(settings)

    async def run(sm: async_sessionmaker[AsyncSession], vault: Vault) -> str:
        async with sm() as session, session.begin():
            key = await service.revoke_api_key(session, args.key)
            return f"revoked API key {key.prefix}… ({key.id})"

    print(asyncio.run(_with_db(settings, run)))


def cmd_api_key_list(settings: Settings, args: argparse.Namespace) -> None:
    from nimbus_api.models import ApiKey
    from nimbus_api.workspaces import service

    _require_stores(settings)

    async def run(sm: async_sessionmaker[AsyncSession], vault: Vault) -> None:
        async with sm() as session:
            workspace = await service.get_workspace_by_name(session, args.workspace)
            keys = await session.scalars(select(ApiKey).where(ApiKey.workspace_id == workspace.id))
            for key in keys:
                state = f"revoked {key.revoked_at:%Y-%m-%d}" if key.revoked_at else "live"
                print(f"{key.id}  {key.prefix}…  {key.name}  {state}")

    asyncio.run(_with_db(settings, run))


def cmd_keys_generate(settings: Settings, args: argparse.Namespace) -> None:
    print(generate_master_key())


def cmd_keys_rotate(settings: Settings, args: argparse.Namespace) -> None:
    from tqdm import tqdm

    from nimbus_api.credentials import rotation, schedule
    from nimbus_api.kit.locks import session_lock
    from nimbus_api.workspaces import service

    _require_stores(settings)
    if args.data_key and not args.workspace:
        raise CliError("--data-key needs --workspace NAME")

    async def run(engine: AsyncEngine, sm: async_sessionmaker[AsyncSession], vault: Vault) -> None:
        with tqdm(desc="re-wrapping data keys", unit="key", file=sys.stderr) as bar:

            def rewrap_progress(done: int, total: int) -> None:
                bar.total = total
                bar.n = done
                bar.refresh()

            count = await rotation.rewrap_all(sm, vault, batch_size=args.batch_size, progress=rewrap_progress)
        print(f"re-wrapped {count} data key(s) under master key {vault.keyring.primary_id}")
        if not args.data_key:
            return
        async with sm() as session:
            workspace = await service.get_workspace_by_name(session, args.workspace)
        async with session_lock(engine, schedule.LOCK_NAMESPACE, workspace.id) as got:
            if not got:
                raise CliError(
                    f"the data key of workspace {args.workspace} is being rotated elsewhere (a worker's scheduled "
                    "rotation or another `nimbus keys rotate`): run this again when it is done"
                )
            with tqdm(desc=f"re-encrypting secrets of {args.workspace}", unit="secret", file=sys.stderr) as bar:

                def progress(done: int, total: int) -> None:
                    bar.total = total
                    bar.n = done
                    bar.refresh()

                result = await rotation.rotate_data_key(
                    sm, vault, workspace.id, batch_size=args.batch_size, progress=progress
                )
        resumed = " (resumed an interrupted rotation)" if result.resumed else ""
        print(
            f"workspace {args.workspace}: new data key {result.data_key_id}{resumed}; "
            f"{result.reencrypted} secret(s) re-encrypted, {result.retired} old key(s) retired"
        )

    asyncio.run(_with_engine(settings, run))


def cmd_keys_status(settings: Settings, args: argparse.Namespace) -> None:
    from nimbus_api.credentials.status import data_key_status, render_status
    from nimbus_api.kit.db import utcnow

    _require_stores(settings)

    async def run(sm: async_sessionmaker[AsyncSession], vault: Vault) -> list[str]:
        async with sm() as session:
            statuses = await data_key_status(session)
        return render_status(statuses, vault.keyring.key_ids, max_age_days=settings.data_key_max_age_days, now=utcnow())

    print("\n".join(asyncio.run(_with_db(settings, run))))


def cmd_classify(settings: Settings, args: argparse.Namespace) -> None:
    """One JSON line per file; a file that cannot be read prints an ``error`` line and exit status 1."""
    import json

    from nimbus_api.classify import classify
    from nimbus_api.classify.report import verdict_json

    failed = False
    for name in args.files:
        try:
            raw = sys.stdin.buffer.read() if name == "-" else Path(name).read_bytes()
        except OSError as exc:
            print(json.dumps({"file": name, "error": exc.strerror or str(exc)}), flush=True)
            failed = True
            continue
        print(json.dumps(verdict_json(classify(raw), name), ensure_ascii=False), flush=True)
    if failed:
        raise SystemExit(1)


def cmd_openapi(settings: Settings, args: argparse.Namespace) -> None:
    from nimbus_api.api.openapi_export import export_openapi

    text = export_openapi()
    if args.out == "-":
        sys.stdout.write(text)
    else:
        Path(args.out).write_text(text)
        print(f"wrote {args.out}")


# --- fleet imports (account_imports.commands) ----------------------------------------------------


def cmd_accounts_import(settings: Settings, args: argparse.Namespace) -> None:
    from nimbus_api.account_imports.commands import import_main
    from nimbus_api.kit.special_use import configure_process

    _require_stores(settings)
    configure_process(settings, "cli")
    try:
        status = asyncio.run(
            _with_db(settings, lambda sm, vault: import_main(settings, sm, vault, args.file, args.workspace, args.wait))
        )
    except (OSError, ValueError) as exc:
        raise CliError(str(exc)) from exc
    if status:
        raise SystemExit(status)


def cmd_accounts_export(settings: Settings, args: argparse.Namespace) -> None:
    from nimbus_api.account_imports.commands import export_main

    _require_stores(settings)
    text, count = asyncio.run(_with_db(settings, lambda sm, vault: export_main(sm, args.workspace)))
    if args.out == "-":
        sys.stdout.write(text)
        print(f"{count} account(s)", file=sys.stderr)
    else:
        Path(args.out).write_text(text, encoding="utf-8")
        print(f"wrote {count} account(s) to {args.out}")


def _add_accounts_commands(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    accounts = sub.add_parser("accounts", help="email accounts in bulk").add_subparsers(dest="action", required=True)
    imp = accounts.add_parser(
        "import", help="import mailboxes from a CSV or JSON file (README: Importing a fleet of mailboxes)"
    )
    imp.add_argument("file", type=Path, metavar="FILE", help='a .csv file (or .json: {"accounts": [...]})')
    imp.add_argument("--workspace", required=True, metavar="NAME")
    imp.add_argument("--no-wait", dest="wait", action="store_false", help="write the import, leave it to the workers")
    imp.set_defaults(fn=cmd_accounts_import)
    exp = accounts.add_parser(
        "export", help="write the workspace's accounts as CSV in the import's columns (no secrets)"
    )
    exp.add_argument("--workspace", required=True, metavar="NAME")
    exp.add_argument("--out", default="-", metavar="FILE", help="default: standard output")
    exp.set_defaults(fn=cmd_accounts_export)


# --- parser ---------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nimbus", description="nimbus_api: bring-your-own-SMTP outbound email")
    sub = parser.add_subparsers(dest="command", required=True)

    api = sub.add_parser("api", help="run the HTTP API (uvicorn)")
    api.add_argument("--host")
    api.add_argument("--port", type=int)
    api.set_defaults(fn=cmd_api)

    sub.add_parser("worker", help="run an arq worker").set_defaults(fn=cmd_worker)
    sub.add_parser("migrate", help="apply database migrations").set_defaults(fn=cmd_migrate)
    serve_metrics = sub.add_parser(
        "metrics", help="serve only /metrics (this box's processes and the PostgreSQL gauges) on its own bind"
    )
    serve_metrics.add_argument("--host", help="default NIMBUS_METRICS_HOST (127.0.0.1)")
    serve_metrics.add_argument("--port", type=int, help="default NIMBUS_METRICS_PORT (9464)")
    serve_metrics.set_defaults(fn=cmd_metrics)

    dev = sub.add_parser("dev", help="local all-in-one: stores, migrations, API and worker (make run)")
    dev.add_argument("--host")
    dev.add_argument("--port", type=int)
    dev.set_defaults(fn=cmd_dev)

    ws = sub.add_parser("workspace", help="manage workspaces").add_subparsers(dest="action", required=True)
    ws_create = ws.add_parser("create", help="create a workspace and print its first API key once")
    ws_create.add_argument("name")
    ws_create.add_argument("--key-name", default="default")
    ws_create.set_defaults(fn=cmd_workspace_create)
    ws.add_parser("list", help="list workspaces").set_defaults(fn=cmd_workspace_list)
    ws_limit = ws.add_parser(
        "set-limit",
        help="set how many email accounts a workspace may hold (`default`: NIMBUS_MAX_ACCOUNTS_PER_WORKSPACE)",
    )
    ws_limit.add_argument("name")
    ws_limit.add_argument("--max-accounts", type=_account_limit, required=True, metavar="N|default")
    ws_limit.set_defaults(fn=cmd_workspace_set_limit)

    keys = sub.add_parser("api-key", help="manage API keys").add_subparsers(dest="action", required=True)
    key_create = keys.add_parser("create", help="create an API key and print it once")
    key_create.add_argument("--workspace", required=True)
    key_create.add_argument("--name", default="default")
    key_create.set_defaults(fn=cmd_api_key_create)
    key_revoke = keys.add_parser("revoke", help="revoke an API key by id or visible prefix")
    key_revoke.add_argument("key")
    key_revoke.set_defaults(fn=cmd_api_key_revoke)
    key_list = keys.add_parser("list", help="list API keys of a workspace (prefixes only)")
    key_list.add_argument("--workspace", required=True)
    key_list.set_defaults(fn=cmd_api_key_list)

    master = sub.add_parser("keys", help="encryption keys").add_subparsers(dest="action", required=True)
    master.add_parser("generate", help="print a new master key").set_defaults(fn=cmd_keys_generate)
    rotate = master.add_parser(
        "rotate",
        help="re-wrap every data key under the primary master key; with --data-key, also issue a new "
        "data key for --workspace and re-encrypt its secrets (online, resumable)",
    )
    rotate.add_argument("--workspace")
    rotate.add_argument("--data-key", action="store_true")
    rotate.add_argument("--batch-size", type=int, default=200)
    rotate.set_defaults(fn=cmd_keys_rotate)
    master.add_parser(
        "status",
        help="each workspace's data key (id, version, age, when it is rotated, the master key wrapping it) "
        "and the configured master keys (ids only)",
    ).set_defaults(fn=cmd_keys_status)

    classify = sub.add_parser(
        "classify", help="classify raw message files (bounce, auto-reply, reply...) and print one JSON line each"
    )
    classify.add_argument("files", nargs="+", metavar="FILE", help="raw RFC 5322 message files; - reads stdin")
    classify.set_defaults(fn=cmd_classify)

    _add_accounts_commands(sub)

    export = sub.add_parser("openapi", help="print or write the OpenAPI document")
    export.add_argument("--out", default="-")
    export.set_defaults(fn=cmd_openapi)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    settings = get_settings()
    configure_logging(settings.log_level, settings.log_format)
    try:
        args.fn(settings, args)
    except (CliError, Problem, KeyringError) as exc:
        print(f"nimbus: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
