"""Partition state: what a store kept per input partition must do to stay in step with Kafka.

A store holds state derived from committed output (the duplicate filter today; an authorization store
next). It changes only with what commits: a batch stages its changes, ``commit`` keeps them, ``abort``
puts back exactly the state before the batch. On assignment the state is rebuilt from Kafka off the
poll thread (``restore``, which may block), then handed in with ``load``; on revoke it is dropped.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from worker.kafka.io import Restored

if TYPE_CHECKING:
    import threading

__all__ = ["PartitionStore", "Restored"]


class PartitionStore(Protocol):
    """Per-partition state that changes only with committed transactions (see the module docstring)."""

    name: str

    def restore(self, partition: int, stop: threading.Event) -> Restored:
        """Read ``partition``'s state back from Kafka; may block, runs off the poll thread."""
        ...

    def load(self, restored: Restored) -> None:
        """Install what ``restore`` read; the partition is usable from now on."""
        ...

    def is_loaded(self, partition: int) -> bool:
        """Tell whether ``partition``'s state is installed."""
        ...

    def commit(self) -> None:
        """Keep every change staged since the last commit or abort."""
        ...

    def abort(self) -> None:
        """Undo every change staged since the last commit or abort, exactly."""
        ...

    def forget(self, partition: int) -> None:
        """Drop a revoked or lost partition's state; it is restored again if reassigned."""
        ...

    def forget_all(self) -> None:
        """Drop every partition's state (after a producer replacement: only the read-back knows the truth)."""
        ...
