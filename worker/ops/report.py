"""Read the committed results and dead letters back from Kafka and print them as a table."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from worker.contracts.codec import Codec
from worker.kafka.clients import Role, new_consumer
from worker.kafka.io import TopicPartition
from worker.ops.escaping import echo, printable

if TYPE_CHECKING:
    from collections.abc import Iterator

    from worker.config.settings import Settings

__all__ = ["print_results", "read_topic"]


def read_topic(settings: Settings, topic: str, timeout_s: float = 5.0) -> Iterator[Any]:
    """Yield every committed record of ``topic`` (all partitions) up to its end offsets at call time."""
    consumer = new_consumer(
        settings,
        Role.REPORT,
        group_id=None,
        enable_auto_commit=False,
        isolation_level="read_committed",
    )
    try:
        partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        ends = consumer.end_offsets(partitions)
        deadline = time.monotonic() + timeout_s
        pending = {tp for tp in partitions if ends[tp] > 0}
        while pending and time.monotonic() < deadline:
            for tp, records in consumer.poll(timeout_ms=200).items():
                yield from records
                if consumer.position(tp) >= ends[tp]:
                    pending.discard(tp)
            pending = {tp for tp in pending if consumer.position(tp) < ends[tp]}
    finally:
        consumer.close()


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


def print_results(settings: Settings, timeout_s: float = 5.0) -> int:
    """Print results and dead letters as an aligned table, every cell escaped; returns 0, or 1 when none."""
    codec = Codec()
    rows: list[tuple[str, ...]] = []
    for record in read_topic(settings, settings.results_topic, timeout_s):
        result = codec.decode_result(record.value)
        rejects = ",".join(result["reject_codes"]) or "-"
        source = f"{result['source']['partition']}:{result['source']['offset']}"
        rows.append(
            (
                source,
                result["claim_id"],
                result["transaction_code"],
                result["outcome"],
                rejects,
                _specialty_source(result),
                _why(result),
            )
        )
    for record in read_topic(settings, settings.dead_letter_topic, timeout_s):
        letter = codec.decode_dead_letter(record.value)
        key = (letter["original_key"] or b"").decode("utf-8", "replace") or "(no key)"
        source = f"{letter['source']['partition']}:{letter['source']['offset']}"
        rows.append((source, key, "-", f"DEAD LETTER {letter['error_class']}", "-", "-", letter["reason"]))
    rows.sort(key=lambda r: tuple(int(x) for x in r[0].split(":")))
    # Each cell escaped on its own (before widths are measured): a newline in a sender's value must
    # not start a row of its own, and no cell can move the cursor (worker.ops.escaping).
    rows = [tuple(printable(cell) for cell in row) for row in rows]
    header = ("src", "claim", "txn", "outcome", "rejects", "B from", "why")
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)]
    widths[-1] = len(header[-1])
    line = "  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))
    echo(line)
    echo("-" * max(len(line), 100))
    for row in rows:
        echo("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)))
    echo(
        f"\n{len(rows)} records from {settings.results_topic} and {settings.dead_letter_topic}"
        " (read_committed)"
    )
    return 0 if rows else 1
