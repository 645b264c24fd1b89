"""Benchmark of the prescriber directory: build time, size on disk, RSS with the index open, lookups/s.

Run: ``.venv/bin/python tests/bench/bench_directory.py [--rows N] [--lookups L] [--sqlite]``.
It writes N generated rows (default 1M) in the NPPES layout (only the directory's columns plus a few
others), builds the index in a child process (its peak RSS is the build's), then opens the index in a
fresh child process and reports its RSS split into anonymous (private) and file-backed (shared page
cache) memory, before and after lookups, and lookups/s (median of 3 passes) for hits and misses.
A second, small file with the real file's ~330 columns measures the parse rate of the wide layout, from
which the 10 GB real file's build time is extrapolated. ``--sqlite`` also builds and queries the same rows in SQLite, for comparison.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

from deploy.demo.nppes_sample import generated_rows, write_nppes
from worker.directory import Directory, Entry

__all__: list[str] = []

_REAL_ROWS = 9_000_000
_REAL_BYTES = 10e9
_WIDE_PAD = 330 - 79  # the generator writes 79 named columns; the real file has ~330

_CHILD_OPEN = r"""
import json, random, sys, time
from datetime import date

def status():
    fields = {}
    for line in open("/proc/self/status"):
        key, _, value = line.partition(":")
        if key in ("VmRSS", "RssAnon", "RssFile", "VmHWM"):
            fields[key] = int(value.split()[0]) / 1024
    return fields

from worker.directory import Directory
from worker.policy.facts import ProviderFacts
lookups = json.load(open(sys.argv[2]))
npis = [str(n) for n in lookups["hits"]]
misses = [str(n) for n in lookups["misses"]]
del lookups
before = status()  # the interpreter, the worker's modules and the bench's own NPI lists
directory = Directory.open(sys.argv[1])
opened = status()
dos = date(2025, 3, 10)
import statistics

def timed(keys, rounds=3):  # median seconds of `rounds` passes of facts() over `keys`
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        for npi in keys:
            directory.facts(npi, dos)
        times.append(time.perf_counter() - start)
    return statistics.median(times)

hits_s = timed(npis)  # 200k random NPIs: far more than the 65,536-entry cache, so mostly cold decodes
misses_s = timed(misses)
working = npis[:5000]
busy = working * max(1, len(npis) // len(working))
busy_s = timed(busy)
looked = status()
with open(sys.argv[1], "rb") as handle:
    while handle.read(1 << 20):
        pass
for i in range(0, len(directory), 97):
    directory._entry_at(i)
touched = status()
print(json.dumps({"before": before, "opened": opened, "after_lookups": looked, "all_pages": touched,
                  "hits": len(npis), "hits_s": hits_s, "misses": len(misses), "misses_s": misses_s,
                  "busy": len(busy), "busy_s": busy_s}))
"""

_CHILD_BUILD = r"""
import sys, time, json
from datetime import date
from pathlib import Path
from worker.directory import build_index, read_nppes
from worker.directory.nppes import open_text

def peak():  # VmHWM: this process's own high-water mark (ru_maxrss survives exec on Linux)
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0

start = time.perf_counter()
summary = build_index(read_nppes(open_text(sys.argv[1], [0])), Path(sys.argv[2]), release="bench",
                      release_date=date(2024, 11, 10), source="bench.csv")
elapsed = time.perf_counter() - start
print(json.dumps({"seconds": elapsed, "rows": summary.rows, "size": summary.size_bytes,
                  "peak_rss_mb": peak()}))
"""


def _child(code: str, *args: str) -> dict[str, object]:
    out = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, check=True)
    result: dict[str, object] = json.loads(out.stdout)
    return result


def _sqlite(
    csv_path: Path, db_path: Path, index: Path, hits: list[int], misses: list[int]
) -> dict[str, float]:
    """Build the same rows into SQLite (one row per NPI, taxonomies as text); time it against the index."""
    from worker.directory import read_nppes  # noqa: PLC0415
    from worker.directory.nppes import open_text  # noqa: PLC0415

    start = time.perf_counter()
    db = sqlite3.connect(db_path)
    db.execute(
        "CREATE TABLE npi (npi INTEGER PRIMARY KEY, entity INTEGER, taxonomies TEXT, primary_slot INTEGER,"
        " deactivation INTEGER, reactivation INTEGER) WITHOUT ROWID"
    )
    db.executemany(
        "INSERT INTO npi VALUES (?, ?, ?, ?, ?, ?)",
        (
            (
                r.npi,
                r.entity_type,
                ",".join(r.taxonomies),
                r.primary,
                r.deactivation.toordinal() if r.deactivation else 0,
                r.reactivation.toordinal() if r.reactivation else 0,
            )
            for r in read_nppes(open_text(str(csv_path), [0]))
        ),
    )
    db.commit()
    db.close()
    build_s = time.perf_counter() - start
    ro = sqlite3.connect(f"file:{db_path}?mode=ro&immutable=1", uri=True)
    query = "SELECT entity, taxonomies, primary_slot, deactivation, reactivation FROM npi WHERE npi = ?"

    def sqlite_entry(npi: int) -> Entry | None:
        row = ro.execute(query, (npi,)).fetchone()
        if row is None:
            return None
        return Entry(
            row[0],
            tuple(row[1].split(",")) if row[1] else (),
            row[2],
            date.fromordinal(row[3]) if row[3] else None,
            date.fromordinal(row[4]) if row[4] else None,
        )

    # The same decode work on both sides (an Entry per NPI), in alternating rounds so that the machine's
    # load hits both alike; the index's entry() bypasses the facts() cache.
    with Directory.open(index) as directory:
        rounds: dict[str, list[float]] = {
            "sqlite_hits": [],
            "index_hits": [],
            "sqlite_misses": [],
            "index_misses": [],
        }
        for _ in range(3):
            for name, lookup in (("sqlite", sqlite_entry), ("index", directory.entry)):
                for kind, keys in (("hits", hits), ("misses", misses)):
                    start = time.perf_counter()
                    for npi in keys:
                        lookup(npi)
                    rounds[f"{name}_{kind}"].append(time.perf_counter() - start)
    ro.close()
    result = {"build_s": build_s, "size_mb": db_path.stat().st_size / 1e6}
    for key, times in rounds.items():
        count = len(hits) if key.endswith("hits") else len(misses)
        result[f"{key}_per_s"] = count / statistics.median(times)
    return result


def main() -> int:
    """Print the figures for ``--rows`` generated rows."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--lookups", type=int, default=200_000)
    parser.add_argument("--wide-rows", type=int, default=20_000, help="rows of the ~330-column parse test")
    parser.add_argument("--sqlite", action="store_true", help="also measure SQLite on the same rows")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-directory-") as scratch:
        work = Path(scratch)
        csv_path = work / "npidata_pfile_bench.csv"
        index = work / "bench.idx"
        start = time.perf_counter()
        rows = list(generated_rows(args.rows))
        write_nppes(csv_path, rows)
        generate_s = time.perf_counter() - start
        npis = [int(r.npi) for r in rows]
        del rows
        csv_mb = csv_path.stat().st_size / 1e6
        print(f"generated {args.rows:,} rows in the NPPES layout: {csv_mb:,.0f} MB CSV ({generate_s:.1f} s)")

        build = _child(_CHILD_BUILD, str(csv_path), str(index))
        build_s = float(build["seconds"])  # type: ignore[arg-type]
        size_mb = index.stat().st_size / 1e6
        print(
            f"build: {build_s:.1f} s ({args.rows / build_s:,.0f} rows/s, {csv_mb / build_s:,.0f} MB/s of CSV),"
            f" peak RSS {build['peak_rss_mb']:.0f} MB"
        )
        print(f"index size on disk: {size_mb:.1f} MB ({index.stat().st_size / args.rows:.1f} bytes per NPI)")

        rng = random.Random(5)
        hits = rng.choices(npis, k=args.lookups)
        known = set(npis)
        misses = [
            n
            for n in (rng.randrange(1_000_000_000, 1_999_999_999) for _ in range(args.lookups // 4))
            if n not in known
        ]
        lookups = work / "lookups.json"
        lookups.write_text(json.dumps({"hits": hits, "misses": misses}))
        opened = _child(_CHILD_OPEN, str(index), str(lookups))
        print('RSS of a fresh process ("before" holds the interpreter, modules and the bench\'s NPI lists):')
        for phase in ("before", "opened", "after_lookups", "all_pages"):
            f = opened[phase]
            print(
                f"RSS {phase:>13}: {f['VmRSS']:7.1f} MB (anonymous {f['RssAnon']:6.1f} MB,"  # type: ignore[index]
                f" file-backed shared {f['RssFile']:6.1f} MB)"  # type: ignore[index]
            )
        hits_rate = opened["hits"] / opened["hits_s"]  # type: ignore[operator]
        misses_rate = opened["misses"] / opened["misses_s"]  # type: ignore[operator]
        busy_rate = opened["busy"] / opened["busy_s"]  # type: ignore[operator]
        print(
            f"lookups (ProviderFacts per call): {hits_rate:,.0f}/s found at random (cold), "
            f"{busy_rate:,.0f}/s over 5,000 busy prescribers (cached), {misses_rate:,.0f}/s not found"
        )

        wide = work / "wide.csv"
        write_nppes(wide, generated_rows(args.wide_rows, seed=2), pad_columns=_WIDE_PAD)
        wide_mb = wide.stat().st_size / 1e6
        wide_build = _child(_CHILD_BUILD, str(wide), str(work / "wide.idx"))
        wide_rate = wide_mb / float(wide_build["seconds"])  # type: ignore[arg-type]
        print(
            f"wide layout (~330 columns, {wide.stat().st_size / args.wide_rows:,.0f} bytes/row): "
            f"{wide_rate:,.1f} MB/s, {args.wide_rows / float(wide_build['seconds']):,.0f} rows/s"  # type: ignore[arg-type]
        )
        scale = _REAL_ROWS / args.rows
        print(
            f"extrapolated to {_REAL_ROWS / 1e6:.0f}M rows: index {size_mb * scale:,.0f} MB; "
            f"build of a {_REAL_BYTES / 1e9:.0f} GB file at the wide rate ~{_REAL_BYTES / 1e6 / wide_rate / 60:,.0f} min; "
            f"lookups unchanged in order (log2 {_REAL_ROWS:,} = 23 probes vs 20)"
        )
        if args.sqlite:
            lite = _sqlite(csv_path, work / "bench.sqlite", index, hits, misses)
            print(
                f"sqlite (same rows, WITHOUT ROWID, immutable read-only): build {lite['build_s']:.1f} s, "
                f"{lite['size_mb']:.1f} MB on disk"
            )
            print(
                f"entry lookups in one process, alternating rounds (median of 3): index "
                f"{lite['index_hits_per_s']:,.0f}/s found, {lite['index_misses_per_s']:,.0f}/s not found; sqlite "
                f"{lite['sqlite_hits_per_s']:,.0f}/s found, {lite['sqlite_misses_per_s']:,.0f}/s not found"
            )
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    raise SystemExit(main())
