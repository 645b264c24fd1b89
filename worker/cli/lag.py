"""``claims-worker lag``: per partition, how far the worker's group is behind, in records and in seconds.

For each partition of the claims topic: the group's committed offset, the end offset (last stable
offset: what a ``read_committed`` worker can read), the lag in records, the lag in seconds (now minus
the Kafka timestamp of the oldest record not yet decided, the first committed record at the committed
offset; 0 when nothing waits) and the member that owns it. Then the group's state and each member's.
A group with no members says so ("no members (group Empty)"); it is never shown as active.

Exit codes: 0 shown; 1 the group does not exist (the coordinator knows no such group and it has
committed nothing on the topic; the partitions are still shown, lag counted from the log start, where
a first worker would begin); 2 bad arguments or a missing topic; 4 Kafka unreachable or the read
stalled past CLAIMS_OUTAGE_LIMIT_S; 5 not authorized (Describe on the group or the topic).
"""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from worker.cli.exits import exit_epilog
from worker.errors import ExitCode
from worker.ops.escaping import echo

if TYPE_CHECKING:
    from worker.config.settings import Settings
    from worker.kafka.lag import GroupLag, Member, PartitionLag

__all__ = ["EXIT_NO_GROUP", "group_line", "lag_json", "lag_table", "register"]

EXIT_NO_GROUP = 1
_STABLE = "Stable"


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``lag`` sub-command to the ``claims-worker`` parser."""
    parser = sub.add_parser(
        "lag",
        help="show the group's lag per partition (committed, end, records, seconds) and its members",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=exit_epilog(
            (ExitCode.OK, "shown"),
            (EXIT_NO_GROUP, "the group does not exist"),
            (ExitCode.BAD_SETTINGS, "bad arguments or a missing topic"),
            (ExitCode.UNREACHABLE, "Kafka unreachable or the read stalled past CLAIMS_OUTAGE_LIMIT_S"),
            (ExitCode.NOT_AUTHORIZED, "not authorized (Describe on the group or the topic)"),
        ),
    )
    parser.add_argument("--group", help="the consumer group [default: CLAIMS_GROUP_ID]")
    parser.add_argument("--topic", help="the topic [default: CLAIMS_CLAIMS_TOPIC]")
    parser.add_argument(
        "--format", choices=("table", "json"), default="table", help="output format [default: table]"
    )
    parser.set_defaults(handler=lag_command)


def lag_command(args: argparse.Namespace, settings: Settings) -> int:
    """Read the lag and print it; return 0, or 1 when the group does not exist (see the module docstring)."""
    from worker.kafka.lag import read_group_lag  # noqa: PLC0415 - keeps --help fast

    lag = read_group_lag(settings, args.group or settings.group_id, args.topic or settings.claims_topic)
    echo(lag_json(lag) if args.format == "json" else "\n".join(lag_table(lag)))
    return ExitCode.OK if lag.exists else EXIT_NO_GROUP


def group_line(lag: GroupLag) -> str:
    """Return the one line that says what the group is: active only when it has members and is Stable."""
    head = f"group {lag.group_id} on {lag.topic}: "
    count = len(lag.members)
    if not lag.exists:
        return head + "does not exist (no members, nothing committed on this topic)"
    if count == 0:
        return head + f"no members (group {lag.state})"
    noun = "member" if count == 1 else "members"
    if lag.state == _STABLE:
        return head + f"active, {count} {noun} (group Stable)"
    return head + f"rebalancing, {count} {noun} (group {lag.state})"


def member_state(member: Member, group_state: str) -> str:
    """Return one member's state: its assignment in a settled group, or that the group is rebalancing."""
    if group_state != _STABLE:
        return f"joining ({group_state})"
    if member.partitions:
        return "assigned " + ",".join(str(p) for p in member.partitions)
    return "idle (no partitions of this topic)"


def _owner(partition: PartitionLag) -> str:
    member = partition.owner
    if member is None:
        return "-"
    slot = f" [{member.instance_id}]" if member.instance_id else ""
    return f"{member.client_id}@{member.host}{slot}"


def _columns(rows: list[tuple[str, ...]]) -> list[str]:
    """Left-align each column to its widest cell (two spaces apart)."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows]


def lag_table(lag: GroupLag) -> list[str]:
    """Return the table's lines: the group line, one row per partition with a total, then the members.

    Pure: every value comes from ``lag`` (its ``read_at`` is the "now" of the lag in seconds). The
    caller prints through ``echo``, which escapes control characters in member, client and host names.
    """
    now = lag.read_at
    rows: list[tuple[str, ...]] = [("PARTITION", "COMMITTED", "END", "LAG_RECORDS", "LAG_SECONDS", "OWNER")]
    for p in lag.partitions:
        committed = "-" if p.committed is None else str(p.committed)
        rows.append(
            (
                str(p.partition),
                committed,
                str(p.end),
                str(p.lag_records),
                f"{p.lag_seconds(now):.1f}",
                _owner(p),
            )
        )
    total = sum(p.lag_records for p in lag.partitions)
    oldest = max((p.lag_seconds(now) for p in lag.partitions), default=0.0)
    rows.append(("total", "", "", str(total), f"{oldest:.1f}", ""))
    lines = [group_line(lag), *_columns(rows)]
    if any(p.committed is None for p in lag.partitions):
        lines.append("'-': never committed; the lag counts from the log start, where the worker begins")
    if not lag.members:
        return lines
    members: list[tuple[str, ...]] = [("MEMBER", "SLOT", "CLIENT", "HOST", "STATE")]
    members += [
        (m.member_id, m.instance_id or "-", m.client_id, m.host, member_state(m, lag.state))
        for m in lag.members
    ]
    lines += ["", *_columns(members)]
    if any(m.instance_id for m in lag.members):
        lines.append(
            "a static member (SLOT) stays listed for the session timeout after its process stops without "
            "leaving (SIGTERM); an idle exit leaves at once"
        )
    return lines


def _iso(ms: int | None) -> str | None:
    return None if ms is None else datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")


def lag_json(lag: GroupLag) -> str:
    """Return the lag as one JSON object (the same facts as the table, lag seconds to the millisecond)."""
    now = lag.read_at
    document = {
        "group": lag.group_id,
        "topic": lag.topic,
        "exists": lag.exists,
        "state": lag.state,
        "active": lag.exists and lag.state == _STABLE and bool(lag.members),
        "read_at": _iso(int(now * 1000)),
        "partitions": [
            {
                "partition": p.partition,
                "committed": p.committed,
                "start": p.start,
                "end": p.end,
                "lag_records": p.lag_records,
                "lag_seconds": round(p.lag_seconds(now), 3),
                "oldest_waiting_timestamp": _iso(p.oldest_ms) if p.lag_records else None,
                "owner": None if p.owner is None else p.owner.member_id,
            }
            for p in lag.partitions
        ],
        "members": [
            {
                "member_id": m.member_id,
                "instance_id": m.instance_id,
                "client_id": m.client_id,
                "host": m.host,
                "partitions": list(m.partitions),
                "state": member_state(m, lag.state),
            }
            for m in lag.members
        ],
    }
    return json.dumps(document, sort_keys=True)
