"""Command line: wires settings, logs, metrics, Kafka clients and the pipeline.

It also maps failures to the process exit codes listed in ``--help``.
"""

from __future__ import annotations

import argparse
import gc
import json
import signal
import sys
import threading
import time
from typing import TYPE_CHECKING, TypeVar

from kafka import errors as kerrors
from prometheus_client import CollectorRegistry

from worker import __version__
from worker.config.settings import Settings, load_settings
from worker.errors import ConfigError

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from structlog.typing import FilteringBoundLogger

    from worker.contracts.registry import SchemaResolver

__all__ = ["main"]

T = TypeVar("T")


def _settings_help() -> str:
    lines = ["settings (environment variables):"]
    for name, field in Settings.model_fields.items():
        env = "KAFKA_BOOTSTRAP_SERVERS" if name == "bootstrap_servers" else f"CLAIMS_{name.upper()}"
        default = "" if field.default in (None, "") else f" [default: {field.default}]"
        lines.append(f"  {env:<36} {field.description}{default}")
    lines += [
        "",
        "exit codes: 0 stopped cleanly, 2 bad settings or missing topic, 3 producer fenced by a newer",
        "instance with the same transactional id, 4 Kafka or the schema registry unreachable past the",
        "limits (CLAIMS_STARTUP_RETRIES, CLAIMS_OUTAGE_LIMIT_S) or a permanent Kafka error.",
    ]
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
    sub.add_parser("print-settings", help="print the effective settings (secrets masked) as JSON")
    topics = sub.add_parser("create-topics", help="create the claims, results and dead-letter topics")
    topics.add_argument("--partitions", type=int, default=1)
    sub.add_parser(
        "seed-samples", help="produce the bundled sample claims (and poison records) to the claims topic"
    )
    show = sub.add_parser("show-results", help="print the committed results and dead letters as a table")
    show.add_argument("--timeout", type=float, default=5.0, help="seconds to wait for more records")
    for register in _feature_commands():
        register(sub)
    return parser


def _feature_commands() -> list[Callable[[argparse._SubParsersAction[argparse.ArgumentParser]], None]]:
    """Return each feature's ``register(subparsers)``; a feature's parser sets ``handler=fn(args, settings)``.

    A feature (directory, replay, authorizations, access checks...) lives in its own ``worker/cli/<name>.py``
    and adds one line here, so features do not edit each other's commands.
    """
    from worker.cli import processes  # noqa: PLC0415 - keeps `--help` fast

    return [processes.register]


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
    )


def _run(settings: Settings) -> int:
    """Start metrics and health, connect to Kafka, and run the pipeline until told to stop."""
    from worker.contracts.codec import Codec  # noqa: PLC0415
    from worker.ops.health import HealthServer  # noqa: PLC0415
    from worker.ops.logs import configure_logging, get_logger  # noqa: PLC0415
    from worker.ops.metrics import WorkerMetrics  # noqa: PLC0415
    from worker.policy import default_policy  # noqa: PLC0415
    from worker.runtime import kafka_io  # noqa: PLC0415 - keeps `--help` and print-settings fast
    from worker.runtime.pipeline import ExitCode, Pipeline  # noqa: PLC0415

    configure_logging(settings.log_format.value, settings.log_level)
    log = get_logger("claims_worker")
    bootstrap = settings.require_bootstrap()
    policy = default_policy()
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


def _seed(settings: Settings) -> int:
    from worker.contracts.codec import Codec  # noqa: PLC0415
    from worker.devtools.samples import poison_records, sample_claims  # noqa: PLC0415
    from worker.runtime.kafka_io import KafkaProducer  # noqa: PLC0415

    codec = Codec()
    producer = KafkaProducer(bootstrap_servers=settings.require_bootstrap().split(","), acks="all")
    n = 0
    for sample in sample_claims():
        value = codec.encode_claim(sample.claim, version=sample.schema_version)
        producer.send(settings.claims_topic, key=sample.claim.claim_id.encode(), value=value)
        n += 1
    for key, value in poison_records():
        producer.send(settings.claims_topic, key=key, value=value)
        n += 1
    producer.flush()
    producer.close()
    print(f"produced {n} records to {settings.claims_topic}")
    return 0


def _command(args: argparse.Namespace, settings: Settings) -> int:
    """Run the sub-command named in ``args`` and return its exit code."""
    handler = getattr(args, "handler", None)
    if handler is not None:
        return int(handler(args, settings))
    if args.command == "print-settings":
        print(json.dumps(settings.masked(), indent=2))
        return 0
    if args.command == "create-topics":
        from worker.runtime.kafka_io import create_topics  # noqa: PLC0415

        topics = [settings.claims_topic, settings.results_topic, settings.dead_letter_topic]
        create_topics(settings.require_bootstrap(), topics, args.partitions)
        print("topics ready: " + ", ".join(topics))
        return 0
    if args.command == "seed-samples":
        return _seed(settings)
    if args.command == "show-results":
        from worker.ops.report import print_results  # noqa: PLC0415

        return print_results(settings, timeout_s=args.timeout)
    return _run(settings)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``claims-worker`` console script; returns the process exit code."""
    args = _parser().parse_args(argv)
    try:
        return _command(args, load_settings())
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except kerrors.KafkaError as exc:
        print(
            f"error: Kafka failed: {type(exc).__name__} (is KAFKA_BOOTSTRAP_SERVERS right?)", file=sys.stderr
        )
        return 4


if __name__ == "__main__":
    raise SystemExit(main())
