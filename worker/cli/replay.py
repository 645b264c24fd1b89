"""``claims-worker replay``: decide a time range again into a replay topic, or ``--diff`` it against live.

``--partition`` and ``--offsets`` narrow the time range to some claims partitions and offsets (the
parsers ``show-results`` uses). Exit codes (the worker's, see ``claims-worker --help``): 0 done (a diff:
no change); 1 a diff found changes; 2 bad arguments or settings (a bad time, an unknown policy or
partition, the live results topic without ``--allow-live-topic``, a missing claims topic, a diff's
baseline with no result for the range or answering another claims topic); 3 fenced (another run of
the same replay id); 4 Kafka unreachable; 5 not authorized; 70 unexpected internal error; 130 stopped
by SIGINT/SIGTERM before the end, with one stderr line holding the command that resumes it (the same
arguments and its replay id: it resumes from its own committed progress). See docs/operations.md.
"""

from __future__ import annotations

import csv
import json
import re
import shlex
import signal
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from worker.cli.exits import exit_epilog
from worker.cli.selectors import natural, offsets
from worker.errors import ConfigError, ExitCode
from worker.ops.escaping import echo, printable
from worker.ops.impact_report import headline, impact_lines, write_report

if TYPE_CHECKING:
    import argparse
    from collections.abc import Callable

    from worker.config.settings import Settings
    from worker.contracts.model import Claim
    from worker.policy.facts import Facts
    from worker.runtime.replay_job import ReplaySummary

__all__ = ["diff_report", "parse_time", "register", "write_impact"]

_REPLAY_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
_CHANGED = 1  # a diff found changes (as `diff`): 0 no change, 1 changes, 2 trouble


def parse_time(text: str) -> datetime:
    """Parse an ISO 8601 time (``2026-11-30T08:00``, ``2026-11-30T08:00:00Z``); naive times are UTC."""
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        msg = f"not an ISO 8601 time: {text!r} (e.g. 2026-11-30T08:00:00Z)"
        raise ConfigError(msg) from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``replay`` to the ``claims-worker`` parser."""
    parser = sub.add_parser(
        "replay",
        help="decide a time range of the claims topic again (into a replay topic), or --diff it",
        epilog=exit_epilog(
            (ExitCode.OK, "done (a diff: no claim changed)"),
            (_CHANGED, "a diff found changed claims"),
            (
                ExitCode.BAD_SETTINGS,
                (
                    "bad arguments or settings, a missing claims topic or partition, a diff's baseline"
                    " results with nothing for the range or answering another claims topic"
                ),
            ),
            (ExitCode.FENCED, "fenced (the same replay id runs elsewhere)"),
            (ExitCode.UNREACHABLE, "Kafka unreachable (no broker answer within CLAIMS_ADMIN_TIMEOUT_S)"),
            (ExitCode.NOT_AUTHORIZED, "not authorized"),
            (ExitCode.INTERNAL, "internal error"),
            (
                ExitCode.INTERRUPTED,
                "stopped by SIGINT/SIGTERM before the end: it prints the command to resume",
            ),
            note="A stopped replay resumes from its own committed progress when run again with the same"
            " arguments (or --replay-id).",
        ),
    )
    parser.add_argument(
        "--from", "--since", dest="start", required=True, help="start of the range (ISO 8601; UTC if naive)"
    )
    parser.add_argument(
        "--to", "--until", dest="end", help="end of the range, exclusive [default: the end offsets now]"
    )
    parser.add_argument(
        "--partition",
        action="append",
        default=[],
        type=natural,
        help="only this claims partition (repeatable) [default: every partition]",
    )
    parser.add_argument(
        "--offsets",
        type=offsets,
        help="only claims offsets A-B of the range (inclusive; A- or -B open), in each partition",
    )
    parser.add_argument(
        "--policy",
        help="catalog policy ID (each claim under the version in effect on its date of service) or "
        "ID/VERSION (pinned) [default: CLAIMS_POLICY]",
    )
    parser.add_argument("--output-topic", help="replay results topic [default: <results topic>.replay.<id>]")
    parser.add_argument(
        "--dead-letter-topic", help="replay dead letters [default: <output topic>.dead-letter]"
    )
    parser.add_argument("--replay-id", help="name of the run (group and transactional id derive from it)")
    parser.add_argument(
        "--allow-live-topic", action="store_true", help="allow writing to the live results/dead-letter topics"
    )
    parser.add_argument("--diff", action="store_true", help="compare with the live results; publish nothing")
    parser.add_argument(
        "--changes",
        type=Path,
        help="diff: changed claims file, .jsonl or .csv [default: replay-diff-<id>.jsonl]",
    )
    parser.add_argument(
        "--report",
        type=Path,
        help="diff: impact report PREFIX: writes PREFIX.html, PREFIX.csv, PREFIX.json"
        " [default: the --changes path without its suffix, plus .impact]",
    )
    parser.add_argument(
        "--metrics-file", type=Path, help="write the run's Prometheus metrics here (textfile)"
    )
    parser.add_argument("--progress", choices=("auto", "on", "off"), default="auto", help="progress bar")
    parser.set_defaults(handler=_handle)


def _directory(settings: Settings) -> tuple[Callable[[Claim], Facts] | None, str]:
    """Return the directory lookup pinned for the whole run and its version ("none": no directory)."""
    if settings.directory_path is None:
        return None, "none"
    from worker.directory import Directory, DirectoryIndexError  # noqa: PLC0415

    try:
        directory = Directory.open(settings.directory_path)
    except (OSError, DirectoryIndexError) as exc:
        msg = f"CLAIMS_DIRECTORY_PATH: cannot open the directory index ({type(exc).__name__})"
        raise ConfigError(msg) from None

    from worker.runtime.reference import lookup as directory_lookup  # noqa: PLC0415

    def lookup(claim: Claim) -> Facts:
        return directory_lookup(directory, claim)  # the live worker's lookup, pinned to this index

    return lookup, directory.version


def _targets(
    args: argparse.Namespace, settings: Settings, start: datetime, end: datetime | None, policy_ref: str
) -> tuple[str, str | None, str | None]:
    """Return the replay id and its output topics (``None`` for a diff); refuse the live and claims topics."""
    from worker.runtime.replay_job import default_replay_id  # noqa: PLC0415

    output = None if args.diff else args.output_topic
    replay_id = args.replay_id or default_replay_id(
        start, end, policy_ref, "diff" if args.diff else (output or "replay:default"), _selection(args)
    )
    if not _REPLAY_ID.fullmatch(replay_id):
        msg = f"--replay-id {replay_id!r}: use 1-64 letters, digits, '.', '_' or '-' (it names a group)"
        raise ConfigError(msg)
    if args.diff:
        return replay_id, None, None
    output = output or f"{settings.results_topic}.replay.{replay_id}"
    dead_letters = args.dead_letter_topic or f"{output}.dead-letter"
    live = sorted({output, dead_letters} & {settings.results_topic, settings.dead_letter_topic})
    if live and not args.allow_live_topic:
        msg = f"refusing to replay into a live topic ({', '.join(live)}); pass --allow-live-topic to mean it"
        raise ConfigError(msg)
    if settings.claims_topic in {output, dead_letters}:
        raise ConfigError("the replay output cannot be the claims topic")
    return replay_id, output, dead_letters


def _selection(args: argparse.Namespace) -> str:
    """Name ``--partition``/``--offsets`` for the default replay id (``""`` when neither is given)."""
    parts = ",".join(str(p) for p in sorted(set(args.partition)))
    low, high = args.offsets or (None, None)
    span = "" if args.offsets is None else f"{'' if low is None else low}-{'' if high is None else high}"
    return f"p={parts};o={span}" if parts or span else ""


def resume_command(args: argparse.Namespace, replay_id: str) -> str:
    """Return the command line that resumes this run: its own arguments, with its replay id pinned.

    A replay resumes from its group's committed offsets (the range's end is recorded with them), and
    the group is named by the replay id; a diff keeps no progress, so the same command starts it over.
    """
    argv = ["claims-worker", "replay", "--from", args.start]
    argv += ["--to", args.end] if args.end else []
    for partition in sorted(set(args.partition)):
        argv += ["--partition", str(partition)]
    if args.offsets is not None:
        low, high = args.offsets
        argv += ["--offsets", f"{'' if low is None else low}-{'' if high is None else high}"]
    for flag, value in (
        ("--policy", args.policy),
        ("--output-topic", args.output_topic),
        ("--dead-letter-topic", args.dead_letter_topic),
        ("--changes", args.changes),
        ("--report", args.report),
        ("--metrics-file", args.metrics_file),
    ):
        argv += [flag, str(value)] if value is not None else []
    argv += ["--replay-id", replay_id]
    argv += ["--allow-live-topic"] if args.allow_live_topic else []
    argv += ["--diff"] if args.diff else []
    return shlex.join(argv)


def _handle(args: argparse.Namespace, settings: Settings) -> int:
    """Run the replay or the diff; print the summary; return the exit code."""
    from worker.cli.run import _schema_resolver  # noqa: PLC0415
    from worker.contracts.codec import Codec  # noqa: PLC0415
    from worker.kafka.failures import Kind, classify, describe  # noqa: PLC0415
    from worker.kafka.topics import create_topics  # noqa: PLC0415
    from worker.policy import catalog_choice  # noqa: PLC0415
    from worker.runtime.replay import run_replay  # noqa: PLC0415
    from worker.runtime.replay_job import ReplayJob  # noqa: PLC0415

    start = parse_time(args.start)
    end = parse_time(args.end) if args.end else None
    if end is not None and end <= start:
        raise ConfigError("--to must be after --from")
    policies = catalog_choice(args.policy or settings.policy)  # --policy <id>/<version> pins one version
    replay_id, output, dead_letters = _targets(args, settings, start, end, policies.ref)
    lookup, directory_version = _directory(settings)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    job = ReplayJob(
        settings=settings,
        codec=Codec(resolver=_schema_resolver(settings), wire_format=settings.wire_format.value),
        policy=policies.named,
        policies=policies,
        replay_id=replay_id,
        start=start,
        end=end,
        partitions=frozenset(args.partition),
        offsets=args.offsets,
        output_topic=output,
        dead_letter_topic=dead_letters,
        directory_version=directory_version,
        metrics_file=args.metrics_file,
        progress={"auto": None, "on": True, "off": False}[args.progress],
        stop=stop.is_set,
    )
    if lookup is not None:
        job.lookup_facts = lookup
    try:
        if output is not None and dead_letters is not None:
            partitions = _claims_partitions(settings)
            _check_partitions(settings, [output, dead_letters], partitions)  # the existing ones
            create_topics(settings, [output, dead_letters], partitions=partitions)
        summary = run_replay(job)
    except ConfigError:
        raise
    except Exception as exc:  # noqa: BLE001 - every failure ends in a documented exit code
        kind = classify(exc)
        echo(f"error: replay {replay_id}: {describe(exc, settings)} ({type(exc).__name__})", file=sys.stderr)
        if kind is Kind.INTERNAL:
            return ExitCode.INTERNAL
        return kind.exit_code if kind is not Kind.TRANSIENT else ExitCode.UNREACHABLE
    if args.diff:
        changes = args.changes or Path(f"replay-diff-{replay_id}.jsonl")
        _write_changes(changes, summary.changes)
        report = args.report or changes.with_name(f"{changes.stem}.impact")
        write_impact(report, summary, f"Impact of {policies.ref} (diff {replay_id})")
        echo(diff_report(summary, policies.ref, changes, report))
    else:
        echo(replay_report(summary, policies.ref, output or "", dead_letters or ""))
    if stop.is_set() and not summary.finished:
        again = "start it over" if args.diff else "resume from its last committed batch"
        echo(
            f"replay {replay_id}: interrupted before the end of its range; to {again}, run:"
            f" {resume_command(args, replay_id)}",
            file=sys.stderr,
        )
        return ExitCode.INTERRUPTED
    return _CHANGED if args.diff and summary.changes else ExitCode.OK


def _claims_partitions(settings: Settings) -> int:
    from worker.kafka.clients import Role, new_consumer  # noqa: PLC0415

    consumer = new_consumer(settings, Role.REPLAY, group_id=None, enable_auto_commit=False)
    try:
        parts = consumer.partitions_for_topic(settings.claims_topic)
    finally:
        consumer.close(autocommit=False)
    if not parts:
        msg = f"topic {settings.claims_topic!r} does not exist"
        raise ConfigError(msg)
    return len(parts)


def _check_partitions(settings: Settings, topics: list[str], need: int) -> None:
    """Raise ``ConfigError`` when an existing output topic has fewer partitions than the claims topic."""
    from worker.kafka.clients import Role, new_consumer  # noqa: PLC0415

    consumer = new_consumer(settings, Role.REPLAY, group_id=None, enable_auto_commit=False)
    try:
        for topic in topics:
            have = len(consumer.partitions_for_topic(topic) or ())
            if 0 < have < need:
                msg = (
                    f"topic {topic!r} has {have} partitions; a replay writes to the input's partition "
                    f"number, so it needs at least {need} (as many as {settings.claims_topic!r})"
                )
                raise ConfigError(msg)
    finally:
        consumer.close(autocommit=False)


def replay_report(summary: ReplaySummary, policy_ref: str, output: str, dead_letters: str) -> str:
    """Return the lines a replay prints when it ends."""
    rate = summary.done / summary.seconds if summary.seconds > 0 else 0.0
    lines = [
        (
            f"replay {summary.replay_id} under {policy_ref}: {summary.done} records decided this run "
            f"({summary.already_done} already done before), {summary.total} in the range, "
            f"{rate:.0f} records/s"
        ),
        f"  results: {output}   dead letters: {dead_letters}",
        _authorizations_line(summary),
    ]
    lines += [f"  {printable(outcome)}: {n}" for outcome, n in sorted(summary.outcomes.items())]
    if summary.inherited_duplicates:
        lines.append(f"  live duplicates kept as duplicates: {summary.inherited_duplicates}")
    return "\n".join(lines)


def diff_report(summary: ReplaySummary, policy_ref: str, changes: Path, report: Path | None = None) -> str:
    """Return what a diff prints: the headline (direct changes first), the impact, then each transition.

    Each transition ``BEFORE -> AFTER: n`` is followed by each reason and its count.
    """
    rate = summary.done / summary.seconds if summary.seconds > 0 else 0.0
    figures = _figures(summary)
    lines = [
        (
            f"diff {summary.replay_id}: {summary.done} records decided under {policy_ref} "
            f"({rate:.0f} records/s); {headline(figures)}; {summary.unchanged} unchanged"
        )
    ]
    if summary.inherited_duplicates:
        lines[0] += f" ({summary.inherited_duplicates} live duplicates kept)"
    for (before, after), n in sorted(summary.transitions.items(), key=lambda kv: (-kv[1], kv[0])):
        lines.append(f"{printable(before)} -> {printable(after)}: {n}")  # read from topics: escaped
        for (b, a, reason), m in sorted(summary.reasons.items(), key=lambda kv: (-kv[1], kv[0])):
            if (b, a) == (before, after):
                lines.append(f"    {printable(reason)}: {m}")
    lines += impact_lines(figures) if summary.changes else []
    lines.append(f"changed claims: {changes}")
    if report is not None:
        lines.append(f"impact report: {report}.html, {report}.csv, {report}.json")
    lines.append(_authorizations_line(summary))
    return "\n".join(lines)


def _authorizations_line(summary: ReplaySummary) -> str:
    """Name the authorization state the run was pinned to (a replay's own store, never the live topic)."""
    if summary.authorizations_as_of == "none":
        return "  authorizations: none (no CLAIMS_AUTHORIZATIONS_TOPIC: nothing paid on file, as live)"
    return (
        f"  authorizations as of {summary.authorizations_as_of}: {summary.authorizations_seeded} on file "
        f"at the range start, {summary.authorizations_issued} issued by this run (its own store)"
    )


def _figures(summary: ReplaySummary) -> dict[str, Any]:
    impact = summary.impact
    impact.decided, impact.unchanged = summary.done, summary.unchanged
    return impact.figures()


def write_impact(prefix: Path, summary: ReplaySummary, title: str) -> None:
    """Write the impact report as ``prefix``.html, .csv and .json: the same figures in each."""
    write_report(prefix, _figures(summary), title)


def _write_changes(path: Path, changes: list[dict[str, Any]]) -> None:
    """Write the changed claims (claim id, coordinates, before, after, why; no PHI) as JSON Lines or CSV."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() == ".csv":
        with path.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(["claim_id", "topic", "partition", "offset", "before", "after", "cause", "why"])
            for change in changes:
                before = change["before"]
                writer.writerow(
                    [
                        change["claim_id"],
                        change["topic"],
                        change["partition"],
                        change["offset"],
                        before["outcome"] if before else "",
                        change["after"]["outcome"],
                        change.get("cause", ""),
                        "; ".join(change["why"]),
                    ]
                )
        return
    with path.open("w", encoding="utf-8") as handle:
        for change in changes:
            handle.write(json.dumps(change, sort_keys=True) + "\n")
