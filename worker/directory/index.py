"""The reader of the prescriber directory index: mapped read-only, shared by workers, with an overlay.

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
import struct
import sys
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, Self

from worker.directory.layout import FORMAT_VERSION, MAGIC, NO_PRIMARY, PREFIX, RECORD, DirectoryIndexError
from worker.directory.nppes import ENTITY_ORGANISATION
from worker.policy.facts import ProviderFacts, ProviderStatus

if TYPE_CHECKING:
    import os
    from collections.abc import Iterator

__all__ = ["Directory", "Entry", "facts_of", "status_of"]

_CACHE_SIZE = 65536  # decoded index entries kept per process (~15 MB at most)

if sys.byteorder != "little":  # pragma: no cover - the sections are read through native casts
    msg = "the directory index is read through native little-endian casts"
    raise ImportError(msg)


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
        if len(self._npis) != self.rows or len(self._records) != self.rows * RECORD.size:
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
        first, deact, react, entity, count, primary, _ = RECORD.unpack_from(self._records, i * RECORD.size)
        return Entry(
            entity,
            tuple(map(self._codes.__getitem__, self._taxes[first : first + count])),
            None if primary == NO_PRIMARY else primary,
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
    magic, length, _ = PREFIX.unpack_from(mapped, 0)
    if magic != MAGIC:
        raise DirectoryIndexError(f"{location}: not a claims-worker directory index")
    header: dict[str, Any] = json.loads(bytes(mapped[PREFIX.size : PREFIX.size + length]))
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
