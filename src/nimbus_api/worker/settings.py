"""arq worker configuration, built from ``Settings`` (arq wants a class; we build its arguments).

Every task is wrapped by ``resilience.rides_out`` and the worker is a ``ResilientWorker``: a Redis or
PostgreSQL outage is waited out, never the end of the process.
"""

from __future__ import annotations

import uuid
from typing import Any

import structlog
from arq import cron, func
from arq.connections import RedisSettings

from nimbus_api.account_imports.tasks import RUN_JOB_TIMEOUT, resume_account_imports, run_account_import
from nimbus_api.alerts.tasks import evaluate_alerts
from nimbus_api.config import Settings
from nimbus_api.credentials.tasks import ROTATION_JOB_TIMEOUT, rotate_data_keys
from nimbus_api.credentials.vault import Actor, Vault
from nimbus_api.domains.tasks import CHECK_JOB_TIMEOUT, check_domains
from nimbus_api.events.tasks import purge_events
from nimbus_api.health.tasks import cron_times, recompute_account, recompute_all, recompute_requested
from nimbus_api.kit import metrics
from nimbus_api.kit.crypto import MasterKeyring
from nimbus_api.kit.db import make_engine, make_sessionmaker, open_connections
from nimbus_api.kit.net import build_net_context
from nimbus_api.kit.outage import Outages
from nimbus_api.oauth.tasks import refresh_oauth_tokens
from nimbus_api.provider_hooks.tasks import purge_provider_hook_events
from nimbus_api.provider_quotas.tasks import refresh_provider_quotas
from nimbus_api.sending.mx import MxChecker
from nimbus_api.sending.tasks import QUEUE_NAME, SEND_JOB_TIMEOUT, dispatch_tick, send_inbox, sweep_tick
from nimbus_api.smtp.pacing import Pacer
from nimbus_api.smtp.pool import SmtpPool
from nimbus_api.stages.tasks import apply_stages_tick
from nimbus_api.sync.runner import SyncRunner, sync_config
from nimbus_api.warmup.tasks import warmup_plan, warmup_receive, warmup_send
from nimbus_api.webhooks.runtime import build_dispatcher, build_kit
from nimbus_api.worker.context import WorkerResources
from nimbus_api.worker.resilience import OUTAGES_KEY, ResilientWorker, rides_out
from nimbus_api.worker.tasks import purge_idempotency_keys

log = structlog.get_logger(__name__)
FUNCTIONS: list[Any] = [
    func(rides_out(purge_idempotency_keys)),
    func(rides_out(purge_events), keep_result=0),
    func(rides_out(send_inbox), keep_result=0, timeout=SEND_JOB_TIMEOUT),
    func(rides_out(dispatch_tick), keep_result=0),
    func(rides_out(sweep_tick), keep_result=0),
    func(rides_out(recompute_all), keep_result=0),
    func(rides_out(recompute_requested), keep_result=0),
    func(rides_out(recompute_account), keep_result=0),
    func(rides_out(apply_stages_tick), keep_result=0),
    func(rides_out(check_domains), keep_result=0, timeout=CHECK_JOB_TIMEOUT),
    func(rides_out(warmup_plan), keep_result=0),
    func(rides_out(warmup_send), keep_result=0),
    func(rides_out(warmup_receive), keep_result=0),
    func(rides_out(evaluate_alerts), keep_result=0),
    func(rides_out(refresh_provider_quotas), keep_result=0),
    func(rides_out(refresh_oauth_tokens), keep_result=0),  # OAuth accounts: tokens refreshed before expiry
    func(rides_out(run_account_import), keep_result=0, timeout=RUN_JOB_TIMEOUT),
    func(rides_out(resume_account_imports), keep_result=0),  # imports whose runner stopped
]
_EVERY_5_SECONDS = set(range(0, 60, 5))
_EVERY_30_SECONDS = {0, 30}


def deliverability_crons(settings: Settings) -> list[Any]:
    """The deliverability engine's crons: health recompute (all inboxes, and those an event marked), the
    stage table, the warmup exchange (plan, send, receive), the nightly domain checks, the alert rules and
    the provider quotas. Every worker may run them (each locks the rows it writes; arq runs a cron once per
    tick across workers); ``NIMBUS_DELIVERABILITY_ENABLED=false`` keeps a process out of them (the tests'
    workers, which drive these jobs directly)."""
    if not settings.deliverability_enabled:
        return []
    health_every = cron_times(settings.health_recompute_seconds)
    requests_every = cron_times(settings.health_request_seconds)
    return [
        cron(
            rides_out(recompute_all),
            minute=health_every[0],
            second=health_every[1],
            run_at_startup=True,
            unique=True,
            keep_result=0,
        ),
        cron(
            rides_out(recompute_requested),
            minute=requests_every[0],
            second=requests_every[1],
            unique=True,
            keep_result=0,
        ),
        # warmup stages from the stage table (``stages.tasks``), every 5 minutes (a health recompute also
        # applies them to the inboxes it recomputes)
        cron(rides_out(apply_stages_tick), minute=set(range(2, 60, 5)), unique=True, keep_result=0),
        cron(rides_out(warmup_plan), minute=set(range(0, 60, 10)), run_at_startup=True, unique=True, keep_result=0),
        cron(rides_out(warmup_send), second=_EVERY_30_SECONDS, unique=True, keep_result=0),
        cron(rides_out(warmup_receive), second={15}, unique=True, keep_result=0),
        cron(
            rides_out(check_domains),
            hour={settings.domain_check_hour},
            minute={11},
            unique=True,
            keep_result=0,
            timeout=CHECK_JOB_TIMEOUT,
        ),
        cron(
            rides_out(evaluate_alerts),
            minute=set(range(0, 60, settings.alert_evaluation_minutes)),
            second={15},
            unique=True,
            keep_result=0,
        ),
        cron(rides_out(refresh_provider_quotas), second={17}, unique=True, keep_result=0),
    ]


def worker_kwargs(settings: Settings) -> dict[str, Any]:
    if not settings.database_url or not settings.redis_url:
        raise RuntimeError("NIMBUS_DATABASE_URL and NIMBUS_REDIS_URL must be set")
    keyring = MasterKeyring.from_strings([k.get_secret_value() for k in settings.master_keys])
    database_url = settings.database_url

    async def on_startup(ctx: dict[str, Any]) -> None:
        metrics.check_multiprocess_dir()
        # Tried again until PostgreSQL answers (``ResilientWorker``): the engine is disposed of each time.
        engine = make_engine(database_url, pool_size=settings.db_pool_size, max_overflow=settings.db_max_overflow)
        try:
            await open_connections(engine, settings.db_pool_size)
        except BaseException:
            await engine.dispose()
            raise
        net = build_net_context(settings)
        pool = SmtpPool(net)
        await pool.start()
        rate = settings.smtp_rate_per_connection
        vault = Vault(keyring)
        sessionmaker = make_sessionmaker(engine)
        kit = build_kit(settings, net, vault, Actor.system("webhook_dispatcher"))
        dispatcher = None
        if settings.webhook_dispatcher:
            dispatcher = build_dispatcher(settings, kit, sessionmaker, outages=ctx[OUTAGES_KEY])
            dispatcher.start()
        worker_id = f"worker-{uuid.uuid4().hex[:10]}"
        sync = None
        if settings.sync_enabled:
            sync = SyncRunner(
                sessionmaker,
                net,
                vault,
                sync_config(settings),
                owner=worker_id,
                outages=ctx[OUTAGES_KEY],
                oauth_settings=settings,  # OAuth mailboxes refresh their tokens (oauth/)
            )
            sync.start()
        ctx["nimbus"] = WorkerResources(
            settings=settings,
            engine=engine,
            sessionmaker=sessionmaker,
            vault=vault,
            pool=pool,
            pacer=Pacer(ctx["redis"], rate),
            mx=MxChecker(net.resolver),
            worker_id=worker_id,
            outages=ctx[OUTAGES_KEY],
            webhooks=kit,
            dispatcher=dispatcher,
            sync=sync,
        )
        log.info("worker_started", queue=QUEUE_NAME)

    async def on_shutdown(ctx: dict[str, Any]) -> None:
        resources: WorkerResources | None = ctx.get("nimbus")
        if resources is not None:
            if resources.sync is not None:
                await resources.sync.stop()
            if resources.dispatcher is not None:
                await resources.dispatcher.stop()
            if resources.webhooks is not None:
                await resources.webhooks.close()
            await resources.pool.close()
            await resources.engine.dispose()
        metrics.process_exit()

    return {
        "functions": FUNCTIONS,
        "cron_jobs": [
            cron(rides_out(purge_idempotency_keys), minute={7, 37}, run_at_startup=True, unique=True),
            cron(rides_out(purge_events), minute={41}, unique=True, keep_result=0),
            cron(rides_out(purge_provider_hook_events), minute={47}, unique=True, keep_result=0),
            cron(rides_out(dispatch_tick), second=_EVERY_5_SECONDS, unique=True, keep_result=0),
            cron(rides_out(sweep_tick), second=_EVERY_30_SECONDS, run_at_startup=True, unique=True, keep_result=0),
            cron(rides_out(rotate_data_keys), minute={23}, unique=True, keep_result=0, timeout=ROTATION_JOB_TIMEOUT),
            cron(rides_out(refresh_oauth_tokens), second={43}, unique=True, keep_result=0),
            cron(
                rides_out(resume_account_imports),
                second=_EVERY_5_SECONDS,
                run_at_startup=True,
                unique=True,
                keep_result=0,
            ),
            *deliverability_crons(settings),
        ],
        "redis_settings": RedisSettings.from_dsn(settings.redis_url),
        "queue_name": QUEUE_NAME,
        "on_startup": on_startup,
        "on_shutdown": on_shutdown,
        "keep_result": 3600,
        "max_jobs": 20,
        "job_timeout": 300,
    }


def create_worker(settings: Settings, **overrides: Any) -> ResilientWorker:
    return ResilientWorker(**{**worker_kwargs(settings), "outages": Outages(), **overrides})
