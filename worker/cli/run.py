"""``claims-worker run``: serve health at once, connect to Kafka (stoppable), run, map the exit code.

Every wait here ends within about a second of SIGTERM/SIGINT: client constructors run on helper
threads (``failures.interruptible``) and retries sleep on the stop event (``failures.Backoff``).
"""

from __future__ import annotations

import gc
import os
import signal
import sys
import threading
from typing import TYPE_CHECKING, TypeVar

from prometheus_client import CollectorRegistry

from worker import __version__
from worker.kafka.failures import (
    Backoff,
    ExitCode,
    Kind,
    OutageTooLong,
    Stopped,
    classify,
    describe,
    interruptible,
)
from worker.ops.escaping import echo

if TYPE_CHECKING:
    from collections.abc import Callable

    from structlog.typing import FilteringBoundLogger

    from worker.config.settings import Settings
    from worker.contracts.registry import SchemaResolver
    from worker.kafka.io import KafkaProducer
    from worker.ops.metrics import WorkerMetrics
    from worker.runtime.pipeline import Pipeline

    FaultHook = Callable[[FilteringBoundLogger], Callable[[str], None] | None]
    """Makes the transaction fault hook from the worker's logger (the fault harness's entry point only)."""
    from worker.runtime.watch import GroupWatch

__all__ = ["run", "with_retries"]

T = TypeVar("T")


GC_THRESHOLDS = (20_000, 20, 20)
SWITCH_INTERVAL_S = 0.02


def with_retries(
    attempts: int,
    call: Callable[[], T],
    log: FilteringBoundLogger,
    *,
    stop: threading.Event,
    what: str = "kafka",
    backoff: Backoff | None = None,
) -> T:
    """Call a blocking ``call``, retrying transient failures up to ``attempts`` times; stoppable.

    Raises ``Stopped`` as soon as ``stop`` is set (even mid-call), ``OutageTooLong`` once the attempts
    are used up, and any non-transient failure at once.
    """
    backoff = backoff or Backoff(stop, max_attempts=attempts)
    while True:
        try:
            return interruptible(call, stop, what)
        except Stopped:
            raise
        except Exception as exc:
            if classify(exc) is not Kind.TRANSIENT:
                raise
            delay = backoff.failed(exc)
            log.warning(
                "kafka_unreachable", error=type(exc).__name__, attempt=backoff.attempts, backoff_s=delay
            )
            backoff.wait(delay)


class _EarlyProducer:
    """The first transactional producer, made on a helper thread from the process's first moments.

    Its ``init_transactions`` (which also waits while the broker aborts what a killed predecessor left
    open) then overlaps loading the policy, the codec, the consumer and the group join. The worker's
    producer factory hands it out once (or raises what making it raised), then makes new ones.
    """

    def __init__(self, make: Callable[[], KafkaProducer]) -> None:
        self._make = make
        self._done = threading.Event()
        self._lock = threading.Lock()
        self._taken = False
        self._producer: KafkaProducer | None = None
        self._error: BaseException | None = None
        threading.Thread(target=self._run, name="early-producer", daemon=True).start()

    def _run(self) -> None:
        try:
            self._producer = self._make()
        except BaseException as exc:  # noqa: BLE001 - raised by the first ``factory`` call
            self._error = exc
        finally:
            self._done.set()

    def factory(self) -> KafkaProducer:
        """Return the early producer the first time (waiting for it), a new producer after that."""
        with self._lock:
            first, self._taken = not self._taken, True
        if not first:
            return self._make()
        self._done.wait()
        if self._error is not None:
            raise self._error
        assert self._producer is not None  # noqa: S101 - set whenever no error was
        return self._producer


def _schema_resolver(settings: Settings) -> SchemaResolver | None:
    """Return the HTTP schema registry resolver when a URL is set, else ``None`` (local schema files)."""
    if not settings.schema_registry_url:
        return None
    from worker.contracts.registry import HttpSchemaResolver  # noqa: PLC0415 - only with a registry

    password = settings.schema_registry_password
    return HttpSchemaResolver(
        settings.schema_registry_url,
        username=settings.schema_registry_username,
        password=password.get_secret_value() if password is not None else None,
        ca_file=_path(settings.schema_registry_ca_file),
        cert_file=_path(settings.schema_registry_cert_file),
        key_file=_path(settings.schema_registry_key_file),
    )


def _path(value: object) -> str | None:
    return None if value is None else str(value)


def run(settings: Settings, *, fault_hook: FaultHook | None = None) -> int:  # noqa: PLR0915 - one sequence
    """Start metrics and health, connect to Kafka, and run the worker until told to stop.

    ``fault_hook`` (``None`` in production: the console script never passes one) makes the test-only
    transaction fault hook of the fault harness (``tests/chaos/faulty_worker.py``).
    """
    gc.disable()  # until the start-up objects are frozen below: collecting them as they are made is waste
    from worker.contracts.codec import Codec  # noqa: PLC0415 - keeps `--help` and print-settings fast
    from worker.kafka import io as kafka_io  # noqa: PLC0415
    from worker.ops.directory_metrics import DirectoryMetrics  # noqa: PLC0415
    from worker.ops.health import HealthServer, Readiness  # noqa: PLC0415
    from worker.ops.logs import configure_logging, get_logger, log_startup_warnings  # noqa: PLC0415
    from worker.ops.metrics import WorkerMetrics  # noqa: PLC0415
    from worker.policy import catalog_choice  # noqa: PLC0415
    from worker.runtime.compose import build_worker  # noqa: PLC0415
    from worker.runtime.reference import open_reference  # noqa: PLC0415

    configure_logging(settings.log_format.value, settings.log_level)
    log = get_logger("claims_worker")
    bootstrap = settings.require_bootstrap()
    # First: InitProducerId runs while the rest starts (the restart stall after a SIGKILL, issue 14).
    early = _EarlyProducer(lambda: kafka_io.make_producer(settings))
    # ConfigError (exit 2) names the catalog's entries, or the versions whose dates overlap or leave a gap.
    policies = catalog_choice(settings.policy)
    registry = CollectorRegistry()
    metrics = WorkerMetrics(
        registry, criterion_ids=policies.criterion_ids, reason_codes=policies.reason_codes
    )
    metrics.set_policy_info(policies.named.policy_id, policies.version_label, __version__)
    codec = Codec(resolver=_schema_resolver(settings), wire_format=settings.wire_format.value)
    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        log.info("stopping", signal=signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    readiness = Readiness()
    health = HealthServer(registry, readiness, host=settings.metrics_host, port=settings.metrics_port)
    try:
        port = health.start()  # before connecting: a liveness probe must see a worker that only waits
    except OSError as exc:
        echo(
            f"error: cannot serve metrics on {settings.metrics_host}:{settings.metrics_port} "
            f"({exc.strerror or type(exc).__name__}); set CLAIMS_METRICS_PORT",
            file=sys.stderr,
        )
        return ExitCode.BAD_SETTINGS
    log.info("metrics_serving", port=port)
    log.info(
        "starting",
        worker_version=__version__,
        policy_id=policies.named.policy_id,
        policy_version=policies.version_label,
        bootstrap_servers=bootstrap,
        group_id=settings.group_id,
        transactional_id=settings.transactional_id,
    )
    log_startup_warnings(settings, log)
    consumer = None
    reference = None
    try:
        fault = None if fault_hook is None else fault_hook(log)  # test-only (make chaos)
        # The directory first: a bad index is exit 2 before any Kafka wait; the updates topic is read
        # to its end before the worker exists, so /readyz stays "connecting" until the overlay is current.
        reference = open_reference(
            settings,
            log,
            stop,
            metrics=DirectoryMetrics(registry) if settings.directory_path is not None else None,
            connect=lambda make: with_retries(
                settings.startup_retries, make, log, stop=stop, what="directory-updates"
            ),
        )
        metrics.set_prescriber_verified(reference is not None)
        consumer = with_retries(
            settings.startup_retries,
            lambda: kafka_io.make_consumer(settings),
            log,
            stop=stop,
            what="consumer",
        )
        made = consumer
        counts = with_retries(
            settings.startup_retries,
            lambda: kafka_io.check_topics(made, settings),
            log,
            stop=stop,
            what="topics",
        )
        worker = build_worker(
            settings,
            consumer=consumer,
            codec=codec,
            policies=policies,
            metrics=metrics,
            registry=registry,
            log=log,
            claims_partitions=counts[settings.claims_topic],
            reference=reference,
            fault=fault,
            producer_factory=early.factory,
        )
        consumer = None  # the worker owns and closes it now
        # Everything loaded so far lives for the whole run: keep it out of the collector's way.
        gc.collect()
        gc.freeze()
        # Each claim allocates hundreds of short-lived objects (decoded record, model, decision, result,
        # kafka-python's record and future) and almost no cycles; the default thresholds (700, 10, 10)
        # run a young collection every few claims and a full one, over kafka-python's buffers and the
        # duplicate filter, every few hundred. Measured: 3-13% less CPU per claim (README, benchmarks).
        gc.set_threshold(*GC_THRESHOLDS)
        # kafka-python's consumer and producer I/O threads wake often and take the GIL from the loop every
        # 5 ms by default; 20 ms lets the loop judge longer stretches (3-20% less CPU per claim in five
        # paired runs) while heartbeats and sends wait at most that much longer.
        sys.setswitchinterval(SWITCH_INTERVAL_S)
        gc.enable()
        metrics.set_running(True)
        watch = _watch_group(worker, settings, metrics, log, counts[settings.claims_topic], stop)
        readiness.check = watch.sentinel.guard(worker.readiness) if watch.sentinel else worker.readiness
        worker.explain = watch.diagnose
        try:
            code = worker.run(stop)
        finally:
            watch.stop()
        code, named = watch.named_exit(code)  # the fault that stopped the loop: its code and line, not 0
        worker.failure = named or worker.failure
        _leave_group_when_done(worker, code, settings, log)
        if worker.failure is not None:  # a fatal failure inside the loop: the same one line as at start-up
            echo(f"error: {worker.failure}", file=sys.stderr)
    except Stopped:
        code = ExitCode.OK
    except OutageTooLong as exc:
        log.error("kafka_unreachable_giving_up", error=type(exc.cause).__name__, bootstrap_servers=bootstrap)  # noqa: TRY400
        echo(f"error: cannot reach Kafka at {bootstrap} ({type(exc.cause).__name__})", file=sys.stderr)
        code = ExitCode.UNREACHABLE
    except Exception as exc:  # noqa: BLE001 - every start-up failure ends in a documented exit code
        kind = classify(exc)
        message = describe(exc, settings)
        if kind is Kind.INTERNAL:
            log.error("internal_error", error=type(exc).__name__)  # noqa: TRY400 - no traceback
        else:
            log.error("startup_failed", error=type(exc).__name__, message=message)  # noqa: TRY400
        echo(f"error: {message}", file=sys.stderr)
        code = kind.exit_code if kind is not Kind.TRANSIENT else ExitCode.UNREACHABLE
    finally:
        gc.enable()  # a start-up failure left it paused
        if consumer is not None:
            consumer.close(autocommit=False)
        if reference is not None:
            reference.close()
        metrics.set_running(False)
        health.stop()
    log.info("stopped", exit_code=int(code))
    _exit_now(int(code))
    return int(code)  # pragma: no cover - only when _exit_now is stubbed out


def _watch_group(  # noqa: PLR0917 - the parts the watch reads
    worker: Pipeline,
    settings: Settings,
    metrics: WorkerMetrics,
    log: FilteringBoundLogger,
    partitions: int,
    stop: threading.Event,
) -> GroupWatch:
    """Start the watch for unowned claims partitions and operator faults (``watch.py``, ``sentinel.py``).

    An operator fault the sentinel sees (a topic deleted or shrunk, another cluster, a twin on the slot)
    sets ``stop``: the loop ends as on SIGTERM and ``_operator_fault`` gives the exit code and the line.
    """
    from worker.kafka.clients import Role, new_admin  # noqa: PLC0415
    from worker.kafka.cluster import consumer_cluster_id  # noqa: PLC0415 - as in run()
    from worker.kafka.failures import group_instance_id  # noqa: PLC0415
    from worker.runtime.sentinel import Sentinel  # noqa: PLC0415
    from worker.runtime.watch import GroupWatch  # noqa: PLC0415

    consumer = worker.consumer

    def member_id() -> str | None:
        try:
            return str(consumer.group_metadata().member_id or "")
        except Exception:  # noqa: BLE001 - a consumer closing under the watch: nothing to judge
            return None

    sentinel = Sentinel(
        settings,
        log,
        cluster_id=consumer_cluster_id(consumer),
        member_id=member_id,
        instance_id=group_instance_id(settings),
        on_fatal=stop.set,
    )
    watch = GroupWatch(
        lambda: new_admin(settings, Role.ADMIN),
        group_id=settings.group_id,
        topic=settings.claims_topic,
        partitions=lambda: worker.partitions.claims_partitions or partitions,
        publish=metrics.set_unowned_partitions,
        log=log,
        member=group_instance_id(settings),
        healed=metrics.group_healed,
        interval_s=settings.group_watch_interval_s,
        sentinel=sentinel,
    )
    watch.start()
    return watch


def _leave_group_when_done(
    worker: Pipeline, code: int, settings: Settings, log: FilteringBoundLogger
) -> None:
    """After an idle exit, give the slot's partitions back now rather than after the session timeout.

    Only then: a SIGTERM (a rolling restart) keeps the slot, which is what static membership is for.
    Best effort: the run's output is already committed, so a failure here is logged, not an error.
    """
    if not worker.idle_exited or code != ExitCode.OK:
        return
    from worker.kafka import io as kafka_io  # noqa: PLC0415 - as in run()

    try:
        answer = kafka_io.leave_group(settings)
    except Exception as exc:  # noqa: BLE001 - the work is done; the group forgets us at the session timeout
        log.warning("group_leave_failed", error=type(exc).__name__)
        return
    log.info("group_left", group_id=settings.group_id, detail=answer)


def _exit_now(code: int) -> None:
    """End the process at once: every client is closed and every line written.

    Interpreter finalisation (a full garbage collection of the run's objects, abandoned helper
    threads) took 1-3 s after a stop on a loaded 2-core host: too slow for "exit within a second".
    """
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
