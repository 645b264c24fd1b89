"""The prescriber directory index: built once from an NPPES file, opened read-only and shared by workers.

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

Workers ``mmap`` the file read-only: the pages live once in the page cache whatever the number of worker
processes, a lookup is a C-level ``bisect`` over the ``npis`` section plus one 16-byte record, and nothing
is loaded into Python objects up front. A new build is written beside the old one and renamed over it, so
a running worker keeps reading the file it opened.
"""

from __future__ import annotations

import bisect
import hashlib
import json
import mmap
import os
import struct
import sys
import tempfile
from array import array
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, Self

from worker.directory.nppes import ENTITY_ORGANISATION, NppesRecord
from worker.errors import ClaimsWorkerError
from worker.policy.facts import ProviderFacts, ProviderStatus

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator

__all__ = [
    "FORMAT_VERSION",
    "MAGIC",
    "BuildSummary",
    "Directory",
    "DirectoryIndexError",
    "Entry",
    "build_index",
    "facts_of",
    "status_of",
]

MAGIC = b"CWNPIDX1"
FORMAT_VERSION = 1
_PREFIX = struct.Struct("<8sII")
_RECORD = struct.Struct("<IIIBBBB")
_NO_PRIMARY = 255
_MAX_CODES = 65535
_CACHE_SIZE = 65536  # decoded index entries kept per process (~15 MB at most)

if sys.byteorder != "little":  # pragma: no cover - the sections are read through native casts
    msg = "the directory index is read through native little-endian casts"
    raise ImportError(msg)


class DirectoryIndexError(ClaimsWorkerError):
    """The index file is missing, not an index, of another format version, or damaged."""


class Entry(NamedTuple):
    """What the directory holds for one NPI, from the index or from an update on the topic.

    A named tuple rather than a frozen dataclass: a lookup builds one, and this is ~5x cheaper to make.
    """

    entity_type: int
    taxonomies: tuple[str, ...] = ()
    primary: int | None = None
    deactivation: date | None = None
    reactivation: date | None = None
    version: str | None = None  # the release this entry came from
    removed: bool = False  # an update saying the NPI is no longer listed


def status_of(entry: Entry | None, date_of_service: date) -> ProviderStatus:
    """Return what ``entry`` means on ``date_of_service`` (docs/directory.md, "Statuses").

    Not listed → NOT_FOUND; entity type 2 → ORGANISATION; deactivated on or before the date of service and
    not reactivated on or before it → DEACTIVATED; otherwise ACTIVE.
    """
    if entry is None or entry.removed:
        return ProviderStatus.NOT_FOUND
    if entry.entity_type == ENTITY_ORGANISATION:
        return ProviderStatus.ORGANISATION
    if entry.deactivation is not None and entry.deactivation <= date_of_service:
        reactivated = entry.reactivation is not None and entry.deactivation <= entry.reactivation
        if not (reactivated and entry.reactivation is not None and entry.reactivation <= date_of_service):
            return ProviderStatus.DEACTIVATED
    return ProviderStatus.ACTIVE


def facts_of(npi: str, entry: Entry | None, date_of_service: date, version: str | None) -> ProviderFacts:
    """Return the ``ProviderFacts`` of ``entry`` for ``npi`` on ``date_of_service``."""
    status = status_of(entry, date_of_service)
    if entry is None or status is ProviderStatus.NOT_FOUND:
        return ProviderFacts(npi=npi, status=status, directory_version=version)
    primary = entry.taxonomies[entry.primary] if entry.primary is not None else None
    return ProviderFacts(
        npi=npi,
        status=status,
        taxonomies=entry.taxonomies,
        primary_taxonomy=primary,
        directory_version=entry.version or version,
    )


def _ordinal(value: date | None) -> int:
    return value.toordinal() if value is not None else 0


@dataclass(frozen=True, slots=True)
class BuildSummary:
    """What a build wrote."""

    path: Path
    rows: int
    codes: int
    size_bytes: int
    release: str
    skipped: int


def build_index(  # noqa: C901, PLR0912, PLR0915 - one pass: collect, sort, check duplicates, write
    records: Iterable[NppesRecord],
    out: Path,
    *,
    release: str,
    release_date: date,
    source: str,
    on_progress: Callable[[int], None] | None = None,
    skipped: int = 0,
) -> BuildSummary:
    """Write the index of ``records`` to ``out`` (atomically: a temporary file renamed over it).

    Raises ``NppesFormatError`` (from the records) or ``DirectoryIndexError`` on a duplicate NPI.
    """
    npis = array("I")
    lines = array("I")
    first = array("I")
    deact = array("I")
    react = array("I")
    meta = bytearray()
    taxes = array("H")
    codes: dict[str, int] = {}
    ordered = True
    previous = -1
    counts = {"individual": 0, "organisation": 0, "deactivated_row": 0}
    for n, rec in enumerate(records, start=1):
        if rec.npi <= previous:
            ordered = False
        previous = rec.npi
        npis.append(rec.npi)
        lines.append(rec.line)
        first.append(len(taxes))
        for code in rec.taxonomies:
            code_id = codes.get(code)
            if code_id is None:
                if len(codes) >= _MAX_CODES:
                    raise DirectoryIndexError(f"more than {_MAX_CODES} distinct taxonomy codes")
                code_id = codes[code] = len(codes)
            taxes.append(code_id)
        deact.append(_ordinal(rec.deactivation))
        react.append(_ordinal(rec.reactivation))
        meta += bytes(
            (rec.entity_type, len(rec.taxonomies), _NO_PRIMARY if rec.primary is None else rec.primary, 0)
        )
        counts[("deactivated_row", "individual", "organisation")[rec.entity_type]] += 1
        if on_progress is not None and n & 0xFFFF == 0:
            on_progress(n)
    rows = len(npis)
    if on_progress is not None:
        on_progress(rows)
    order: Iterable[int] = range(rows) if ordered else sorted(range(rows), key=npis.__getitem__)
    sorted_npis = array("I")
    record_bytes = bytearray(rows * _RECORD.size)
    offset = 0
    last = -1
    last_line = 0
    for i in order:
        npi = npis[i]
        if npi == last:
            raise DirectoryIndexError(f"line {lines[i]}: NPI listed twice (first at line {last_line})")
        last, last_line = npi, lines[i]
        sorted_npis.append(npi)
        m = meta[4 * i : 4 * i + 4]
        _RECORD.pack_into(record_bytes, offset, first[i], deact[i], react[i], m[0], m[1], m[2], 0)
        offset += _RECORD.size
    del npis, first, deact, react, meta, lines
    sections: dict[str, bytes | bytearray] = {
        "npis": sorted_npis.tobytes(),
        "records": record_bytes,
        "taxonomies": taxes.tobytes(),
    }
    digest = hashlib.sha256()
    for body in sections.values():
        digest.update(body)
    header: dict[str, Any] = {
        "format": "claims-worker-npi-directory",
        "format_version": FORMAT_VERSION,
        "release": release,
        "release_date": release_date.isoformat(),
        "built_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "source": source,
        "rows": rows,
        "codes": sorted(codes, key=codes.__getitem__),
        "counts": counts,
        "sha256": digest.hexdigest(),
    }
    # Offsets depend on the header length, which depends on the offsets' digits: reserve room for them.
    header["sections"] = {name: [0, len(body)] for name, body in sections.items()}
    reserve = len(json.dumps(header).encode()) + 3 * 2 * 20
    start = _align(_PREFIX.size + reserve)
    position = start
    for name, body in sections.items():
        header["sections"][name] = [position, len(body)]
        position = _align(position + len(body))
    header_bytes = json.dumps(header).encode().ljust(reserve)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{out.name}.", dir=out.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(_PREFIX.pack(MAGIC, len(header_bytes), 0))
            handle.write(header_bytes)
            handle.write(b"\0" * (start - _PREFIX.size - len(header_bytes)))
            for name, body in sections.items():
                handle.seek(header["sections"][name][0])
                handle.write(body)
            handle.truncate(position)
            handle.flush()
            os.fsync(handle.fileno())
        Path(tmp_name).chmod(0o644)
        Path(tmp_name).replace(out)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return BuildSummary(out, rows, len(codes), out.stat().st_size, release, skipped)


def _align(value: int) -> int:
    return (value + 7) & ~7


class Directory:
    """A read-only, memory-mapped prescriber directory with an overlay of updates from the topic.

    ``facts(npi, date_of_service)`` answers from the overlay when it holds the NPI (an update newer than
    the index's release), else from the index. Lookups and ``apply`` run on one thread (the loop's).
    """

    def __init__(self, path: Path, handle: mmap.mmap, header: dict[str, Any]) -> None:
        self.path = path
        self._map = handle
        self.header = header
        self.version: str = header["release"]
        self.release_date = date.fromisoformat(header["release_date"])
        self.built_at: str = header["built_at"]
        self.rows: int = header["rows"]
        self._codes: tuple[str, ...] = tuple(sys.intern(c) for c in header["codes"])
        for name in ("npis", "records", "taxonomies"):
            offset, length = header["sections"][name]
            if offset < 0 or length < 0 or offset + length > len(handle):
                raise DirectoryIndexError(f"{path}: section {name} lies outside the file (truncated?)")
        view = memoryview(handle)
        npis, records, taxes = (_section(view, header, name) for name in ("npis", "records", "taxonomies"))
        self._npis = npis.cast("I")
        self._records = records
        self._taxes = taxes.cast("H")
        self._views = [self._npis, self._taxes, npis, records, taxes, view]
        if len(self._npis) != self.rows or len(self._records) != self.rows * _RECORD.size:
            for held in self._views:
                held.release()
            raise DirectoryIndexError(f"{path}: section sizes do not match the header's {self.rows} rows")
        self._overlay: dict[int, Entry] = {}
        self._cache: dict[int, Entry | None] = {}  # index entries already decoded (the overlay is not cached)

    @classmethod
    def open(cls, path: str | os.PathLike[str], *, verify: bool = False) -> Directory:
        """Map the index at ``path`` read-only; ``verify`` also checks the sections' SHA-256 (reads all)."""
        location = Path(path)
        try:
            with location.open("rb") as handle:
                mapped = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
        except FileNotFoundError:
            raise DirectoryIndexError(f"{location}: no such directory index") from None
        except (OSError, ValueError) as exc:
            raise DirectoryIndexError(f"{location}: cannot map the directory index ({exc})") from None
        try:
            directory = cls(location, mapped, _header(location, mapped))
        except (struct.error, ValueError, KeyError, TypeError, AttributeError) as exc:
            mapped.close()
            raise DirectoryIndexError(f"{location}: damaged directory index ({type(exc).__name__})") from None
        except DirectoryIndexError:
            mapped.close()
            raise
        if verify:
            directory.verify()
        return directory

    def verify(self) -> None:
        """Check the sections against the header's SHA-256; raise ``DirectoryIndexError`` when they differ."""
        digest = hashlib.sha256()
        with memoryview(self._map) as view:
            for name in ("npis", "records", "taxonomies"):
                with _section(view, self.header, name) as body:
                    digest.update(body)
        if digest.hexdigest() != self.header["sha256"]:
            raise DirectoryIndexError(f"{self.path}: the sections do not match their SHA-256 (damaged file)")

    def close(self) -> None:
        """Release the mapping (lookups fail afterwards)."""
        for view in self._views:
            view.release()
        self._map.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def __len__(self) -> int:
        return self.rows

    def entry(self, npi: int) -> Entry | None:
        """Return the index's entry for ``npi`` (ignoring the overlay), or ``None`` when not listed."""
        npis = self._npis
        i = bisect.bisect_left(npis, npi)
        if i == self.rows or npis[i] != npi:
            return None
        return self._entry_at(i)

    def _entry_at(self, i: int) -> Entry:
        first, deact, react, entity, count, primary, _ = _RECORD.unpack_from(self._records, i * _RECORD.size)
        return Entry(
            entity,
            tuple(map(self._codes.__getitem__, self._taxes[first : first + count])),
            None if primary == _NO_PRIMARY else primary,
            date.fromordinal(deact) if deact else None,
            date.fromordinal(react) if react else None,
        )

    def entries(self) -> Iterator[tuple[int, Entry]]:
        """Yield every ``(npi, entry)`` of the index in NPI order (for diffs and publishing)."""
        for i in range(self.rows):
            yield self._npis[i], self._entry_at(i)

    def facts(self, npi: str, date_of_service: date) -> ProviderFacts:
        """Return what the directory says of ``npi`` on ``date_of_service`` (overlay first, then the index).

        An ``npi`` that is not 10 digits is NOT_FOUND (the check digit is the caller's rule: reject 25).
        """
        if len(npi) != 10 or not npi.isdigit():  # noqa: PLR2004 - NPI length
            return ProviderFacts(npi=npi, status=ProviderStatus.NOT_FOUND, directory_version=self.version)
        key = int(npi)
        entry = self._overlay.get(key) if self._overlay else None
        if entry is None:
            cache = self._cache
            if key in cache:
                entry = cache[key]
            else:
                if len(cache) >= _CACHE_SIZE:
                    cache.clear()  # crude but bounded; prescribers repeat, so it refills with the busy ones
                entry = cache[key] = self.entry(key)
        return facts_of(npi, entry, date_of_service, self.version)

    # -- the overlay (updates from the compacted topic) ------------------------------------------------

    def apply(self, npi: int, entry: Entry | None, release_date: date | None) -> bool:
        """Apply one update: ``entry`` over the index, or ``None`` (a tombstone) back to the index.

        An update whose release is older than the index's is ignored (the index is newer) and any earlier
        overlay of that NPI is dropped. Returns whether the NPI's answer may have changed.
        """
        if entry is None:
            return self._overlay.pop(npi, None) is not None
        if release_date is not None and release_date < self.release_date:
            return self._overlay.pop(npi, None) is not None
        self._overlay[npi] = entry
        return True

    @property
    def overlay_size(self) -> int:
        """How many NPIs the topic currently overrides."""
        return len(self._overlay)


def _header(location: Path, mapped: mmap.mmap) -> dict[str, Any]:
    magic, length, _ = _PREFIX.unpack_from(mapped, 0)
    if magic != MAGIC:
        raise DirectoryIndexError(f"{location}: not a claims-worker directory index")
    header: dict[str, Any] = json.loads(bytes(mapped[_PREFIX.size : _PREFIX.size + length]))
    if header.get("format_version") != FORMAT_VERSION:
        raise DirectoryIndexError(
            f"{location}: index format {header.get('format_version')}, this worker reads "
            f"{FORMAT_VERSION}: rebuild it with `claims-worker directory build`"
        )
    return header


def _section(view: memoryview, header: dict[str, Any], name: str) -> memoryview:
    offset, length = header["sections"][name]
    if offset < 0 or length < 0 or offset + length > len(view):
        raise DirectoryIndexError(f"section {name} lies outside the file (truncated index?)")
    return view[offset : offset + length]
