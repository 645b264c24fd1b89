"""A watch on the consumer group: claims partitions that no member of the settled group owns.

Cooperative rebalancing moves a partition in two steps: its old owner revokes it, then that owner's
next join hands it on. A worker SIGKILLed between the two steps and restarted at once on its slot
rejoins as a known static member, and the broker answers with the assignment it already had, without
a rebalance (it rebalances a settled group only when the selected protocol changes): nobody asks for
the second step, and the revoked partition has no owner until the membership changes again. A worker's
lag gauge covers only the partitions it owns, so nothing else shows it.

Every worker asks the group coordinator (``DescribeGroups``; the group's Read right implies Describe)
every ``interval_s`` on a thread of its own, and publishes how many of the claims topic's partitions
the settled group leaves unowned (``claims_worker_group_unowned_partitions``). A group in the middle of
a rebalance is not judged (the answer is ``None``).

It also heals the group. The partition needs a rebalance, and a static member that rejoins does not get
one, but removing a static member through the admin API does (the coordinator rebalances at once, and
the removed member's next heartbeat makes it rejoin as a new member of the same slot). So when two
checks in a row find the same partitions unowned, the worker whose slot sorts first among the group's
static members removes its own member (``heal``): one worker acts, the others see the same answer and
wait, and the alert (``ClaimsWorkerPartitionsUnowned``) fires only if the rebalance did not help. Each
worker's own removal costs it only its open transaction, which is aborted and replayed like after any
lost partition; the heal is counted in ``claims_worker_group_heals_total``.

With a ``Sentinel`` (``worker.runtime.sentinel``) each check also asks the brokers' metadata about the
worker's topics and the cluster id, and hands both answers to it: a deleted claims topic is reported
and never "healed" (every partition of a topic that is gone looks unowned), a topic recreated smaller,
another cluster, or a twin on this worker's slot ends the worker with its own line and exit code.
"""

from __future__ import annotations

import contextlib
import threading
from typing import TYPE_CHECKING, Any, Protocol

from worker.kafka.cluster import ClusterView, cluster_view
from worker.kafka.failures import ClientError
from worker.kafka.io import MemberRemover, remove_static_member

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from structlog.typing import FilteringBoundLogger

    from worker.kafka.failures import FatalError
    from worker.runtime.sentinel import Sentinel

__all__ = ["GroupWatch", "healer", "unowned_partitions"]

STABLE = "Stable"


class GroupAdmin(MemberRemover, Protocol):
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


def healer(described: Mapping[str, Any] | None) -> str | None:
    """Return the static member id that sorts first in the described group (the one worker that heals)."""
    members = (described or {}).get("members") or ()
    ids = [m.get("group_instance_id") for m in members if isinstance(m, dict)]
    return min((i for i in ids if i), default=None)


class GroupWatch:
    """Ask the coordinator every ``interval_s`` which claims partitions the settled group leaves unowned."""

    def __init__(
        self,
        admin_factory: Callable[[], GroupAdmin],
        *,
        group_id: str,
        topic: str,
        partitions: Callable[[], int],
        publish: Callable[[int], None],
        log: FilteringBoundLogger,
        interval_s: float = 30.0,
        member: str | None = None,
        healed: Callable[[], None] = lambda: None,
        sentinel: Sentinel | None = None,
    ) -> None:
        """``member``: this worker's static member id; with it the watch heals (see the module docstring).

        ``healed`` is called after each removal the coordinator accepted (the metric); ``sentinel``
        judges each check's answers for operator faults (deleted topics, another cluster, a twin).
        """
        self._admin_factory = admin_factory
        self._admin: GroupAdmin | None = None
        self.group_id, self.topic, self._partitions = group_id, topic, partitions
        self._publish, self._log, self.interval_s = publish, log, interval_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.last: set[int] | None = None
        self._warned: set[int] = set()
        self.member, self._healed = member, healed
        self.sentinel = sentinel

    def check(self) -> set[int] | None:
        """Ask once; publish and log the unowned partitions; return them (None: not settled or no answer)."""
        view = self.view()
        try:
            described = self._client().describe_groups([self.group_id]).get(self.group_id)
        except (ClientError, OSError) as exc:  # no answer now: ask again next time
            self._log.debug("group_watch_unanswered", error=type(exc).__name__)
            self._close_admin()
            described = None
        sentinel = self.sentinel
        if sentinel is not None and (sentinel.look(view, described) or sentinel.claims_topic_missing):
            self.last = None  # a vanished claims topic is not healed: every partition of it looks unowned
            return None
        if described is None:
            return None
        count = view.partitions.get(self.topic) if view is not None else None
        unowned = unowned_partitions(described, self.topic, count or self._partitions())
        if unowned is None:
            return None
        self._publish(len(unowned))
        # The moment between a cooperative revoke and its follow-up join looks the same: warn only when
        # two checks in a row (``interval_s`` apart) find the same partitions unowned, once per set.
        confirmed = bool(unowned) and unowned == self.last
        if confirmed and unowned != self._warned:
            self._log.warning("partitions_unowned", partitions=sorted(unowned))
            self._warned = unowned
        if not unowned:
            self._warned = set()
        self.last = unowned
        if confirmed and self.member is not None and healer(described) == self.member:
            self.heal(unowned)
            self.last = None  # two more checks before another heal: the rebalance needs its time
        return unowned

    def view(self) -> ClusterView | None:
        """Ask the brokers about the sentinel's topics and the cluster id; None without one or no answer."""
        if self.sentinel is None:
            return None
        try:
            return cluster_view(self._client(), self.sentinel.topics)
        except (ClientError, OSError) as exc:  # no answer now: ask again next time
            self._log.debug("group_watch_unanswered", error=type(exc).__name__)
            self._close_admin()
            return None

    def named_exit(self, code: int) -> tuple[int, str | None]:
        """Return the exit code after the loop and the fault's line: the sentinel's, if one stopped it.

        The sentinel's fault stops the loop as SIGTERM does (it returns 0, or whatever the stop met):
        the fault's code (2 or 3) and line replace the loop's. Otherwise ``(code, None)``. (An internal
        error a fresh look explains is renamed by the loop itself: ``Pipeline.explain`` is ``diagnose``.)
        """
        fault = None if self.sentinel is None else self.sentinel.fatal
        if fault is None:
            return code, None
        return int(fault.kind.exit_code), fault.message

    def diagnose(self) -> FatalError | None:
        """Look once more, at once, with a client of its own: the operator fault that explains an exit 70."""
        if self.sentinel is None:
            return None
        admin = None
        try:
            admin = self._admin_factory()
            view = cluster_view(admin, self.sentinel.topics)
        except (ClientError, OSError) as exc:
            self._log.debug("group_watch_unanswered", error=type(exc).__name__)
            return self.sentinel.fatal
        finally:
            if admin is not None:
                with contextlib.suppress(Exception):
                    admin.close()
        return self.sentinel.diagnose(view)

    def heal(self, unowned: set[int]) -> bool:
        """Remove this worker's static member so the coordinator rebalances the group; True if accepted."""
        if self.member is None:
            return False
        reason = f"claims-worker: partitions {sorted(unowned)} unowned; rebalance"
        try:
            answer = remove_static_member(self._client(), self.group_id, self.member, reason)
        except (ClientError, OSError) as exc:  # the next confirmed sighting tries again
            self._log.warning("group_heal_failed", error=type(exc).__name__)
            self._close_admin()
            return False
        if answer != "NoError":
            self._log.warning("group_heal_failed", error=answer)
            return False
        self._log.warning("group_heal_requested", partitions=sorted(unowned))
        self._healed()
        return True

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

    def _client(self) -> GroupAdmin:
        """Return the admin client, made on first use (and again after an unanswered question)."""
        if self._admin is None:
            self._admin = self._admin_factory()
        return self._admin

    def _close_admin(self) -> None:
        admin, self._admin = self._admin, None
        if admin is not None:
            with contextlib.suppress(Exception):  # closing a client that may be half broken
                admin.close()
