"""What a replay is: its job (range, policy, reference data, output), identity, metrics and summary."""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Gauge
from prometheus_client import Counter as PromCounter

from worker.contracts.codes import Outcome
from worker.errors import DeadLetterClass
from worker.kafka.ranges import scan as _scan
from worker.ops.impact import Impact
from worker.runtime.judge import no_facts
from worker.state.authorization import BadAuthorization, decode_authorization
from worker.state.authorizations import Authorizations

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from worker.config.settings import Settings
    from worker.contracts.codec import Codec
    from worker.contracts.model import Claim
    from worker.policy import Policy, PolicyChoice
    from worker.policy.facts import Facts

__all__ = [
    "ReplayJob",
    "ReplayMetrics",
    "ReplaySummary",
    "default_replay_id",
    "replay_group_id",
    "replay_transactional_id",
    "seed_authorizations",
]


def default_replay_id(
    start: datetime, end: datetime | None, policy_ref: str, output_topic: str, selection: str = ""
) -> str:
    """Return the replay id for a range, policy and output: the same replay gets the same id (and group).

    ``selection`` names ``--partition``/``--offsets`` (``""``: none, the id a time range always had), so
    two selections of one time range never share a group and its recorded range.
    """
    text = f"{start.isoformat()}|{end.isoformat() if end else '-'}|{policy_ref}|{output_topic}"
    text += f"|{selection}" if selection else ""
    return "r" + hashlib.sha256(text.encode()).hexdigest()[:12]


def replay_group_id(settings: Settings, replay_id: str) -> str:
    """Return the replay's consumer group: never the live group."""
    return f"{settings.group_id}-replay-{replay_id}"


def replay_transactional_id(settings: Settings, replay_id: str) -> str:
    """Return the replay's transactional id: never a live instance's."""
    return f"{settings.transactional_id_prefix}-replay-{replay_id}"


def seed_authorizations(settings: Settings, start: datetime) -> Authorizations | None:
    """Return the replay's own in-memory authorization store as it stood at ``start`` (``None``: no store).

    Reads the store topic's committed records with timestamps before ``start`` (revocations included)
    into an ``Authorizations`` that has no consumer: it follows nothing and the replay never sends its
    records anywhere. ``None`` when ``CLAIMS_AUTHORIZATIONS_TOPIC`` is unset: the live worker then pays
    nothing on file either. Unreadable store records are skipped and counted (``rejected``).
    """
    topic, secret = settings.authorizations_topic, settings.member_pseudonym_secret
    if topic is None or secret is None:
        return None
    store = Authorizations(secret.get_secret_value().encode(), topic)
    for _partition, _offset, record in _scan(settings, topic, None, start):
        try:
            store.table.apply(decode_authorization(record.key, record.value))
        except BadAuthorization:
            store.rejected += 1
    return store


class ReplayMetrics:
    """The Prometheus metrics of one replay run (labels from closed sets: outcomes, dead-letter classes)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.records = PromCounter(
            "claims_replay_records",
            "Records a replay decided, by outcome (or dead-letter class).",
            ["mode", "outcome"],
            registry=self.registry,
        )
        self.changed = PromCounter(
            "claims_replay_changed",
            "Records whose verdict differs from the live one (diff).",
            registry=self.registry,
        )
        self.transactions = PromCounter(
            "claims_replay_transactions", "Replay transactions committed.", registry=self.registry
        )
        self.remaining = Gauge(
            "claims_replay_remaining_records",
            "Offsets of the range not yet replayed.",
            registry=self.registry,
        )
        self.range = Gauge(
            "claims_replay_range_records",
            "Offsets in the replay's range (progress is 1 - remaining / range).",
            registry=self.registry,
        )
        self.rate = Gauge(
            "claims_replay_records_per_second", "Records per second so far.", registry=self.registry
        )
        self._labels = {o.value for o in Outcome} | {f"DEAD_LETTER:{c.value}" for c in DeadLetterClass}

    def count(self, mode: str, outcome: str, n: int = 1) -> None:
        """Count ``n`` records of ``outcome`` (``other`` when outside the closed set)."""
        self.records.labels(mode, outcome if outcome in self._labels else "other").inc(n)


@dataclass
class ReplaySummary:
    """What one run did."""

    replay_id: str
    total: int = 0
    done: int = 0
    already_done: int = 0
    inherited_duplicates: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    transitions: Counter[tuple[str, str]] = field(default_factory=Counter)
    reasons: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    changes: list[dict[str, Any]] = field(default_factory=list)
    unchanged: int = 0
    seconds: float = 0.0
    finished: bool = False  # every partition reached its range's end (not stopped part-way)
    authorizations_as_of: str = "none"  # the range start when a store was pinned; "none": no store
    authorizations_seeded: int = 0  # authorizations on file at the range start
    authorizations_issued: int = 0  # approvals the replay put on file in its own store
    impact: Impact = field(default_factory=Impact)  # diff: each change's cause and who it touches


@dataclass
class ReplayJob:
    """One replay or diff: what to read, how to decide, where to write."""

    settings: Settings
    codec: Codec
    policy: Policy
    replay_id: str
    start: datetime
    end: datetime | None = None
    partitions: frozenset[int] = frozenset()  # only these claims partitions (empty: every one)
    offsets: tuple[int | None, int | None] | None = None  # only these offsets, inclusive (None: all)
    output_topic: str | None = None  # None: diff (publishes nothing)
    dead_letter_topic: str | None = None
    directory_version: str = "none"
    lookup_facts: Callable[[Claim], Facts] = no_facts
    metrics: ReplayMetrics = field(default_factory=ReplayMetrics)
    progress: bool | None = None  # None: when stderr is a TTY
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    stop: Callable[[], bool] = lambda: False
    metrics_file: Path | None = None
    batch_hook: Callable[[int], None] = lambda _n: None  # tests: called after each committed batch
    policies: PolicyChoice | None = None  # the version per claim's date of service; None: ``policy`` pinned

    @property
    def policy_ref(self) -> str:
        """What the replay decides under: ``<id>`` (by date of service) or ``<id>/<version>`` (pinned)."""
        return self.policy.ref if self.policies is None else self.policies.ref

    @property
    def diff(self) -> bool:
        """A diff publishes nothing."""
        return self.output_topic is None
