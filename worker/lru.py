"""One bounded memo for values computed from input (product ids, diagnosis codes, criteria, schema ids)."""

from __future__ import annotations

from collections import OrderedDict
from typing import Generic, TypeVar, overload

__all__ = ["LruMemo"]

K = TypeVar("K")
V = TypeVar("V")
D = TypeVar("D")


class LruMemo(Generic[K, V]):
    """Remembers at most ``limit`` entries and forgets the least recently used one to make room.

    Keys come from input records, so the memo must be bounded; evicting (rather than refusing new
    keys once full) keeps the current input mix cached when it shifts. Not thread-safe: each memo
    belongs to one thread, like the policy objects and codec that hold one.
    """

    __slots__ = ("_data", "_limit")

    def __init__(self, limit: int) -> None:
        if limit < 1:
            msg = "an LRU memo needs room for at least one entry"
            raise ValueError(msg)
        self._data: OrderedDict[K, V] = OrderedDict()
        self._limit = limit

    @property
    def limit(self) -> int:
        """The most entries kept."""
        return self._limit

    @overload
    def get(self, key: K) -> V | None: ...
    @overload
    def get(self, key: K, default: D) -> V | D: ...
    def get(self, key: K, default: object = None) -> object:
        """Return the value for ``key`` (now the most recently used), or ``default`` when absent."""
        data = self._data
        try:
            data.move_to_end(key)
        except KeyError:
            return default
        return data[key]

    def put(self, key: K, value: V) -> None:
        """Remember ``value`` for ``key``, forgetting the least recently used entry when full."""
        data = self._data
        data[key] = value
        data.move_to_end(key)
        if len(data) > self._limit:
            data.popitem(last=False)

    def __contains__(self, key: object) -> bool:
        return key in self._data

    def __len__(self) -> int:
        return len(self._data)
