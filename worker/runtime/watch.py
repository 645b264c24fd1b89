"""A watch on the consumer group: claims partitions that no member of the settled group owns.

Cooperative rebalancing moves a partition in two steps: its old owner revokes it, then that owner's
next join hands it on. A worker SIGKILLed between the two steps and restarted at once on its slot
rejoins as a known static member, and the broker answers with the assignment it already had, without
a rebalance (it rebalances a settled group only when the selected protocol changes): nobody asks for
the second step, and the revoked partition has no owner until the membership changes again. A worker's
lag gauge covers only the partitions it owns, so nothing else shows it.

Every worker asks the group coordinator (``DescribeGroups``; the group's Read right implies Describe)
every ``interval_s`` on a thread of its own, and publishes how many of the claims topic's partitions
the settled group leaves unowned (``claims_worker_group_unowned_partitions``); the
``ClaimsWorkerPartitionsUnowned`` alert and its runbook (docs/operations.md) say what to do. A group in
the middle of a rebalance is not judged (the answer is ``None``).
"""

from __future__ import annotations

import contextlib
import threading
from typing import TYPE_CHECKING, Any, Protocol

from kafka import errors as kerrors

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from structlog.typing import FilteringBoundLogger

__all__ = ["GroupWatch", "unowned_partitions"]

STABLE = "Stable"


class GroupDescriber(Protocol):
    """What the watch needs of kafka-python's ``KafkaAdminClient``."""

    def describe_groups(self, group_ids: list[str]) -> Mapping[str, Any]:
        """Describe the groups (members with their decoded assignments)."""
        ...

    def close(self) -> None:
        """Close the client."""
        ...


def unowned_partitions(described: Mapping[str, Any] | None, topic: str, partitions: int) -> set[int] | None:
    """Return the partitions of ``topic`` no member of the settled group owns; None if it is not settled.

    ``described`` is one group of ``KafkaAdminClient.describe_groups``: ``group_state`` and ``members``,
    each with its decoded ``member_assignment`` (``assigned_partitions``: topic and partition numbers).
    """
    if not described or described.get("error") or described.get("group_state") != STABLE:
        return None
    owned: set[int] = set()
    for member in described.get("members") or ():
        assignment = member.get("member_assignment") or {}
        if not isinstance(assignment, dict):  # kafka-python could not decode it: judge nothing
            return None
        for entry in assignment.get("assigned_partitions") or ():
            if entry.get("topic") == topic:
                owned.update(entry.get("partitions") or ())
    return set(range(partitions)) - owned


class GroupWatch:
    """Ask the coordinator every ``interval_s`` which claims partitions the settled group leaves unowned."""

    def __init__(
        self,
        admin_factory: Callable[[], GroupDescriber],
        *,
        group_id: str,
        topic: str,
        partitions: Callable[[], int],
        publish: Callable[[int], None],
        log: FilteringBoundLogger,
        interval_s: float = 30.0,
    ) -> None:
        self._admin_factory = admin_factory
        self._admin: GroupDescriber | None = None
        self.group_id, self.topic, self._partitions = group_id, topic, partitions
        self._publish, self._log, self.interval_s = publish, log, interval_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.last: set[int] | None = None
        self._warned: set[int] = set()

    def check(self) -> set[int] | None:
        """Ask once; publish and log the unowned partitions; return them (None: not settled or no answer)."""
        try:
            if self._admin is None:
                self._admin = self._admin_factory()
            described = self._admin.describe_groups([self.group_id]).get(self.group_id)
        except (kerrors.KafkaError, OSError) as exc:  # no answer now: ask again next time
            self._log.debug("group_watch_unanswered", error=type(exc).__name__)
            self._close_admin()
            return None
        unowned = unowned_partitions(described, self.topic, self._partitions())
        if unowned is None:
            return None
        self._publish(len(unowned))
        # The moment between a cooperative revoke and its follow-up join looks the same: warn only when
        # two checks in a row (``interval_s`` apart) find the same partitions unowned, once per set.
        if unowned and unowned == self.last and unowned != self._warned:
            self._log.warning("partitions_unowned", partitions=sorted(unowned))
            self._warned = unowned
        if not unowned:
            self._warned = set()
        self.last = unowned
        return unowned

    def start(self) -> None:
        """Check every ``interval_s`` on a daemon thread until ``stop``."""
        self._thread = threading.Thread(target=self._run, name="group-watch", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.check()
            except Exception as exc:  # noqa: BLE001 - an odd answer must not end the watch
                self._log.warning("group_watch_failed", error=type(exc).__name__)

    def stop(self) -> None:
        """Stop the thread (without waiting on a question in flight) and close the admin client."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=1.0)
        self._close_admin()

    def _close_admin(self) -> None:
        admin, self._admin = self._admin, None
        if admin is not None:
            with contextlib.suppress(Exception):  # closing a client that may be half broken
                admin.close()
