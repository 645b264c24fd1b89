"""ICD-10-CM code-set benchmark: import time and memory of the set, cost of one code check, medians.

Run: .venv/bin/python tests/bench/bench_icd10cm.py [-r ROUNDS] [--compare]
(--compare also times importing the simple_icd_10_cm package itself, which parses its tabular XML.)
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

from worker.contracts.icd10cm import RELEASE, code_exists
from worker.contracts.model import Diagnosis

__all__: list[str] = []

_IMPORT = """
import resource, sys, time, tracemalloc
import worker.errors
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
tracemalloc.start()
start = time.perf_counter()
import {module}
took = time.perf_counter() - start
traced = tracemalloc.get_traced_memory()[0]
tracemalloc.stop()
print(took, traced, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss)
"""
_IMPORT_UNTRACED = """
import time
import worker.errors
start = time.perf_counter()
import {module}
print(time.perf_counter() - start)
"""
# Codes as claims send them: dotted and not, hits and misses (letter O for zero, no such subdivision).
_MIX = ("C50.911", "C50911", "C78.7", "C787", "Z85.3", "Z17.0", "C80.1", "C5O.911", "C50.99", "I10") * 100


def _import_figures(module: str, rounds: int) -> tuple[float, float, float]:
    """Median import seconds (untraced), and the traced and max-RSS megabytes of one traced import."""
    seconds = [
        float(
            subprocess.check_output([sys.executable, "-c", _IMPORT_UNTRACED.format(module=module)], text=True)
        )
        for _ in range(rounds)
    ]
    _, traced, rss_kb = subprocess.check_output(
        [sys.executable, "-c", _IMPORT.format(module=module)], text=True
    ).split()
    return statistics.median(seconds), float(traced) / 1e6, float(rss_kb) / 1e3


def _per_call_ns(call, values: tuple[str, ...], rounds: int) -> float:
    """Median nanoseconds per call of ``call`` over ``values``."""
    timings = []
    for _ in range(rounds):
        start = time.perf_counter_ns()
        for value in values:
            call(value)
        timings.append((time.perf_counter_ns() - start) / len(values))
    return statistics.median(timings)


def _validate(code: str) -> None:
    try:
        Diagnosis.model_validate({"code": code, "qualifier": "02"})
    except ValueError:
        return


def _shape_only(code: str) -> None:
    Diagnosis.model_validate({"code": code, "qualifier": "01"})  # qualifier 01: no ICD-10 checks


def main() -> None:
    """Print the figures."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("-r", "--rounds", type=int, default=5)
    parser.add_argument("--compare", action="store_true")
    args = parser.parse_args()
    seconds, traced, rss = _import_figures("worker.contracts.icd10cm", args.rounds)
    print(f"ICD-10-CM release {RELEASE}")
    print(
        f"import worker.contracts.icd10cm: {seconds * 1e3:.0f} ms median, {traced:.1f} MB traced, +{rss:.0f} MB RSS"
    )
    check = _per_call_ns(code_exists, _MIX, args.rounds * 20)
    full = _per_call_ns(_validate, _MIX, args.rounds * 4)
    base = _per_call_ns(_shape_only, _MIX, args.rounds * 4)
    print(f"code_exists: {check:.0f} ns per code (median, {len(_MIX)} codes, 20% misses)")
    print(
        f"Diagnosis.model_validate with qualifier 02: {full:.0f} ns; with 01 (no ICD-10 checks): {base:.0f} ns"
    )
    hits = tuple(code for code in _MIX if code_exists(code))
    hit = _per_call_ns(_validate, hits, args.rounds * 4)
    print(f"ratio 02/01: {full / base:.2f}; valid codes only: {hit:.0f} ns with 02, ratio {hit / base:.2f}")
    if args.compare:
        seconds, traced, rss = _import_figures("simple_icd_10_cm", 1)
        print(
            f"import simple_icd_10_cm (for comparison): {seconds:.1f} s, {traced:.0f} MB traced, +{rss:.0f} MB RSS"
        )


if __name__ == "__main__":
    main()
