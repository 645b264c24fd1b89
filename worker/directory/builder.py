"""The builder of the prescriber directory index: one pass over an NPPES file, written atomically."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from array import array
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from worker.directory.layout import (
    FORMAT_VERSION,
    MAGIC,
    NO_PRIMARY,
    PREFIX,
    RECORD,
    DirectoryIndexError,
    align,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from worker.directory.nppes import NppesRecord

__all__ = ["BuildSummary", "build_index"]

_MAX_CODES = 65535


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
            (rec.entity_type, len(rec.taxonomies), NO_PRIMARY if rec.primary is None else rec.primary, 0)
        )
        counts[("deactivated_row", "individual", "organisation")[rec.entity_type]] += 1
        if on_progress is not None and n & 0xFFFF == 0:
            on_progress(n)
    rows = len(npis)
    if on_progress is not None:
        on_progress(rows)
    order: Iterable[int] = range(rows) if ordered else sorted(range(rows), key=npis.__getitem__)
    sorted_npis = array("I")
    record_bytes = bytearray(rows * RECORD.size)
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
        RECORD.pack_into(record_bytes, offset, first[i], deact[i], react[i], m[0], m[1], m[2], 0)
        offset += RECORD.size
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
    start = align(PREFIX.size + reserve)
    position = start
    for name, body in sections.items():
        header["sections"][name] = [position, len(body)]
        position = align(position + len(body))
    header_bytes = json.dumps(header).encode().ljust(reserve)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{out.name}.", dir=out.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(PREFIX.pack(MAGIC, len(header_bytes), 0))
            handle.write(header_bytes)
            handle.write(b"\0" * (start - PREFIX.size - len(header_bytes)))
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
