"""The on-disk layout of the prescriber directory index, shared by its builder and its reader.

File layout (little-endian, every section 8-byte aligned)::

    0   8 bytes  magic b"CWNPIDX1"
    8   u32      length of the JSON header that follows
    12  u32      0 (reserved)
    16  JSON     header: format_version, release, release_date, built_at, source, rows, codes (the
                 taxonomy code table), sections {name: [offset, length]}, sha256 of the sections, counts
    ... npis        u32[rows]   sorted NPIs (the binary-search key, 4 bytes per NPI)
    ... records     16 bytes per NPI, same order: u32 first taxonomy (index into ``taxonomies``),
                    u32 deactivation date, u32 reactivation date (proleptic ordinals, 0 = none),
                    u8 entity type (0 blank, 1, 2), u8 taxonomy count, u8 primary slot (255 = none), u8 0
    ... taxonomies  u16[...]    ids into the header's code table, each NPI's in slot order
"""

from __future__ import annotations

import struct

from worker.errors import ClaimsWorkerError

__all__ = [
    "FORMAT_VERSION",
    "MAGIC",
    "NO_PRIMARY",
    "PREFIX",
    "RECORD",
    "DirectoryIndexError",
    "align",
]

MAGIC = b"CWNPIDX1"
FORMAT_VERSION = 1
PREFIX = struct.Struct("<8sII")
RECORD = struct.Struct("<IIIBBBB")
NO_PRIMARY = 255


class DirectoryIndexError(ClaimsWorkerError):
    """The index file is missing, not an index, of another format version, or damaged."""


def align(value: int) -> int:
    """Return ``value`` rounded up to the next multiple of 8 (every section starts 8-byte aligned)."""
    return (value + 7) & ~7
