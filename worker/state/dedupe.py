"""Per-partition memory of recently published event ids, so a redelivered claim event is not decided twice."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterable

__all__ = ["SeenEvents"]


class SeenEvents:
    """Bounded, insertion-ordered sets of event ids, one per input partition.

    Ids enter only after their transaction commits (``commit``); a batch's own ids are staged so a
    duplicate inside one batch is caught too, and dropped again when the batch aborts (``discard``).
    A partition is "loaded" once its ids were read back from the output topic after assignment.
    """

    __slots__ = ("_loaded", "_seen", "_staged", "_window")

    def __init__(self, window: int) -> None:
        self._window = window
        self._seen: dict[int, dict[str, None]] = {}
        self._loaded: set[int] = set()
        self._staged: list[tuple[int, str]] = []

    def is_loaded(self, partition: int) -> bool:
        """Tell whether ``partition``'s ids have been read back since it was assigned."""
        return partition in self._loaded

    def load(self, partition: int, event_ids: Iterable[str]) -> None:
        """Replace ``partition``'s memory with ``event_ids`` (oldest first) and mark it loaded."""
        self._seen[partition] = {}
        self._loaded.add(partition)
        for event_id in event_ids:
            self._remember(partition, event_id)

    def forget(self, partition: int) -> None:
        """Drop a revoked or lost partition's memory; it is read back again if reassigned."""
        self._seen.pop(partition, None)
        self._loaded.discard(partition)

    def forget_all(self) -> None:
        """Drop every partition's memory (after an indefinite transaction outcome)."""
        self._seen.clear()
        self._loaded.clear()
        self._staged.clear()

    def seen(self, partition: int, event_id: str) -> bool:
        """Tell whether ``event_id`` was published for ``partition`` (committed or staged in this batch)."""
        return event_id in self._seen.get(partition, ())

    def stage(self, partition: int, event_id: str) -> None:
        """Remember ``event_id`` for the open batch: visible to ``seen`` now, undone by ``discard``."""
        self._staged.append((partition, event_id))
        self._remember(partition, event_id)

    def commit(self) -> None:
        """Keep the committed batch's staged ids."""
        self._staged.clear()

    def discard(self) -> None:
        """Forget the aborted batch's staged ids."""
        for partition, event_id in self._staged:
            self._seen.get(partition, {}).pop(event_id, None)
        self._staged.clear()

    def _remember(self, partition: int, event_id: str) -> None:
        if self._window <= 0:
            return
        ids = self._seen.setdefault(partition, {})
        ids.pop(event_id, None)
        ids[event_id] = None
        if len(ids) > self._window:
            del ids[next(iter(ids))]
