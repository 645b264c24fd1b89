"""The follower of the authorization store topic: read to its end at start, then applied as it grows."""

from __future__ import annotations

import time
from datetime import date
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry

from worker.errors import ConfigError
from worker.kafka.io import TopicPartition, read_to_end
from worker.state.authorization import BadAuthorization, decode_authorization
from worker.state.authorization_table import AuthorizationMetrics, AuthorizationTable

if TYPE_CHECKING:
    from collections.abc import Callable

    from structlog.typing import FilteringBoundLogger

    from worker.kafka.io import KafkaConsumer

__all__ = ["AuthorizationFollower"]

# Records a catch-up poll hands over at once: each is a few hundred bytes until applied, and what a
# large batch took stays with the process (250,000 records: 219 MiB RSS after reading 50,000 at a
# time, 160 MiB after 5,000 at a time, at the same speed; tests/bench/bench_authorizations.py).
_CATCH_UP_RECORDS = 5_000


class AuthorizationFollower:
    """The table of the store topic, kept up to date by one consumer (``None``: held in memory only).

    ``catch_up`` reads the topic to its end offsets; ``follow`` does that once, then applies what the
    topic gained since. ``Authorizations`` adds the batch's staging and the claims' decisions on top.
    """

    def __init__(
        self,
        topic: str,
        *,
        consumer: KafkaConsumer | None = None,
        metrics: AuthorizationMetrics | None = None,
        log: FilteringBoundLogger | None = None,
        catch_up_timeout_s: float = 120.0,
        partitions: int = 1,
        clock: Callable[[], date] = date.today,
    ) -> None:
        """Follow ``topic`` with ``consumer`` (``None``: a table held in memory only, for unit tests)."""
        self.topic = topic
        self.table = AuthorizationTable()
        self.metrics = metrics or AuthorizationMetrics(CollectorRegistry())
        self.ready = consumer is None
        self.rejected = 0
        self._consumer = consumer
        self._log = log
        self._timeout_s = catch_up_timeout_s
        self._partitions_count = partitions
        self._tps: list[TopicPartition] = []
        self._clock = clock
        self._states_updated = 0.0

    # --- following the topic ---------------------------------------------------------------------
    def follow(self) -> int:
        """Catch up first (once), then apply what the topic gained; return records applied."""
        if self._consumer is None:
            return 0
        applied = self.catch_up() if not self.ready else self._poll(timeout_ms=0)
        now = time.monotonic()
        if applied or now - self._states_updated > 30.0:  # noqa: PLR2004 - gauge refresh period
            self._states_updated = now
            self.metrics.set_states(self.table.counts(self._clock()))
        return applied

    def catch_up(self) -> int:
        """Read the topic to its end offsets as of now; ``KafkaTimeoutError`` (exit 4) past the limit."""
        consumer = self._consumer
        if consumer is None:
            self.ready = True
            return 0
        if not self._tps:
            found = consumer.partitions_for_topic(self.topic)
            if not found:
                raise ConfigError(
                    f"the authorization store topic {self.topic} does not exist "
                    "(create it with `claims-worker authorizations create-topic`)"
                )
            self._tps = [TopicPartition(self.topic, p) for p in sorted(found)]
            self._partitions_count = len(self._tps)
            consumer.assign(self._tps)
            consumer.seek_to_beginning(*self._tps)
        started = time.monotonic()
        applied = read_to_end(
            consumer,
            self._tps,
            lambda: self._poll(timeout_ms=200, max_records=_CATCH_UP_RECORDS),
            self._timeout_s,
            f"authorization store {self.topic}",
        )
        self.ready = True
        self.metrics.restored(time.monotonic() - started, applied)
        if self._log is not None:
            self._log.info(
                "authorizations_caught_up",
                topic=self.topic,
                counts={"applied": applied, "on_file": len(self.table), "rejected": self.rejected},
                duration_ms=round((time.monotonic() - started) * 1000, 1),
            )
        return applied

    def _poll(self, *, timeout_ms: int, max_records: int = 5_000) -> int:
        consumer = self._consumer
        if consumer is None:
            return 0
        applied = 0
        for records in consumer.poll(timeout_ms=timeout_ms, max_records=max_records).values():
            for record in records:
                try:
                    auth = decode_authorization(record.key, record.value)
                except BadAuthorization as exc:
                    self.rejected += 1
                    if self._log is not None:
                        self._log.warning(
                            "authorization_record_rejected",
                            topic=record.topic,
                            partition=record.partition,
                            offset=record.offset,
                            error=str(exc),  # names the rule, never the record's content
                        )
                    continue
                self.table.apply(auth)
                applied += 1
        return applied

    def close(self) -> None:
        """Close the follower's consumer."""
        if self._consumer is not None:
            self._consumer.close()

    def partition_of(self, number: str) -> int:
        """Return the store partition of a PA number (its value modulo the partition count)."""
        count = max(1, len(self._tps) or self._partitions_count)
        return int(number) % count if number.isdigit() else 0
