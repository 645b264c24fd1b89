"""Operator sub-commands beside `run`: print-settings, create-topics, seed-samples and show-results.

Each one is registered through ``register(subparsers)`` and runs as ``handler(args, settings)``.
"""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING

from worker.cli.exits import exit_epilog
from worker.cli.selectors import moment, natural, offsets
from worker.errors import ConfigError, ExitCode
from worker.ops.escaping import echo

if TYPE_CHECKING:
    from worker.config.settings import Settings

__all__ = ["register"]

# Defaults that suit a production cluster: three copies, and a write needs two in sync, so one
# broker can be down without losing acknowledged records or stopping writes. One local broker needs 1 and 1.
DEFAULT_REPLICATION_FACTOR = 3
DEFAULT_MIN_INSYNC_REPLICAS = 2
_UNREACHABLE = (ExitCode.UNREACHABLE, "no broker answer within CLAIMS_ADMIN_TIMEOUT_S")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the admin sub-commands to the ``claims-worker`` parser."""
    sub.add_parser(
        "print-settings",
        help="print the effective settings (secrets masked) as JSON",
        epilog=exit_epilog((ExitCode.OK, "printed"), (ExitCode.BAD_SETTINGS, "bad settings")),
    ).set_defaults(handler=print_settings)
    topics = sub.add_parser(
        "create-topics",
        help="create the claims, results and dead-letter topics (existing ones are left alone)",
        epilog=exit_epilog(
            (ExitCode.OK, "the topics exist"),
            (ExitCode.BAD_SETTINGS, "bad arguments or settings, or the cluster refused the topic settings"),
            _UNREACHABLE,
            (ExitCode.NOT_AUTHORIZED, "not authorized (CREATE on the cluster or the topics)"),
        ),
    )
    topics.add_argument("--partitions", type=_positive, default=1, help="partitions per topic [default: 1]")
    topics.add_argument(
        "--replication-factor",
        type=_positive,
        default=DEFAULT_REPLICATION_FACTOR,
        help=f"copies of each partition [default: {DEFAULT_REPLICATION_FACTOR}; 1 for a single broker]",
    )
    topics.add_argument(
        "--min-insync-replicas",
        type=_positive,
        default=DEFAULT_MIN_INSYNC_REPLICAS,
        help="the topics' min.insync.replicas: copies that must have a write before it is acknowledged"
        f" [default: {DEFAULT_MIN_INSYNC_REPLICAS}; 1 for a single broker]",
    )
    topics.set_defaults(handler=create_topics)
    seed = sub.add_parser(
        "seed-samples",
        help="produce the bundled sample claims (and poison records) to the claims topic",
        epilog=exit_epilog(
            (ExitCode.OK, "produced"),
            (ExitCode.BAD_SETTINGS, "bad settings or a missing claims topic"),
            _UNREACHABLE,
            (ExitCode.NOT_AUTHORIZED, "not authorized"),
        ),
    )
    seed.add_argument(
        "--directory-samples",
        action="store_true",
        help="also produce claims without a taxonomy, decided through the bundled sample directory",
    )
    seed.set_defaults(handler=seed_samples)
    _register_show(sub)


def _register_show(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``show-results``: every committed result and dead letter, filtered, as a table or JSON Lines."""
    from worker.contracts.codes import DecisionSource, Outcome  # noqa: PLC0415 - keeps imports light

    show = sub.add_parser(
        "show-results",
        help="print the committed results and dead letters (every partition, to its end) as a table or JSON",
        epilog=exit_epilog(
            (ExitCode.OK, "rows shown"),
            (1, "read to the end, nothing matched"),
            (ExitCode.BAD_SETTINGS, "a missing topic or bad arguments"),
            (ExitCode.UNREACHABLE, _UNREACHABLE[1] + " or the read stalled past CLAIMS_OUTAGE_LIMIT_S"),
            (ExitCode.NOT_AUTHORIZED, "not authorized"),
            note="--partition and --offsets select by the claims-topic coordinates a row answers (the src"
            " column); --since/--until by the record's Kafka timestamp.",
        ),
    )
    show.add_argument("--claim-id", action="append", default=[], help="only this claim id (repeatable)")
    show.add_argument(
        "--outcome",
        action="append",
        default=[],
        choices=[*(o.value for o in Outcome), "DEAD_LETTER", "UNREADABLE"],
        help="only this outcome (repeatable)",
    )
    show.add_argument(
        "--decision-source",
        action="append",
        default=[],
        choices=[d.value for d in DecisionSource],
        help="only results from this decision step (repeatable)",
    )
    show.add_argument(
        "--partition",
        action="append",
        default=[],
        type=natural,
        help="only this source partition (repeatable)",
    )
    show.add_argument("--offsets", type=offsets, help="only source offsets A-B (inclusive; A- or -B open)")
    show.add_argument(
        "--since", type=moment, help="only records written at or after this ISO time (UTC if naive)"
    )
    show.add_argument("--until", type=moment, help="only records written before this ISO time (UTC if naive)")
    show.add_argument(
        "--format", dest="output", choices=("table", "json"), default="table", help="[default: table]"
    )
    show.add_argument(
        "--topic",
        action="append",
        default=[],
        help="read this topic instead (a replay or dead-letter topic; repeatable)"
        " [default: the results and dead-letter topics]",
    )
    show.set_defaults(handler=show_results)


def _positive(text: str) -> int:
    """Parse a whole number of at least 1 for argparse."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        msg = f"must be a whole number of at least 1, not {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return value


def print_settings(_args: argparse.Namespace, settings: Settings) -> int:
    """Print the effective settings as JSON with secrets masked."""
    echo(json.dumps(settings.masked(), indent=2))
    return 0


def create_topics(args: argparse.Namespace, settings: Settings) -> int:
    """Create the three topics with the asked partitions, replication factor and min.insync.replicas."""
    if args.min_insync_replicas > args.replication_factor:
        msg = (
            f"--min-insync-replicas {args.min_insync_replicas} exceeds --replication-factor"
            f" {args.replication_factor}: no write could ever be acknowledged"
        )
        raise ConfigError(msg)
    from worker.kafka.topics import create_topics as create  # noqa: PLC0415 - keeps --help fast

    topics = [settings.claims_topic, settings.results_topic, settings.dead_letter_topic]
    create(
        settings,
        topics,
        args.partitions,
        replication_factor=args.replication_factor,
        min_insync_replicas=args.min_insync_replicas,
    )
    echo("topics ready: " + ", ".join(topics))
    return 0


def seed_samples(args: argparse.Namespace, settings: Settings) -> int:
    """Produce the bundled sample claims and poison records (and directory samples) to the claims topic."""
    from worker.contracts.codec import Codec  # noqa: PLC0415
    from worker.kafka.clients import Role, new_producer  # noqa: PLC0415
    from worker.kafka.topics import require_topic  # noqa: PLC0415
    from worker.samples import directory_samples, poison_records, sample_claims  # noqa: PLC0415

    require_topic(settings, settings.claims_topic, Role.SEEDER)  # a missing topic: one line, exit 2
    codec = Codec()
    producer = new_producer(settings, Role.SEEDER, acks="all")
    n = 0
    samples = sample_claims()
    if getattr(args, "directory_samples", False):
        samples += directory_samples()
    for sample in samples:
        value = codec.encode_claim(sample.claim, version=sample.schema_version)
        producer.send(settings.claims_topic, key=sample.claim.claim_id.encode(), value=value)
        n += 1
    for key, value in poison_records():
        producer.send(settings.claims_topic, key=key, value=value)
        n += 1
    producer.flush()
    producer.close()
    echo(f"produced {n} records to {settings.claims_topic}")
    return 0


def show_results(args: argparse.Namespace, settings: Settings) -> int:
    """Print the committed results and dead letters that the filters keep, as a table or JSON Lines."""
    from worker.ops.report import Selection, print_results  # noqa: PLC0415

    if args.since is not None and args.until is not None and args.since >= args.until:
        raise ConfigError("--since must be before --until")
    selection = Selection(
        claim_ids=frozenset(args.claim_id),
        outcomes=frozenset(args.outcome),
        decision_sources=frozenset(args.decision_source),
        partitions=frozenset(args.partition),
        offsets=args.offsets,
        since=args.since,
        until=args.until,
    )
    return print_results(settings, topics=args.topic or None, selection=selection, output=args.output)
