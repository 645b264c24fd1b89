"""Command line: wires settings, logs, metrics, Kafka clients and the pipeline.

It also maps failures to the process exit codes listed in ``--help``.
"""

from __future__ import annotations

import argparse
import gc
import signal
import sys
import threading
import time
from typing import TYPE_CHECKING, TypeVar

from kafka import errors as kerrors
from prometheus_client import CollectorRegistry

from worker import __version__
from worker.config.settings import Settings, load_settings
from worker.errors import ConfigError, ExitCode, NotAuthorized

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from structlog.typing import FilteringBoundLogger

    from worker.contracts.registry import SchemaResolver

__all__ = ["main"]

T = TypeVar("T")

# The process exit codes, fixed for every command; `--help` prints them.
EXIT_CODES: tuple[tuple[ExitCode, str], ...] = (
    (ExitCode.OK, "stopped cleanly (SIGTERM/SIGINT, or idle past CLAIMS_EXIT_WHEN_IDLE_S)"),
    (
        ExitCode.BAD_SETTINGS,
        "bad settings or arguments, a missing or mis-sized topic, the metrics port in use",
    ),
    (ExitCode.FENCED, "fenced: another live instance owns the transactional id or the static member id"),
    (
        ExitCode.KAFKA_FATAL,
        "Kafka or the schema registry unreachable past CLAIMS_STARTUP_RETRIES / CLAIMS_OUTAGE_LIMIT_S",
    ),
    (
        ExitCode.NOT_AUTHORIZED,
        "not authorized: authentication failed or an ACL is missing (the topic, group or id is named)",
    ),
    (ExitCode.UNSUPPORTED_VERSION, "unsupported broker version"),
    (
        ExitCode.INTERNAL_ERROR,
        "unexpected internal error (one log line with its type and the record's coordinates)",
    ),
)


def _settings_help() -> str:
    lines = ["settings (environment variables):"]
    for name, field in Settings.model_fields.items():
        env = "KAFKA_BOOTSTRAP_SERVERS" if name == "bootstrap_servers" else f"CLAIMS_{name.upper()}"
        default = "" if field.default in (None, "") else f" [default: {field.default}]"
        lines.append(f"  {env:<36} {field.description}{default}")
    lines += ["", "exit codes:", *(f"  {code.value:<3} {meaning}" for code, meaning in EXIT_CODES)]
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="claims-worker",
        description="Adjudicate pharmacy claims from Kafka against the Ixempra prior-authorization policy.",
        epilog=_settings_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"claims-worker {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser(
        "run",
        help="run the worker until SIGTERM/SIGINT",
        epilog=_settings_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    for register in _feature_commands():
        register(sub)
    return parser


def _feature_commands() -> list[Callable[[argparse._SubParsersAction[argparse.ArgumentParser]], None]]:
    """Return each feature's ``register(subparsers)``; a feature's parser sets ``handler=fn(args, settings)``.

    A feature (directory, replay, authorizations, access checks...) lives in its own ``worker/cli/<name>.py``
    and adds one line here, so features do not edit each other's commands.
    """
    from worker.cli import access, admin, directory, processes  # noqa: PLC0415 - each feature's module

    return [admin.register, directory.register, access.register, processes.register]


def _with_retries(attempts: int, call: Callable[[], T], log: FilteringBoundLogger) -> T:
    """Call ``call``, retrying transient Kafka errors with exponential backoff (capped at 10 s)."""
    delay = 0.5
    for attempt in range(attempts + 1):
        try:
            return call()
        except (kerrors.KafkaTimeoutError, kerrors.KafkaConnectionError) as exc:
            if attempt == attempts:
                raise
            log.warning("kafka_unreachable", error=type(exc).__name__, attempt=attempt + 1, backoff_s=delay)
            time.sleep(delay)
            delay = min(delay * 2, 10.0)
    msg = "unreachable"
    raise AssertionError(msg)


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


def _run(settings: Settings) -> int:
    """Start metrics and health, connect to Kafka, and run the pipeline until told to stop."""
    from worker.contracts.codec import Codec  # noqa: PLC0415
    from worker.ops.health import HealthServer  # noqa: PLC0415
    from worker.ops.logs import configure_logging, get_logger  # noqa: PLC0415
    from worker.ops.metrics import WorkerMetrics  # noqa: PLC0415
    from worker.policy import catalog_policy  # noqa: PLC0415
    from worker.runtime import kafka_io  # noqa: PLC0415 - keeps `--help` and print-settings fast
    from worker.runtime.pipeline import Pipeline  # noqa: PLC0415

    configure_logging(settings.log_format.value, settings.log_level)
    log = get_logger("claims_worker")
    bootstrap = settings.require_bootstrap()
    policy = catalog_policy(settings.policy)  # ConfigError (exit 2) names the catalog's entries
    registry = CollectorRegistry()
    metrics = WorkerMetrics(registry, criterion_ids=policy.criterion_ids, reason_codes=policy.reason_codes)
    metrics.set_policy_info(policy.policy_id, policy.version, __version__)
    codec = Codec(resolver=_schema_resolver(settings), wire_format=settings.wire_format.value)
    stop = threading.Event()
    # Everything loaded so far lives for the whole run: keep it out of the collector's way.
    gc.collect()
    gc.freeze()

    def on_signal(signum: int, _frame: object) -> None:
        log.info("stopping", signal=signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    log.info(
        "starting",
        worker_version=__version__,
        policy_id=policy.policy_id,
        policy_version=policy.version,
        bootstrap_servers=bootstrap,
        group_id=settings.group_id,
        transactional_id=settings.transactional_id,
    )
    try:
        consumer = _with_retries(settings.startup_retries, lambda: kafka_io.make_consumer(settings), log)
    except kerrors.KafkaError as exc:
        log.error("kafka_unreachable_giving_up", error=type(exc).__name__, bootstrap_servers=bootstrap)  # noqa: TRY400
        print(f"error: cannot reach Kafka at {bootstrap} ({type(exc).__name__})", file=sys.stderr)
        return ExitCode.KAFKA_FATAL
    try:
        kafka_io.check_topics(consumer, settings)
    except ConfigError:
        consumer.close()
        raise

    def producer_factory() -> kafka_io.KafkaProducer:
        return _with_retries(settings.startup_retries, lambda: kafka_io.make_producer(settings), log)

    def readback(partition: int) -> list[str]:
        return kafka_io.read_event_ids(
            settings,
            settings.results_topic,
            partition,
            settings.dedup_window,
            timeout_s=settings.transaction_timeout_ms / 1000 + 5,
        )

    pipeline = Pipeline(
        settings, consumer, producer_factory, codec, metrics, log, policy=policy, readback=readback
    )
    health = HealthServer(
        registry, pipeline.readiness, host=settings.metrics_host, port=settings.metrics_port
    )
    port = health.start()
    log.info("metrics_serving", port=port)
    metrics.set_running(True)
    try:
        code = pipeline.run(stop)
    finally:
        metrics.set_running(False)
        health.stop()
    log.info("stopped", exit_code=code)
    return code


def _command(args: argparse.Namespace, settings: Settings) -> int:
    """Run the sub-command named in ``args`` and return its exit code."""
    if args.command != "print-settings":
        from worker.runtime.clients import check_login  # noqa: PLC0415

        check_login(settings)  # a refused login or untrusted certificate: NotAuthorized, exit 5
    if args.command == "run":
        from worker.runtime.access import require_worker_access  # noqa: PLC0415

        require_worker_access(settings)  # a missing topic or group ACL: exit 5 before consuming
    handler = getattr(args, "handler", None)
    if handler is not None:
        return int(handler(args, settings))
    return _run(settings)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``claims-worker`` console script; returns the process exit code."""
    args = _parser().parse_args(argv)
    try:
        return _command(args, load_settings())
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return ExitCode.BAD_SETTINGS
    except NotAuthorized as exc:
        print(f"error: {exc}", file=sys.stderr)
        return ExitCode.NOT_AUTHORIZED
    except kerrors.TransactionalIdAuthorizationFailedError:
        print(
            "error: not authorized: WRITE on the transactional id (prefix CLAIMS_TRANSACTIONAL_ID_PREFIX-) "
            "is missing; `claims-worker check-access` lists every right",
            file=sys.stderr,
        )
        return ExitCode.NOT_AUTHORIZED
    except kerrors.AuthorizationError as exc:
        print(
            f"error: not authorized ({type(exc).__name__}); `claims-worker check-access` names the right",
            file=sys.stderr,
        )
        return ExitCode.NOT_AUTHORIZED
    except kerrors.KafkaError as exc:
        print(
            f"error: Kafka failed: {type(exc).__name__} (is KAFKA_BOOTSTRAP_SERVERS right?)", file=sys.stderr
        )
        return ExitCode.KAFKA_FATAL


if __name__ == "__main__":
    raise SystemExit(main())
