"""Faults an operator causes, seen outside the loop: a topic gone or shrunk, another cluster, the slot taken.

The group watch (``worker.runtime.watch``) hands every check's answers here: the brokers' metadata for
the claims, results and dead-letter topics with the cluster id (``worker.kafka.cluster``), and the
described group. Each fault ends the worker with one line that names it and a documented exit code
(docs/operations.md, runbook), instead of lingering or ending in an internal error (exit 70):

* a topic deleted: ``topic_missing`` is logged at once, ``/readyz`` turns false, and the group watch
  no longer heals (a vanished claims topic leaves every partition "unowned", and removing our own static
  member cannot fix that); if the topic is not back within ``CLAIMS_TOPIC_MISSING_LIMIT_S`` the worker
  exits 2 naming it;
* an output topic with fewer partitions than the claims topic (deleted and recreated smaller): exit 2
  at once, naming the topic and both counts (a restore or send to the missing partitions would only time
  out);
* a different cluster id behind the bootstrap addresses (the broker replaced by a fresh cluster): exit 2
  naming both ids; nothing the worker knew (offsets, transactions, results) is there;
* another process holding this worker's static member slot (a twin started with the same
  ``CLAIMS_INSTANCE``): two checks in a row find the slot's member id is not ours, exit 3. kafka-python's
  heartbeat thread only logs FENCED_INSTANCE_ID and stops heartbeating, and an idle worker makes no
  commit or transactional call that would raise it, so without this it would linger until input came.

``diagnose`` judges a fresh answer at once, for a loop that ended in an internal error: if an operator
fault explains it, that fault's line and code are reported instead.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any

from worker.kafka.cluster import cluster_changed
from worker.kafka.failures import FatalError, Kind, SlotTaken, describe
from worker.kafka.io import topic_problem

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from structlog.typing import FilteringBoundLogger

    from worker.config.settings import Settings
    from worker.kafka.cluster import ClusterView

__all__ = ["Sentinel"]


class Sentinel:
    """Judges the group watch's answers for operator faults; ``fatal`` is set once one ends the worker."""

    def __init__(
        self,
        settings: Settings,
        log: FilteringBoundLogger,
        *,
        cluster_id: str | None,
        member_id: Callable[[], str | None],
        instance_id: str,
        on_fatal: Callable[[], None] = lambda: None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``cluster_id``: the id the worker started against (None: the first answer's is adopted).

        ``member_id`` returns this worker's current group member id ("" or None before it joined);
        ``instance_id`` is its static member id; ``on_fatal`` is called once, when ``fatal`` is set.
        """
        self.settings, self._log, self._clock = settings, log, clock
        self.cluster_id, self._member_id, self.instance_id = cluster_id, member_id, instance_id
        self._on_fatal = on_fatal
        self.topics = (settings.claims_topic, settings.results_topic, settings.dead_letter_topic)
        self.limit_s = settings.topic_missing_limit_s
        self.missing: dict[str, float] = {}  # topic -> when it was first seen missing
        self.counts: dict[str, int] = {}  # each topic's last partition count seen (while it existed)
        self._foreign: str | None = None  # another member id seen holding our slot at the last check
        self._lock = threading.Lock()
        self.fatal: FatalError | None = None

    @property
    def claims_topic_missing(self) -> bool:
        """Tell whether the last answer said the claims topic does not exist (the watch must not heal)."""
        return self.settings.claims_topic in self.missing

    def look(self, view: ClusterView | None, described: Mapping[str, Any] | None) -> FatalError | None:
        """Judge one check's answers (either may be None: not answered); return the fault that ends us."""
        if self.fatal is None and view is not None:
            self._judge(self._cluster(view) or self._topics(view, wait=True))
        if self.fatal is None and described is not None:
            self._judge(self._slot(described))
        return self.fatal

    def diagnose(self, view: ClusterView | None) -> FatalError | None:
        """Return the operator fault a fresh answer shows (a missing topic counts at once), or None."""
        if self.fatal is not None or view is None:
            return self.fatal
        fault = self._cluster(view) or self._topics(view, wait=False)
        if fault is not None:
            self._judge(fault)
        return fault

    def guard(self, check: Callable[[], tuple[bool, str]]) -> Callable[[], tuple[bool, str]]:
        """Return ``/readyz``'s check: not ready while a fault is seen, else ``check``'s own answer."""

        def ready() -> tuple[bool, str]:
            seen = self.readiness()
            return seen if seen is not None else check()

        return ready

    def readiness(self) -> tuple[bool, str] | None:
        """Return (False, why) while a fault is seen (a topic missing, the end coming); None: nothing seen."""
        if self.fatal is not None:
            return False, self.fatal.message[:200]
        missing = sorted(self.missing)
        if missing:
            return False, f"topic {missing[0]!r} does not exist (deleted?); the worker exits 2 if it stays so"
        return None

    # --- the faults ---------------------------------------------------------------------------------
    def _judge(self, fault: FatalError | None) -> None:
        if fault is None:
            return
        with self._lock:
            if self.fatal is not None:
                return
            self.fatal = fault
        self._log.error(
            "operator_fault",
            error=type(fault.cause).__name__ if fault.cause is not None else fault.kind.name,
            message=fault.message,
            exit_code=int(fault.kind.exit_code),
        )
        self._on_fatal()

    def _cluster(self, view: ClusterView) -> FatalError | None:
        """Return the fault when the cluster id differs from the one the worker started against (exit 2)."""
        if view.cluster_id is None:
            return None
        if self.cluster_id is None:
            self.cluster_id = view.cluster_id
            return None
        if view.cluster_id == self.cluster_id:
            return None
        return cluster_changed(self.settings.bootstrap_servers, self.cluster_id, view.cluster_id)

    def _topics(self, view: ClusterView, *, wait: bool) -> FatalError | None:
        """Return the fault for a topic gone (past the limit; at once without ``wait``) or too small."""
        now = self._clock()
        for topic in self.topics:
            count = view.partitions.get(topic)
            if count is None:
                continue  # not answered about this time
            if count == 0 and topic not in self.missing:
                self.missing[topic] = now
                self._log.warning("topic_missing", topic=topic, limit_s=self.limit_s)
            elif count > 0 and topic in self.missing:
                del self.missing[topic]
                self._log.info("topic_back", topic=topic, n=count)
        for topic, since in sorted(self.missing.items(), key=lambda item: item[1]):
            if not wait or now - since >= self.limit_s:
                return FatalError(Kind.BAD_SETTINGS, self._missing_line(topic, now - since))
        present = {t: n for t, n in view.partitions.items() if n > 0}
        problem = None if self.missing else topic_problem(self.settings, present)
        if problem is not None:
            shrunk = [t for t in self.topics if 0 < present.get(t, 0) < self.counts.get(t, 0)]
            if shrunk:
                problem += f" (it had {self.counts[shrunk[0]]}: deleted and recreated smaller?)"
            return FatalError(Kind.BAD_SETTINGS, problem)
        self.counts.update(present)
        return None

    def _missing_line(self, topic: str, waited_s: float) -> str:
        had = self.counts.get(topic)
        recreate = f"recreate it with {had} partitions" if had else "recreate it"
        return (
            f"topic {topic!r} was deleted while the worker ran (missing for {waited_s:.0f}s, "
            f"CLAIMS_TOPIC_MISSING_LIMIT_S={self.limit_s:g}): {recreate}, then start the worker again"
        )

    def _slot(self, described: Mapping[str, Any]) -> FatalError | None:
        """Another member id on our static member slot at two checks in a row: a twin took it (exit 3)."""
        ours = self._member_id() or ""
        holder = next(
            (
                m.get("member_id") or ""
                for m in described.get("members") or ()
                if isinstance(m, dict) and m.get("group_instance_id") == self.instance_id
            ),
            "",
        )
        if not ours or not holder or holder == ours:
            self._foreign = None
            return None
        if holder != self._foreign:
            self._foreign = holder  # our own rejoin may not have reached our metadata yet: look again
            return None
        taken = SlotTaken((self.settings.group_id, self.settings.instance))
        return FatalError(Kind.FENCED, describe(taken, self.settings), taken)
