"""Test-only entry point of the fault harness: ``claims-worker run`` with the random-abort hook.

``python -m tests.chaos.faulty_worker`` (from the repository root) takes ``CLAIMS_FAULT_ABORT_RATE`` out of
the environment, so the worker's settings never see it (the production ``claims-worker run`` refuses it
as an unknown setting, exit 2), and runs the worker with ``tests.chaos.faults.AbortInjector`` as its
transaction fault hook. ``make chaos`` starts its workers this way.
"""

from __future__ import annotations

import os
import sys

from tests.chaos.faults import ABORT_RATE_ENV, abort_injector_from_env
from worker.cli import main

__all__: list[str] = []


def faulty_main() -> int:
    """Run ``claims-worker run`` with the abort hook the variable asks for (none when unset or 0)."""
    raw = os.environ.pop(ABORT_RATE_ENV, "")
    return main(["run"], fault_hook=lambda log: abort_injector_from_env(log, {ABORT_RATE_ENV: raw}))


if __name__ == "__main__":
    sys.exit(faulty_main())
