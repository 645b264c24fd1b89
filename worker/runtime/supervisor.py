"""A small process supervisor: N worker children on one host, each on its own instance slot.

``claims-worker run --processes N`` starts N children ``python -m worker run``; child ``i`` gets
``CLAIMS_INSTANCE=<instance>-<i>`` (so its transactional id, and static member id, are its own and stay the
same across restarts and hosts) and, unless the metrics port is 0, ``CLAIMS_METRICS_PORT=<port>+i``.

* Log events (keys from worker.ops.logs.ALLOWED_KEYS; ``n`` is the child index, its slot <instance>-<n>):
  child_started, child_crashed (exit_code, backoff_s), child_exited, supervisor_stopping.
* SIGTERM and SIGINT are forwarded to every live child; the supervisor then waits for them to stop.
* A child that crashes (any exit code other than the final ones below, or death by a signal) is started
  again on the same slot after a backoff that grows per consecutive crash, with decorrelated jitter
  (``worker.retry``: between ``backoff_initial_s`` and ``backoff_max_s``, so children and hosts that
  crashed together, e.g. in one broker outage, do not restart in step), reset once a child has run for
  ``stable_s``.
* Exit codes 0, 2, 3, 5 and 6 are final (clean stop, bad settings, fenced, not authorized, unsupported
  broker): such a child is not restarted. A final non-zero code stops the other children too, so the
  whole unit fails visibly rather than running short-handed.
* The supervisor exits with the worst child code: the largest, with death by signal ``s`` counted as
  ``128 + s``; 0 only when every child stopped cleanly. A child ended by a signal the supervisor forwarded
  (it had not yet set its own handler) counts as a clean stop.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from worker.retry import decorrelated_jitter

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

__all__ = ["FINAL_EXIT_CODES", "Supervisor", "child_environment", "child_slot", "worst_exit_code"]

FINAL_EXIT_CODES = frozenset({0, 2, 3, 5, 6})
_SIGNAL_BASE = 128


class _Log(Protocol):
    def info(self, event: str, **kw: object) -> object: ...
    def warning(self, event: str, **kw: object) -> object: ...


class _NullLog:
    def info(self, event: str, **kw: object) -> None:
        """Drop the event."""

    def warning(self, event: str, **kw: object) -> None:
        """Drop the event."""


def child_slot(base: str, index: int) -> str:
    """Return the instance slot of child ``index`` under a supervisor whose own slot is ``base``."""
    return f"{base}-{index}"


def child_environment(env: Mapping[str, str], base: str, index: int, metrics_port: int) -> dict[str, str]:
    """Return child ``index``'s environment: its own slot and, unless the port is 0 (any), its own port."""
    out = dict(env)
    out["CLAIMS_INSTANCE"] = child_slot(base, index)
    if metrics_port:
        out["CLAIMS_METRICS_PORT"] = str(metrics_port + index)
    return out


def _normalise(code: int) -> int:
    """Map a ``Popen.returncode``: a negative one (killed by signal s) becomes the shell's 128 + s."""
    return _SIGNAL_BASE - code if code < 0 else code


def worst_exit_code(codes: Sequence[int]) -> int:
    """Return the supervisor's exit code for its children's: the largest, signals counted as 128 + s."""
    return max((_normalise(c) for c in codes), default=0)


@dataclass
class _Child:
    index: int
    env: dict[str, str]
    proc: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    crashes: int = 0
    last_delay: float = 0.0
    restart_at: float | None = None
    final: int | None = None
    last_code: int = 0
    starts: int = 0


@dataclass
class Supervisor:
    """Run ``len(envs)`` children of ``argv``, child ``i`` with ``envs[i]``; see the module docstring."""

    argv: Sequence[str]
    envs: Sequence[dict[str, str]]
    backoff_initial_s: float = 1.0
    backoff_max_s: float = 30.0
    stable_s: float = 60.0
    poll_s: float = 0.1
    log: _Log = field(default_factory=_NullLog)
    clock: Callable[[], float] = time.monotonic
    # Not for secrets: only spreads restart times (a seeded one in tests).
    rng: random.Random = field(default_factory=random.Random)
    restarts: list[tuple[int, float]] = field(default_factory=list)
    _children: list[_Child] = field(default_factory=list)
    _stopping: bool = False
    _forwarded: set[int] = field(default_factory=set)
    _wake: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def run(self, install_signals: bool = True) -> int:
        """Start the children and supervise them until all have stopped; return the worst exit code."""
        previous: dict[signal.Signals, object] = {}
        if install_signals:
            for sig in (signal.SIGTERM, signal.SIGINT):
                previous[sig] = signal.signal(sig, lambda signum, _frame: self.request_stop(signum))
        try:
            self._children = [_Child(i, dict(env)) for i, env in enumerate(self.envs)]
            with self._lock:
                for child in self._children:
                    self._start(child)
            while any(c.final is None for c in self._children):
                self._wake.wait(self.poll_s)
                self._wake.clear()
                with self._lock:
                    self._reap()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)  # type: ignore[arg-type]
        return worst_exit_code([c.final for c in self._children if c.final is not None])

    def request_stop(self, signum: int = signal.SIGTERM) -> None:
        """Forward ``signum`` to every live child and restart none from now on."""
        with self._lock:
            first = not self._stopping
            self._stopping = True
            if first:
                self.log.info("supervisor_stopping", signal=signal.Signals(signum).name)
            self._forwarded.add(signum)
            for child in self._children:
                if child.proc is not None and child.proc.poll() is None:
                    child.proc.send_signal(signum)
                elif child.final is None and child.proc is None:
                    child.final = child.last_code  # waiting for a restart: it is not started again
        self._wake.set()

    @property
    def starts(self) -> list[int]:
        """How many times each child was started (tests and the log)."""
        return [c.starts for c in self._children]

    def _start(self, child: _Child) -> None:
        child.proc = subprocess.Popen(list(self.argv), env=child.env)  # noqa: S603 - our own argv
        child.started_at = self.clock()
        child.restart_at = None
        child.starts += 1
        self.log.info("child_started", n=child.index, attempt=child.starts)

    def _reap(self) -> None:
        now = self.clock()
        for child in self._children:
            if child.final is not None:
                continue
            if child.proc is None:
                if child.restart_at is not None and now >= child.restart_at and not self._stopping:
                    self._start(child)
                continue
            code = child.proc.poll()
            if code is None:
                continue
            child.proc = None
            if self._stopping and -code in self._forwarded:
                code = 0  # ended by the signal we forwarded (before it set its handler): a clean stop
            child.last_code = code
            if self._stopping or code in FINAL_EXIT_CODES:
                child.final = code
                self.log.info("child_exited", n=child.index, exit_code=code)
                if code != 0 and not self._stopping:
                    self._stop_all_for(child, code)
                continue
            if now - child.started_at >= self.stable_s:
                child.crashes = 0
            previous = child.last_delay if child.crashes else self.backoff_initial_s
            delay = decorrelated_jitter(previous, self.backoff_initial_s, self.backoff_max_s, self.rng)
            child.last_delay = delay
            child.crashes += 1
            child.restart_at = now + delay
            self.restarts.append((child.index, delay))
            self.log.warning("child_crashed", n=child.index, exit_code=code, backoff_s=delay)

    def _stop_all_for(self, child: _Child, code: int) -> None:
        """Stop the others (SIGTERM) after a child ended with a final error, so the whole unit reports it."""
        self.log.warning("supervisor_stopping_on_final_error", n=child.index, exit_code=code)
        self._stopping = True
        self._forwarded.add(signal.SIGTERM)
        for other in self._children:
            if other.proc is not None and other.proc.poll() is None:
                other.proc.send_signal(signal.SIGTERM)
            elif other.final is None and other.proc is None:
                other.final = other.last_code


def worker_argv() -> list[str]:
    """Return the command of one child: this interpreter running the worker's ``run`` command."""
    return [sys.executable, "-m", "worker", "run"]


def environment() -> dict[str, str]:
    """Return the current process environment as a plain dict (a seam for tests)."""
    return dict(os.environ)
