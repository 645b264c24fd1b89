"""``claims-worker run --processes N``: N worker processes on this host under a small supervisor.

Registered by ``worker.cli._feature_commands``. Without ``--processes`` (or with 0) ``run`` runs one worker
in this process as before. With N >= 1 this process becomes the supervisor (worker/runtime/supervisor.py):
child ``i`` runs ``python -m worker run`` with ``CLAIMS_INSTANCE=<CLAIMS_INSTANCE>-<i>`` and, unless
``CLAIMS_METRICS_PORT`` is 0, ``CLAIMS_METRICS_PORT=<port>+i``. Crashed children are restarted with
backoff; children that exit 0, 2, 3, 5 or 6 are not. The supervisor forwards SIGTERM/SIGINT and exits with
the worst child exit code (see ``claims-worker run --help``).
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from worker.config.settings import Settings

__all__ = ["register"]

_MAX_PROCESSES = 256


def _count(text: str) -> int:
    value = int(text)
    if not 0 <= value <= _MAX_PROCESSES:
        msg = f"must be 0..{_MAX_PROCESSES}"
        raise argparse.ArgumentTypeError(msg)
    return value


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``--processes N`` to the existing ``run`` command."""
    run = sub.choices["run"]
    run.add_argument(
        "--processes",
        type=_count,
        default=0,
        metavar="N",
        help="run N worker processes under a supervisor, child i on slot <CLAIMS_INSTANCE>-<i> "
        "(default 0: one worker in this process)",
    )
    run.set_defaults(handler=_handle)


def _handle(args: argparse.Namespace, settings: Settings) -> int:
    """Run ``args.processes`` (at least 1) workers under a supervisor; ``cli`` runs one itself."""
    from worker.ops.logs import configure_logging, get_logger  # noqa: PLC0415
    from worker.runtime import supervisor  # noqa: PLC0415

    settings.require_bootstrap()  # one clear line (exit 2) here rather than N times from the children
    configure_logging(settings.log_format.value, settings.log_level)
    base = supervisor.environment()
    envs = [
        supervisor.child_environment(base, settings.instance, i, settings.metrics_port)
        for i in range(args.processes)
    ]
    return supervisor.Supervisor(
        supervisor.worker_argv(), envs, log=get_logger("claims_worker.supervisor")
    ).run()
