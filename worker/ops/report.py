"""Read the committed results and dead letters back from Kafka and print them as a table or JSON Lines."""

from __future__ import annotations

import json
import sys
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any

from worker.contracts.codec import Codec
from worker.errors import DecodeError
from worker.kafka.reads import expected, read_to_ends
from worker.ops.escaping import echo, printable

if TYPE_CHECKING:
    from worker.config.settings import Settings

__all__ = [
    "Row",
    "Selection",
    "json_line",
    "print_results",
    "table_lines",
    "to_row",
]


def _why(result: dict[str, Any]) -> str:
    if result["outcome"] == "APPROVED":
        window = f"{result['authorization_effective']} to {result['authorization_expiration']}"
        if result.get("decision_source") == "ON_FILE":
            return f"on file: PA {result['authorization_number']}, original window {window}"
        return f"authorized {window}"
    failing = [c for c in result["criteria"] if c["status"] != "MET"]
    if not failing:
        summary: str = result["summary"]
        return summary
    return "; ".join(f"{c['criterion_id']} {c['status']}: {c['reason_code']}" for c in failing)


def _specialty_source(result: dict[str, Any]) -> str:
    """Return where the prescriber's specialty came from: ``claim``, ``directory <version>`` or ``-``.

    A directory entry beside a sent taxonomy reads ``directory <version> + sent``.
    """
    for criterion in result["criteria"]:
        for item in criterion["evidence"]:
            text = str(item)
            _, found, rest = text.partition("(source=")
            if found:
                source = rest.partition(")")[0]
                sent = source != "claim" and "sent on the claim" in text
                return f"{source} + sent" if sent else source
    return "-"


RESULT, DEAD_LETTER, UNREADABLE = "result", "dead_letter", "unreadable"


@dataclass(frozen=True, slots=True)
class Row:
    """One record read back: where it sits, what it is (result, dead letter, unreadable) and its fields."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    kind: str
    record: dict[str, Any]

    @property
    def claim_id(self) -> str:
        """The claim id of a result, the original key of a dead letter, ``""`` for an unreadable record."""
        if self.kind == RESULT:
            return str(self.record["claim_id"])
        if self.kind == DEAD_LETTER:
            return (self.record["original_key"] or b"").decode("utf-8", "replace")
        return ""

    @property
    def outcome(self) -> str:
        """The result's outcome, ``DEAD_LETTER`` or ``UNREADABLE``."""
        return str(self.record["outcome"]) if self.kind == RESULT else self.kind.upper()

    @property
    def source(self) -> tuple[int, int] | None:
        """The claims-topic ``(partition, offset)`` the record answers (``None`` when unreadable)."""
        source = self.record.get("source")
        return None if source is None else (int(source["partition"]), int(source["offset"]))


@dataclass(frozen=True, slots=True)
class Selection:
    """Which rows ``show-results`` prints; an empty set or ``None`` keeps every row.

    ``partitions`` and ``offsets`` (inclusive, either end open) select by the claims-topic coordinates
    the row answers (the ``src`` column); ``since`` (inclusive) and ``until`` (exclusive) by the
    record's own Kafka timestamp.
    """

    claim_ids: frozenset[str] = frozenset()
    outcomes: frozenset[str] = frozenset()
    decision_sources: frozenset[str] = frozenset()
    partitions: frozenset[int] = frozenset()
    offsets: tuple[int | None, int | None] | None = None
    since: datetime | None = None
    until: datetime | None = None

    def keeps(self, row: Row) -> bool:
        """Tell whether ``row`` passes every filter."""
        if self.claim_ids and row.claim_id not in self.claim_ids:
            return False
        if self.outcomes and row.outcome not in self.outcomes:
            return False
        if self.decision_sources and (
            row.kind != RESULT or str(row.record.get("decision_source")) not in self.decision_sources
        ):
            return False
        return self._time_keeps(row.timestamp_ms) and self._source_keeps(row.source)

    def _source_keeps(self, source: tuple[int, int] | None) -> bool:
        if not self.partitions and self.offsets is None:
            return True
        if source is None or (self.partitions and source[0] not in self.partitions):
            return False
        if self.offsets is None:
            return True
        low, high = self.offsets
        return (low is None or source[1] >= low) and (high is None or source[1] <= high)

    def _time_keeps(self, timestamp_ms: int) -> bool:
        if self.since is not None and timestamp_ms < _ms(self.since):
            return False
        return self.until is None or timestamp_ms < _ms(self.until)


def _ms(moment: datetime) -> int:
    """Return ``moment`` as epoch milliseconds; a naive moment is read as UTC."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def to_row(codec: Codec, topic: str, record: Any) -> Row:  # noqa: ANN401 - a kafka-python ConsumerRecord
    """Decode one record as a result, else as a dead letter, else keep it as unreadable (its class)."""
    kind, decoded = UNREADABLE, {}
    try:
        decoded, kind = codec.decode_result(record.value), RESULT
    except DecodeError:
        try:
            decoded, kind = codec.decode_dead_letter(record.value), DEAD_LETTER
        except DecodeError as exc:
            decoded = {"error_class": exc.error_class.value, "reason": exc.reason}
    return Row(topic, record.partition, record.offset, int(record.timestamp), kind, decoded)


def _jsonable(value: object) -> object:
    """Return ``value`` with dates as ISO strings, so ``json.dumps`` can write it."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value


def json_line(row: Row) -> str:
    """Return ``row`` as one JSON line: its coordinates, kind and every decoded field.

    A dead letter's original value and header values are the sender's bytes, which hold PHI
    (the patient): only their sizes are written (``original_value_bytes``, each header's ``value_bytes``).
    ASCII-only JSON: every control character is written as an escape, so the line is safe on a terminal.
    """
    record = dict(row.record)
    if row.kind == DEAD_LETTER:
        original = record.pop("original_value", None)
        record["original_value_bytes"] = None if original is None else len(original)
        record["original_headers"] = [
            {"key": header["key"], "value_bytes": None if header["value"] is None else len(header["value"])}
            for header in record.get("original_headers") or ()
        ]
    stamp = datetime.fromtimestamp(row.timestamp_ms / 1000, UTC).isoformat(timespec="milliseconds")
    line = {
        "kind": row.kind,
        "topic": row.topic,
        "partition": row.partition,
        "offset": row.offset,
        "timestamp": stamp,
        "record": _jsonable(record),
    }
    return json.dumps(line, ensure_ascii=True, sort_keys=False)


def table_cells(row: Row) -> tuple[str, ...]:
    """Return the table's cells of ``row`` (unescaped; ``table_lines`` escapes each one)."""
    source = row.source
    src = "-" if source is None else f"{source[0]}:{source[1]}"
    if row.kind == RESULT:
        result = row.record
        rejects = ",".join(result["reject_codes"]) or "-"
        return (
            src,
            result["claim_id"],
            result["transaction_code"],
            result["outcome"],
            rejects,
            _specialty_source(result),
            _why(result),
        )
    if row.kind == DEAD_LETTER:
        letter = row.record
        return (
            src,
            row.claim_id or "(no key)",
            "-",
            f"DEAD LETTER {letter['error_class']}",
            "-",
            "-",
            letter["reason"],
        )
    where = f"{row.topic}[{row.partition}]@{row.offset}"
    return (
        src,
        "-",
        "-",
        f"UNREADABLE {row.record['error_class']}",
        "-",
        "-",
        f"{where}: {row.record['reason']}",
    )


def _order(row: Row) -> tuple[int, int, int, int]:
    source = row.source
    return (0, *source, 0) if source is not None else (1, row.partition, row.offset, 0)


def table_lines(rows: list[Row]) -> list[str]:
    """Return the aligned table of ``rows`` (sorted by ``src``), every cell escaped on its own."""
    # Each cell escaped on its own (before widths are measured): a newline in a sender's value must
    # not start a row of its own, and no cell can move the cursor (worker.ops.escaping).
    cells = [tuple(printable(cell) for cell in table_cells(row)) for row in sorted(rows, key=_order)]
    header = ("src", "claim", "txn", "outcome", "rejects", "B from", "why")
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(header)]
    widths[-1] = len(header[-1])
    line = "  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))
    out = [line, "-" * max(len(line), 100)]
    out += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells]
    return out


def _progress_bar(settings: Settings, topics: list[str]) -> Any:  # noqa: ANN401 - a tqdm bar or None
    """Return a tqdm bar on stderr when stderr is a terminal, else ``None``."""
    if not sys.stderr.isatty():
        return None
    from tqdm import tqdm  # noqa: PLC0415 - only on a terminal

    total = sum(expected(settings, topic) for topic in topics)
    return tqdm(total=total, unit="rec", file=sys.stderr, leave=False)


def print_results(
    settings: Settings,
    *,
    topics: list[str] | None = None,
    selection: Selection | None = None,
    output: str = "table",
) -> int:
    """Print every record of ``topics`` (default: results and dead letters) that ``selection`` keeps.

    ``output`` ``table`` (aligned, every cell escaped, sorted by src) or ``json`` (JSON Lines, streamed
    in read order). Returns 0 when rows were printed, 1 when the read was complete but nothing matched;
    raises ``ConfigError`` for a missing topic and ``KafkaTimeoutError`` for a stalled read (see
    ``read_to_ends``), so that no partial read ends in 0.
    """
    codec = Codec()
    topics = topics or [settings.results_topic, settings.dead_letter_topic]
    selection = selection or Selection()
    bar = _progress_bar(settings, topics)
    rows: list[Row] = []
    counts: Counter[str] = Counter()
    read = 0
    try:
        for topic in topics:
            for record in read_to_ends(settings, topic, None if bar is None else bar.update):
                read += 1
                row = to_row(codec, topic, record)
                if not selection.keeps(row):
                    continue
                counts[row.kind] += 1
                if output == "json":
                    echo(json_line(row))
                else:
                    rows.append(row)
    finally:
        if bar is not None:
            bar.close()
    shown = sum(counts.values())
    if output != "json":
        for line in table_lines(rows):
            echo(line)
    detail = ", ".join(
        f"{counts[k]} {k.replace('_', ' ')}s" for k in (RESULT, DEAD_LETTER, UNREADABLE) if counts[k]
    )
    summary = (
        f"{shown} of {read} records from {', '.join(topics)} (read_committed, every partition to its end)"
    )
    summary += f": {detail}" if detail else ""
    echo(summary, file=sys.stderr if output == "json" else None)
    return 0 if shown else 1
