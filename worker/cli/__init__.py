"""Command line: wires settings, logs, metrics, Kafka clients and the pipeline.

It also maps failures to the process exit codes listed in ``--help``.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING

from kafka import errors as kerrors

from worker import __version__
from worker.config.settings import Settings, load_settings
from worker.errors import ConfigError

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

__all__ = ["main"]


def _settings_help() -> str:
    lines = ["settings (environment variables):"]
    for name, field in Settings.model_fields.items():
        env = "KAFKA_BOOTSTRAP_SERVERS" if name == "bootstrap_servers" else f"CLAIMS_{name.upper()}"
        default = "" if field.default in (None, "") else f" [default: {field.default}]"
        lines.append(f"  {env:<36} {field.description}{default}")
    lines += [
        "",
        "exit codes: 0 stopped cleanly; 2 bad settings, a missing topic or an output topic with too few",
        "partitions; 3 fenced: another live worker uses this CLAIMS_INSTANCE (transactional id or static",
        "member id); 4 Kafka or the schema registry unreachable past the limits (CLAIMS_STARTUP_RETRIES,",
        "CLAIMS_OUTAGE_LIMIT_S); 5 not authorized (the message names the topic, group or transactional",
        "id); 6 unsupported broker version; 70 unexpected internal error.",
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
    return []


def _schema_resolver(settings: Settings) -> object:
    """Return the schema registry resolver for ``settings`` (see ``worker.cli.run``)."""
    from worker.cli.run import _schema_resolver as resolver  # noqa: PLC0415 - keeps `--help` fast

    return resolver(settings)


def _run(settings: Settings) -> int:
    """Run the worker until SIGTERM/SIGINT (see ``worker.cli.run``)."""
    from worker.cli.run import run  # noqa: PLC0415 - keeps `--help` and print-settings fast

    return run(settings)


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
