"""A hash index from a key to a row number, held in one ``array`` of slots (4 bytes each, no objects).

A ``dict`` costs about 100 bytes an entry once its key and value objects are counted; this index costs
8 to 16: open addressing with linear probing over ``array('i')``, at most half full. The keys live in
the rows (the caller's columns), so the index asks the caller whether a row is the key it is after
(``matches``) and, when it grows, what a stored row's key hashes to (``hash_of_row``).
"""

from __future__ import annotations

from array import array
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["RowIndex", "mix"]

_EMPTY = -1
_GOLDEN = 0x9E3779B97F4A7C15  # 2^64 / the golden ratio: Fibonacci hashing spreads sequential keys
_MASK64 = (1 << 64) - 1
_FIRST_BITS = 3


def mix(value: int) -> int:
    """Return ``value`` scrambled into 64 bits (the index takes its top bits as the first slot)."""
    return (value * _GOLDEN) & _MASK64


class RowIndex:
    """Key -> row number by open addressing; rows are never removed, a slot's row can be replaced."""

    __slots__ = ("_bits", "_hash_of_row", "_slots", "_used")

    def __init__(self, hash_of_row: Callable[[int], int]) -> None:
        """Start empty; ``hash_of_row(row)`` gives the ``mix``-ed hash of the key a row holds."""
        self._hash_of_row = hash_of_row
        self._bits = _FIRST_BITS
        self._slots = array("i", [_EMPTY]) * (1 << _FIRST_BITS)
        self._used = 0

    def __len__(self) -> int:
        return self._used

    def find(self, hashed: int, matches: Callable[[int], bool]) -> tuple[int, int]:
        """Return ``(slot, row)`` of the key hashed to ``hashed``; absent: row -1, slot where it goes."""
        slots, mask = self._slots, (1 << self._bits) - 1
        slot = hashed >> (64 - self._bits)
        while (row := slots[slot]) != _EMPTY:
            if matches(row):
                return slot, row
            slot = (slot + 1) & mask
        return slot, _EMPTY

    def replace(self, slot: int, row: int) -> None:
        """Point a found slot at another row holding the same key."""
        self._slots[slot] = row

    def add(self, slot: int, row: int) -> None:
        """Store ``row`` in the empty ``slot`` that ``find`` returned; grow past half full."""
        self._slots[slot] = row
        self._used += 1
        if 2 * self._used > len(self._slots):
            self._grow()

    def _grow(self) -> None:
        old = self._slots
        self._bits += 1
        slots, mask, shift = array("i", [_EMPTY]) * (1 << self._bits), (1 << self._bits) - 1, 64 - self._bits
        for row in old:
            if row != _EMPTY:
                slot = self._hash_of_row(row) >> shift
                while slots[slot] != _EMPTY:
                    slot = (slot + 1) & mask
                slots[slot] = row
        self._slots = slots

    def nbytes(self) -> int:
        """Return the bytes of the slot array."""
        return self._slots.itemsize * len(self._slots)
