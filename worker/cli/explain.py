"""The ``explain`` command: one decision as a PA pharmacist reads it, by claim id or by source coordinates.

It reads the results topic (or each ``--topic``, such as a replay's) with ``read_committed``, every
partition to the end offset it had at the start (``worker.kafka.reads.read_to_ends``, as
``show-results`` does), keeps the results that answer the claim id or the claims-topic coordinates, and
prints each one through ``worker.ops.explain``, oldest first and newest last.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from typing import TYPE_CHECKING

from worker.cli.exits import exit_epilog
from worker.errors import ExitCode
from worker.ops.escaping import echo, printable

if TYPE_CHECKING:
    from collections.abc import Mapping

    from worker.config.settings import Settings
    from worker.ops.report import Row

__all__ = ["explain_command", "register"]

_NOTHING_MATCHED = 1  # as show-results: the read was complete, and nothing answers what was asked

_EPILOG = exit_epilog(
    (ExitCode.OK, "shown"),
    (_NOTHING_MATCHED, "read to the end, nothing matched"),
    (ExitCode.BAD_SETTINGS, "a missing topic or bad arguments"),
    (ExitCode.UNREACHABLE, "Kafka unreachable or the read stalled past CLAIMS_OUTAGE_LIMIT_S"),
    (ExitCode.NOT_AUTHORIZED, "not authorized"),
    note="--at names the claims-topic coordinates a result answers, the src column of show-results"
    " (PARTITION@OFFSET or PARTITION:OFFSET). A claim id with several results (re-submissions, replays on"
    " --topic) shows each, newest last, and says how many.",
)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``explain`` sub-command to the ``claims-worker`` parser."""
    parser = sub.add_parser(
        "explain",
        help="show one decision as a PA pharmacist reads it: outcome, criteria, evidence, needs, PA number",
        description="Explain the decision on one claim: its outcome, each criterion with its status and"
        " evidence, what is needed and why, the PA number and window, the policy and reference versions,"
        " the source coordinates, and whether it was paid on file.",
        epilog=_EPILOG,
    )
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--claim-id", help="the claim id (every result for it)")
    which.add_argument(
        "--at",
        type=_coordinates,
        metavar="PARTITION@OFFSET",
        help="the claims-topic partition and offset the result answers (show-results' src)",
    )
    parser.add_argument(
        "--topic",
        action="append",
        default=[],
        help="read this topic instead (a replay's results topic; repeatable) [default: the results topic]",
    )
    parser.add_argument(
        "--format", dest="output", choices=("text", "json"), default="text", help="[default: text]"
    )
    parser.set_defaults(handler=explain_command)


def _coordinates(text: str) -> tuple[int, int]:
    """Parse ``PARTITION@OFFSET`` (or the src column's ``PARTITION:OFFSET``) for argparse."""
    separator = "@" if "@" in text else ":"
    partition, found, offset = text.partition(separator)
    if not found or not partition.isdigit() or not offset.isdigit():
        msg = f"must be PARTITION@OFFSET with whole numbers, such as 0@42, not {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return int(partition), int(offset)


def _found(
    settings: Settings, topics: list[str], args: argparse.Namespace
) -> tuple[list[tuple[Row, Mapping[str, str]]], int]:
    """Return the rows of ``topics`` that answer the asked claim id or coordinates, and how many were read."""
    from worker.contracts.codec import Codec  # noqa: PLC0415 - keeps --help fast
    from worker.kafka.reads import read_to_ends  # noqa: PLC0415
    from worker.ops.explain import replay_headers  # noqa: PLC0415
    from worker.ops.report import UNREADABLE, Selection, to_row  # noqa: PLC0415

    if args.at is None:
        selection = Selection(claim_ids=frozenset({args.claim_id}))
    else:
        partition, offset = args.at
        selection = Selection(partitions=frozenset({partition}), offsets=(offset, offset))
    codec = Codec()
    found: list[tuple[Row, Mapping[str, str]]] = []
    read = 0
    for topic in topics:
        for record in read_to_ends(settings, topic):
            read += 1
            row = to_row(codec, topic, record)
            if row.kind != UNREADABLE and selection.keeps(row):
                found.append((row, replay_headers(record.headers)))
    return found, read


def explain_command(args: argparse.Namespace, settings: Settings) -> int:
    """Print the explanation of every result that answers ``args``; returns the exit code (see the epilog).

    Raises ``ConfigError`` (exit 2) for a missing topic and ``KafkaTimeoutError`` (exit 4) for a stalled
    read, so that no partial read ends in 0 or 1.
    """
    from worker.ops.explain import explain, json_text, newest_last, text_lines  # noqa: PLC0415

    topics: list[str] = args.topic or [settings.results_topic]
    asked = f"claim id {args.claim_id}" if args.at is None else f"source {args.at[0]}@{args.at[1]}"
    found, read = _found(settings, topics, args)
    rows = newest_last(found)
    read_from = (
        f"{read} record{'' if read == 1 else 's'} read from {', '.join(topics)}"
        " (read_committed, every partition to its end)"
    )
    if not rows:
        echo(f"no result for {printable(asked)}: {read_from}", file=sys.stderr)
        if args.at is None:
            echo(
                f"a record the worker could not judge is a dead letter: claims-worker show-results"
                f" --topic {settings.dead_letter_topic} --claim-id {printable(args.claim_id)}",
                file=sys.stderr,
            )
        return _NOTHING_MATCHED
    kinds = Counter(row.kind for row, _ in rows)
    count = ", ".join(
        f"{n} {kind.replace('_', ' ')}{'' if n == 1 else 's'}"
        for kind, n in sorted(kinds.items(), reverse=True)
    )
    count += f" for {printable(asked)}"
    count += ", newest last" if len(rows) > 1 else ""
    if args.output == "json":
        for row, replay in rows:
            echo(json_text(explain(row, replay)))
        echo(f"{count}; {read_from}", file=sys.stderr)
        return ExitCode.OK
    echo(f"{count}; {read_from}")
    for n, (row, replay) in enumerate(rows, start=1):
        echo()
        if len(rows) > 1:
            echo(f"[{n} of {len(rows)}]")
        echo("\n".join(text_lines(explain(row, replay))))
    return ExitCode.OK
