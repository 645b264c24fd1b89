"""Per-partition memory of recently published event ids, so a redelivered claim event is not decided twice.

The memory mirrors the results topic: an id enters only with the transaction that publishes its
result (``stage`` then ``commit``), an abort restores exactly the memory before the batch (ids the
batch evicted come back, in their place), and a partition's memory is rebuilt from the results topic's
event-id headers after assignment, newest first.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import TYPE_CHECKING

from worker.state.store import Restored

if TYPE_CHECKING:
    import threading
    from collections.abc import Callable, Iterable

__all__ = ["SeenEvents"]

# Results carry the source event id as a header so a restarted worker rebuilds its duplicate
# filter from the results topic without decoding Avro (see README, "Duplicates").


class SeenEvents:
    """Bounded, insertion-ordered sets of event ids, one per input partition (a ``PartitionStore``).

    Eviction is first in, first out and O(1) (``OrderedDict.popitem(last=False)``). Every change of
    the open batch is journalled so that ``abort`` undoes it exactly.
    """

    __slots__ = ("_journal", "_reader", "_seen", "_window", "name")

    def __init__(self, window: int, reader: Callable[[int, threading.Event], Restored] | None = None) -> None:
        """Remember ``window`` ids per partition; ``reader`` reads one partition's ids back (oldest first)."""
        self.name = "dedupe"
        self._window = window
        self._reader = reader
        self._seen: dict[int, OrderedDict[str, None]] = {}
        # (partition, staged id, id evicted to make room or None), in staging order.
        self._journal: list[tuple[int, str, str | None]] = []

    # --- PartitionStore ---------------------------------------------------------------------------
    def restore(self, partition: int, stop: threading.Event) -> Restored:
        """Read ``partition``'s event ids back from the results topic (blocking; off the poll thread)."""
        if self._reader is None or self._window <= 0:
            return Restored(partition, [])
        return self._reader(partition, stop)

    def load(self, restored: Restored) -> None:
        """Replace the partition's memory with the restored ids (oldest first), keep the newest ``window``."""
        ids = restored.state
        self.load_ids(restored.partition, ids if isinstance(ids, list) else [])

    def load_ids(self, partition: int, event_ids: Iterable[str]) -> None:
        """Replace ``partition``'s memory with ``event_ids`` (oldest first) and mark it loaded."""
        memory: OrderedDict[str, None] = OrderedDict()
        self._seen[partition] = memory
        if self._window <= 0:
            return
        for event_id in event_ids:
            memory[event_id] = None
            memory.move_to_end(event_id)
        while len(memory) > self._window:
            memory.popitem(last=False)

    def is_loaded(self, partition: int) -> bool:
        """Tell whether ``partition``'s ids have been read back since it was assigned."""
        return partition in self._seen

    def commit(self) -> None:
        """Keep the committed batch's staged ids."""
        self._journal.clear()

    def abort(self) -> None:
        """Undo the aborted batch: its ids go, the ids it evicted come back at the old end of the queue."""
        for partition, event_id, evicted in reversed(self._journal):
            memory = self._seen.get(partition)
            if memory is None:
                continue
            memory.pop(event_id, None)
            if evicted is not None:
                memory[evicted] = None
                memory.move_to_end(evicted, last=False)
        self._journal.clear()

    def forget(self, partition: int) -> None:
        """Drop a revoked or lost partition's memory; it is read back again if reassigned."""
        self._seen.pop(partition, None)
        self._journal = [entry for entry in self._journal if entry[0] != partition]

    def forget_all(self) -> None:
        """Drop every partition's memory (after a producer replacement)."""
        self._seen.clear()
        self._journal.clear()

    # --- the filter -------------------------------------------------------------------------------
    def seen(self, partition: int, event_id: str) -> bool:
        """Tell whether ``event_id`` was published for ``partition`` (committed or staged in this batch)."""
        memory = self._seen.get(partition)
        return memory is not None and event_id in memory

    def stage(self, partition: int, event_id: str) -> None:
        """Remember ``event_id`` for the open batch: visible to ``seen`` now, undone by ``abort``."""
        if self._window <= 0:
            return
        memory = self._seen.setdefault(partition, OrderedDict())
        if event_id in memory:
            return
        memory[event_id] = None
        evicted = memory.popitem(last=False)[0] if len(memory) > self._window else None
        self._journal.append((partition, event_id, evicted))

    def snapshot(self, partition: int) -> list[str]:
        """Return ``partition``'s ids, oldest first (for tests and diagnostics)."""
        return list(self._seen.get(partition, ()))
