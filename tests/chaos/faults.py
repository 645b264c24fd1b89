"""Test-only fault injection: random transaction aborts for the fault harness (``make chaos``).

NEVER set in production. ``CLAIMS_FAULT_ABORT_RATE`` (a share of batches, 0 to 1; unset or 0 = off,
the default) makes the worker abort that share of its batch transactions on purpose, at a random one
of two points: before the consumer offsets join the transaction, or after (just before the commit).
The batch then takes the worker's real abort path: the stores drop the staged changes, the broker
aborts the transaction, the consumer rewinds to the committed offsets, the batch comes again after
the transient backoff. It is how ``tests/chaos/run_chaos.py`` runs abort -> rewind -> redo under load
(Apache Kafka's transactions system test aborts transactions at random too).

The variable is read here only (it is not a ``Settings`` field, so ``--help`` does not offer it); when
it is on, the worker logs ``fault_injection_enabled`` as a warning at start-up and every injected
abort is logged as ``transaction_aborting`` with ``error=InjectedAbort``. A value that is not a number
in [0, 1] is bad settings (exit 2).
"""

from __future__ import annotations

import os
import random
from typing import TYPE_CHECKING

from kafka import errors as kerrors

from worker.errors import ConfigError

if TYPE_CHECKING:
    from collections.abc import Mapping

    from structlog.typing import FilteringBoundLogger

__all__ = ["ABORT_RATE_ENV", "STAGES", "AbortInjector", "InjectedAbort", "abort_injector_from_env"]

ABORT_RATE_ENV = "CLAIMS_FAULT_ABORT_RATE"
# Where the session calls the hook: before send_offsets_to_transaction, and before commit_transaction.
STAGES = ("offsets", "commit")


class InjectedAbort(kerrors.KafkaError):  # type: ignore[misc] # kafka-python is untyped
    """A transaction aborted on purpose by the test-only fault hook (abortable, like a real one)."""


class AbortInjector:
    """Decides, once per batch, whether to abort it and at which stage; raises ``InjectedAbort`` there."""

    def __init__(self, rate: float, rng: random.Random | None = None) -> None:
        self.rate = rate
        self._rng = rng or random.Random()
        self._armed: str | None = None
        self.injected = 0

    def __call__(self, stage: str) -> None:
        """Raise ``InjectedAbort`` at ``stage`` when the batch is armed for it (called at each stage)."""
        if stage == STAGES[0]:  # a new batch's commit begins: draw once for the batch
            self._armed = self._rng.choice(STAGES) if self._rng.random() < self.rate else None
        if self._armed == stage:
            self._armed = None
            self.injected += 1
            msg = f"test-only fault hook ({ABORT_RATE_ENV}) aborted the transaction at {stage}"
            raise InjectedAbort(msg)


def abort_injector_from_env(
    log: FilteringBoundLogger, environ: Mapping[str, str] | None = None
) -> AbortInjector | None:
    """Return an ``AbortInjector`` when ``CLAIMS_FAULT_ABORT_RATE`` is set above 0 (logged loudly), else None.

    Raises ``ConfigError`` (exit 2) when the value is not a number in [0, 1].
    """
    raw = (os.environ if environ is None else environ).get(ABORT_RATE_ENV, "").strip()
    if not raw:
        return None
    try:
        rate = float(raw)
    except ValueError:
        rate = -1.0
    if not 0.0 <= rate <= 1.0:
        msg = f"{ABORT_RATE_ENV}={raw!r} must be a number from 0 to 1 (test-only: unset in production)"
        raise ConfigError(msg)
    if rate == 0.0:
        return None
    log.warning(
        "fault_injection_enabled",
        message=f"TEST ONLY: {ABORT_RATE_ENV}={rate:g} aborts that share of transactions on purpose; "
        "never set it in production",
    )
    return AbortInjector(rate)
