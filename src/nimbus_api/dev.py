"""``nimbus dev`` (what ``make run`` calls): one process for a laptop.

It resolves the stores (configured URLs, local services, or embedded PostgreSQL and Redis under
``./.nimbus``; see ``embedded``), makes sure a master key exists, applies migrations, creates a
``default`` workspace on the first start (printing its API key once), then serves the HTTP API and
runs an arq worker side by side until SIGINT (Ctrl-C), SIGTERM (``docker stop``, systemd, ``timeout``)
or SIGHUP (the terminal closed) arrives; any of them stops the API, the worker and the embedded servers
in that order and exits with status 0 (see ``_Stopper``).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import threading
from collections.abc import Iterator
from types import TracebackType

import structlog
import uvicorn
from arq.worker import Worker
from pydantic import SecretStr

from nimbus_api.api.app import create_app
from nimbus_api.config import Settings
from nimbus_api.credentials.vault import Vault
from nimbus_api.embedded import ensure_dev_master_key, resolve_dev_stores
from nimbus_api.kit.crypto import MasterKeyring
from nimbus_api.kit.db import make_engine, make_sessionmaker
from nimbus_api.kit.migrate import upgrade_head
from nimbus_api.kit.special_use import configure_process
from nimbus_api.worker.settings import create_worker
from nimbus_api.workspaces.service import ensure_default_workspace

log = structlog.get_logger("nimbus.dev")

# Long enough for a request in flight to finish, short enough that a stop signal stops within seconds.
GRACEFUL_SHUTDOWN_SECONDS = 5

STOP_SIGNALS: tuple[signal.Signals, ...] = tuple(
    sig for sig in (getattr(signal, name, None) for name in ("SIGINT", "SIGTERM", "SIGHUP")) if sig is not None
)


class _Server(uvicorn.Server):
    """A uvicorn server that leaves the process's signals to ``run_dev``.

    ``uvicorn.Server.serve`` installs its own SIGINT/SIGTERM handlers and, after its graceful shutdown,
    puts the previous handlers back and raises the caught signal again. For SIGTERM the previous
    handler is the default action, which ends the process on the spot: the ``finally`` blocks that stop
    the worker and the embedded PostgreSQL and Redis never ran, and those servers kept running.
    """

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class _Stopper:
    """Turns the first signal of ``STOP_SIGNALS`` into an orderly stop, whatever ``run_dev`` is doing.

    * starting (stores, migrations, first workspace): the main task is cancelled at its next ``await``
      and the ``finally`` blocks stop what was started. A blocking step (starting the embedded
      servers) completes first, so no server is left half-started.
    * serving: the API server is asked to exit; it waits at most ``GRACEFUL_SHUTDOWN_SECONDS`` for
      open requests. The worker and the stores are stopped after it.
    * later signals, and any signal once stopping has begun, are logged and otherwise ignored: an
      interruption while the servers are being stopped is what would leave them running. Once a stop
      signal has arrived they stay ignored until the process exits, so that a late one cannot kill
      it with the default action after everything was stopped.

    Handlers can only be installed from the main thread; elsewhere (an embedding program) the
    process's own handling stays as it is.
    """

    def __init__(self) -> None:
        self.signal: signal.Signals | None = None
        self._loop = asyncio.get_running_loop()
        self._task = asyncio.current_task()
        self._server: uvicorn.Server | None = None
        self._stopping = False
        self._installed: list[signal.Signals] = []

    def __enter__(self) -> _Stopper:
        if threading.current_thread() is threading.main_thread():
            for sig in STOP_SIGNALS:
                self._loop.add_signal_handler(sig, self._on_signal, sig)
                self._installed.append(sig)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if not self._installed:
            return
        keep_ignoring = self.signal is not None
        # blocked while swapping: none may arrive between the loop's handler and SIG_IGN
        previous_mask = signal.pthread_sigmask(signal.SIG_BLOCK, self._installed)
        try:
            while self._installed:
                sig = self._installed.pop()
                self._loop.remove_signal_handler(sig)
                if keep_ignoring:
                    signal.signal(sig, signal.SIG_IGN)
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, previous_mask)

    def serving(self, server: uvicorn.Server) -> None:
        """From now on a signal asks ``server`` to exit instead of cancelling the main task."""
        self._server = server

    def stopping(self) -> None:
        """From now on signals are only logged: the worker and the servers are being stopped."""
        self._stopping = True

    def _on_signal(self, sig: signal.Signals) -> None:
        if self.signal is not None or self._stopping:
            log.warning("dev_already_stopping", signal=sig.name)
            return
        self.signal = sig
        log.info("dev_stopping", signal=sig.name)
        if self._server is not None:
            self._server.should_exit = True
        elif self._task is not None:
            self._task.cancel()


async def _bootstrap(settings: Settings) -> str | None:
    assert settings.database_url
    engine = make_engine(settings.database_url)
    try:
        vault = Vault(MasterKeyring.from_strings([k.get_secret_value() for k in settings.master_keys]))
        async with make_sessionmaker(engine)() as session, session.begin():
            return await ensure_default_workspace(session, vault)
    finally:
        await engine.dispose()


async def _stop_worker(worker: Worker, task: asyncio.Task[None]) -> None:
    """Stop the worker; a failure is logged, never raised, so that the stores are always stopped after it.

    The worker can fail on its own while everything stops, e.g. when a service manager signalled the
    embedded servers too (systemd sends SIGTERM to every process of the unit) and PostgreSQL already
    refuses connections while the worker is still opening its own.
    """
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        pass
    except Exception:
        log.exception("dev_worker_failed")
    try:
        await worker.close()
    except Exception as exc:  # e.g. Redis stopped already: nothing left to close cleanly
        log.warning("dev_worker_close_failed", error=f"{type(exc).__name__}: {exc}")


async def run_dev(settings: Settings, *, host: str | None = None, port: int | None = None) -> None:
    """Run ``nimbus dev`` until a stop signal; returns normally after one (exit status 0)."""
    with _Stopper() as stopper:
        try:
            await _run(settings, host, port, stopper)
        except asyncio.CancelledError:
            if stopper.signal is None:
                raise
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()
    if stopper.signal is not None:
        log.info("dev_stopped", signal=stopper.signal.name)


async def _run(settings: Settings, host: str | None, port: int | None, stopper: _Stopper) -> None:
    stores = resolve_dev_stores(settings)
    try:
        master_key = ensure_dev_master_key(settings)
        settings = settings.model_copy(
            update={
                "database_url": stores.database_url,
                "redis_url": stores.redis_url,
                "master_keys": settings.master_keys or [SecretStr(master_key)],
            }
        )
        assert settings.database_url
        await asyncio.to_thread(upgrade_head, settings.database_url)
        token = await _bootstrap(settings)
        if token:
            print(
                "\nCreated workspace 'default'. Its API key (shown once, store it now):\n\n"
                f"    {token}\n\n"
                f"Try: curl -H 'Authorization: Bearer {token}' http://{host or settings.host}:"
                f"{port or settings.port}/v1/email-accounts\n",
                flush=True,
            )
        server = _Server(
            uvicorn.Config(
                create_app(settings),
                host=host or settings.host,
                port=port or settings.port,
                log_config=None,
                timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
            )
        )
        configure_process(settings, "worker")
        worker = create_worker(settings, handle_signals=False)
        # no await from here to serve(): a signal meanwhile must find the server registered
        worker_task = asyncio.create_task(worker.async_run())
        stopper.serving(server)
        log.info("dev_ready", mode=stores.mode, url=f"http://{host or settings.host}:{port or settings.port}")
        try:
            await server.serve()
        finally:
            stopper.stopping()
            await _stop_worker(worker, worker_task)
    finally:
        stopper.stopping()
        stores.close()
