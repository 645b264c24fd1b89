"""Directory updates on a compacted Kafka topic: the publisher and the follower that overlays them.

The topic is keyed by the NPI (10 ASCII digits). A value is a small JSON object (``UPDATE_FORMAT`` 1)::

    {"format": 1, "npi": "1234567893", "entity_type": 1,
     "taxonomies": [{"code": "207RX0202X", "primary": true}, ...],
     "deactivation_date": "2024-01-15" | null, "reactivation_date": null, "removed": false,
     "release": "nppes-20241117", "release_date": "2024-11-17"}

A tombstone (null value) means "back to the index". ``removed: true`` says a newer release no longer lists
the NPI. The newer release wins: an update older than the index's release is ignored (docs/directory.md).
"""

from __future__ import annotations

import json
from datetime import date
from typing import TYPE_CHECKING, Any

from worker.directory.index import Directory, Entry
from worker.directory.nppes import SLOTS, NppesRecord
from worker.errors import ClaimsWorkerError, ConfigError
from worker.kafka.clients import Role, new_consumer, new_producer
from worker.kafka.io import TopicPartition, read_to_end
from worker.kafka.topics import ensure_compacted_topic

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator

    from structlog.typing import FilteringBoundLogger

    from worker.config.settings import Settings
    from worker.kafka.io import KafkaConsumer

__all__ = [
    "UPDATE_FORMAT",
    "BadUpdate",
    "DirectoryUpdates",
    "decode_update",
    "diff",
    "encode_update",
    "ensure_topic",
    "entry_of",
    "publish",
]

UPDATE_FORMAT = 1
_NPI_DIGITS = 10


class BadUpdate(ClaimsWorkerError):  # noqa: N818 - reads as what it is
    """An update record the follower cannot read; it is skipped and counted."""


def entry_of(record: NppesRecord) -> Entry:
    """Return the directory ``Entry`` of one NPPES row."""
    return Entry(
        entity_type=record.entity_type,
        taxonomies=record.taxonomies,
        primary=record.primary,
        deactivation=record.deactivation,
        reactivation=record.reactivation,
    )


def encode_update(
    npi: int, entry: Entry | None, release: str, release_date: date
) -> tuple[bytes, bytes | None]:
    """Return the topic record (key, value) of ``entry``; ``None`` gives a tombstone."""
    key = f"{npi:010d}".encode()
    if entry is None:
        return key, None
    value = {
        "format": UPDATE_FORMAT,
        "npi": f"{npi:010d}",
        "entity_type": entry.entity_type,
        "taxonomies": [{"code": c, "primary": i == entry.primary} for i, c in enumerate(entry.taxonomies)],
        "deactivation_date": entry.deactivation.isoformat() if entry.deactivation else None,
        "reactivation_date": entry.reactivation.isoformat() if entry.reactivation else None,
        "removed": entry.removed,
        "release": release,
        "release_date": release_date.isoformat(),
    }
    return key, json.dumps(value, separators=(",", ":")).encode()


def _optional_date(value: object) -> date | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise BadUpdate("a date is not an ISO string")
    return date.fromisoformat(value)


def decode_update(key: bytes | None, value: bytes | None) -> tuple[int, Entry | None, date | None]:
    """Return ``(npi, entry or None for a tombstone, release date)``; raise ``BadUpdate`` when unreadable."""
    if key is None or len(key) != _NPI_DIGITS or not key.isdigit():
        raise BadUpdate("the key is not a 10-digit NPI")
    npi = int(key)
    if value is None:
        return npi, None, None
    try:
        body: dict[str, Any] = json.loads(value)
        _check_body(body, key)
        taxonomies = body.get("taxonomies") or []
        codes = tuple(str(t["code"]) for t in taxonomies)
        primaries = [i for i, t in enumerate(taxonomies) if t.get("primary") is True]
        release = body["release"]
        release_date = date.fromisoformat(body["release_date"])
        entry = Entry(
            entity_type=int(body["entity_type"]),
            taxonomies=codes,
            primary=primaries[0] if primaries else None,
            deactivation=_optional_date(body.get("deactivation_date")),
            reactivation=_optional_date(body.get("reactivation_date")),
            version=str(release),
            removed=bool(body.get("removed", False)),
        )
    except BadUpdate:
        raise
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise BadUpdate(f"unreadable update ({type(exc).__name__})") from None
    return npi, entry, release_date


def _check_body(body: dict[str, Any], key: bytes) -> None:
    if body.get("format") != UPDATE_FORMAT:
        raise BadUpdate(f"unknown update format {body.get('format')!r}")
    if body.get("npi") != key.decode():
        raise BadUpdate("the value's NPI differs from the key")
    if len(body.get("taxonomies") or []) > SLOTS or body.get("entity_type") not in (0, 1, 2):
        raise BadUpdate("more than 15 taxonomies or an unknown entity type")


def diff(old: Directory, new: Directory) -> Iterator[tuple[int, Entry]]:
    """Yield each entry of ``new`` that differs from ``old``, and a ``removed`` one per NPI ``new`` lacks."""
    olds = old.entries()
    current = next(olds, None)
    for npi, entry in new.entries():
        while current is not None and current[0] < npi:
            yield current[0], Entry(entity_type=current[1].entity_type, removed=True)
            current = next(olds, None)
        if current is not None and current[0] == npi:
            if current[1] != entry:
                yield npi, entry
            current = next(olds, None)
        else:
            yield npi, entry
    while current is not None:
        yield current[0], Entry(entity_type=current[1].entity_type, removed=True)
        current = next(olds, None)


def ensure_topic(settings: Settings, topic: str, partitions: int = 1, replication_factor: int = 1) -> bool:
    """Create ``topic`` compacted when it is missing; return whether it was created.

    Raises ``ConfigError`` (exit 2) when the topic exists without ``compact`` in its cleanup policy: the
    follower's catch-up would then read every record ever published instead of one per NPI.
    """
    return ensure_compacted_topic(
        settings,
        topic,
        partitions,
        replication_factor,
        role=Role.DIRECTORY,
        what="the directory updates topic",
    )


def publish(
    settings: Settings,
    topic: str,
    entries: Iterable[tuple[int, Entry | None]],
    *,
    release: str,
    release_date: date,
) -> int:
    """Write ``entries`` to ``topic`` with an idempotent producer (acks=all); return how many were sent.

    Re-running a publish is harmless: the topic is compacted by NPI and a record carries the whole entry.
    """
    producer = new_producer(
        settings,
        Role.DIRECTORY,
        enable_idempotence=True,
        acks="all",
        linger_ms=50,
        batch_size=256 * 1024,
    )
    sent = 0
    try:
        for npi, entry in entries:
            key, value = encode_update(npi, entry, release, release_date)
            producer.send(topic, key=key, value=value)
            sent += 1
        producer.flush()
    finally:
        producer.close()
    return sent


class DirectoryUpdates:
    """Follows the compacted updates topic from its beginning and applies each record to ``directory``.

    It uses its own consumer with no group (every worker reads the whole topic) and commits nothing:
    after a restart it reads the topic from the beginning again (``catch_up``) before the worker reports
    ready. ``poll`` is cheap (no wait by default) and runs on the loop's thread, between batches.
    """

    def __init__(
        self,
        directory: Directory,
        consumer: KafkaConsumer,
        topic: str,
        log: FilteringBoundLogger | None = None,
    ) -> None:
        self.directory = directory
        self.topic = topic
        self._consumer = consumer
        self._log = log
        self.ready = False
        self.applied = 0
        self.rejected = 0
        partitions = consumer.partitions_for_topic(topic)
        if not partitions:
            consumer.close()
            raise ConfigError(
                f"the directory updates topic {topic} does not exist "
                "(create it with `claims-worker directory publish`)"
            )
        self._partitions = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(self._partitions)
        consumer.seek_to_beginning(*self._partitions)

    @classmethod
    def connect(
        cls, settings: Settings, directory: Directory, topic: str, log: FilteringBoundLogger | None = None
    ) -> DirectoryUpdates:
        """Return a follower of ``topic`` for ``directory`` with a consumer built from ``settings``."""
        consumer = new_consumer(
            settings,
            Role.DIRECTORY,
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            isolation_level="read_committed",
            fetch_max_wait_ms=100,
        )
        return cls(directory, consumer, topic, log)

    def catch_up(self, timeout_s: float = 120.0) -> int:
        """Read the topic up to its end offsets as of now; then ``ready`` is true. Return records applied.

        Raises ``kafka.errors.KafkaTimeoutError`` (exit 4) when the end is not reached within ``timeout_s``.
        """
        applied = read_to_end(
            self._consumer,
            list(self._partitions),
            lambda: self.poll(max_records=10_000, timeout_ms=200),
            timeout_s,
            f"directory updates topic {self.topic}",
        )
        self.ready = True
        if self._log is not None:
            self._log.info(
                "directory_updates_caught_up",
                topic=self.topic,
                counts={
                    "applied": applied,
                    "overlay": self.directory.overlay_size,
                    "rejected": self.rejected,
                },
            )
        return applied

    def poll(self, max_records: int = 500, timeout_ms: int = 0) -> int:
        """Apply the records fetched (waiting at most ``timeout_ms``); return how many were applied."""
        batches = self._consumer.poll(timeout_ms=timeout_ms, max_records=max_records)
        applied = 0
        for records in batches.values():
            for record in records:
                try:
                    npi, entry, release_date = decode_update(record.key, record.value)
                except BadUpdate as exc:
                    self.rejected += 1
                    if self._log is not None:
                        self._log.warning(
                            "directory_update_rejected",
                            topic=record.topic,
                            partition=record.partition,
                            offset=record.offset,
                            error=exc,  # BadUpdate names the rule, never the record's content
                        )
                    continue
                self.directory.apply(npi, entry, release_date)
                applied += 1
        self.applied += applied
        return applied

    def lag(self) -> int:
        """Return how many records the follower is behind the topic's end (asks the broker)."""
        ends = self._consumer.end_offsets(self._partitions)
        return sum(max(0, ends[tp] - self._consumer.position(tp)) for tp in self._partitions)

    def fetched_lag(self) -> int | None:
        """Return how many records the follower is behind, from the high watermarks its fetches saw.

        Sends no request (the loop calls it every pass, and must not block on a lost broker);
        ``None`` until a fetch has reported every partition's high watermark.
        """
        total = 0
        for tp in self._partitions:
            high = self._consumer.highwater(tp)
            position = self._consumer.position(tp, timeout_ms=0)
            if high is None or position is None:
                return None
            total += max(0, high - position)
        return total

    def close(self) -> None:
        """Close the consumer."""
        self._consumer.close()
