"""What every failure means and what the worker does about it: the one place kafka-python errors are mapped.

Modelled on Kafka Streams' split: fatal (fenced, not authorized, unsupported version, bad settings)
ends the process with its own exit code; transient or abortable (timeouts, lost connections, an
aborted transaction, an unreachable schema registry) is retried with one ``Backoff`` on one outage
clock, and past ``CLAIMS_OUTAGE_LIMIT_S`` exits 4; bad input never gets here (it is dead-lettered);
anything else is an internal error (exit 70, one log line with the type and record coordinates).

Exit codes (also in ``claims-worker --help``):

====  ===========================================================================================
 0    stopped cleanly (SIGTERM/SIGINT, or idle limit reached)
 2    bad settings, a missing topic or an output topic with too few partitions (at start, or deleted
      or recreated smaller while running), or the brokers now belong to another cluster
 3    fenced: another live instance owns this transactional id or static member id (slot)
 4    Kafka or the schema registry unreachable past the limits
 5    not authorized: authentication failed or an ACL is missing (the message names what)
 6    the broker does not support a needed protocol version
70    unexpected internal error: a bug (operator faults have their own lines, ``runtime/sentinel.py``)
130   a replay stopped by SIGINT/SIGTERM before its end (it prints the command that resumes it)
141   stdout closed before the output ended (``| head``)
====  ===========================================================================================
"""

from __future__ import annotations

import random
import threading
import time
from enum import Enum
from typing import TYPE_CHECKING, Any, TypeVar

from kafka import errors as kerrors

from worker.errors import ClaimsWorkerError, ConfigError, ExitCode, RegistryUnavailable
from worker.retry import decorrelated_jitter

if TYPE_CHECKING:
    from collections.abc import Callable

    from worker.config.settings import Settings

__all__ = [
    "PRODUCER_FENCED",
    "AccessRefused",
    "Backoff",
    "BatchAborted",
    "BrokerUnreachable",
    "ClientError",
    "ExitCode",
    "FatalError",
    "IndefiniteOutcome",
    "Kind",
    "OutageTooLong",
    "RecordTooLarge",
    "SlotTaken",
    "SlotUnconfirmed",
    "StalePartitions",
    "Stopped",
    "TopicExists",
    "TransactionalIdRefused",
    "WrappedError",
    "classify",
    "describe",
    "interruptible",
    "is_transient",
    "recorded_error",
    "transactional_id_refused",
]


# The client's failures as the rest of the worker names them: only this package imports kafka-python,
# so these are the door's vocabulary (a second client would map its own errors onto them here).
ClientError = kerrors.KafkaError
"""Any failure the Kafka client reports (classified by ``classify``)."""
RecordTooLarge = kerrors.MessageSizeTooLargeError
"""A record larger than the producer or broker accepts."""
SlotTaken = kerrors.FencedInstanceIdError
"""The group coordinator says another live process holds this static member slot (exit 3)."""
TransactionalIdRefused = kerrors.TransactionalIdAuthorizationFailedError
"""WRITE on the transactional id is missing."""
AccessRefused = kerrors.AuthorizationError
"""The brokers refused a right (a topic, group, cluster or transactional id ACL)."""
TopicExists = kerrors.TopicAlreadyExistsError
"""A topic to create exists already."""
PRODUCER_FENCED = (kerrors.ProducerFencedError, kerrors.InvalidProducerEpochError)
"""Fenced by the transaction coordinator: a newer producer with our transactional id, or the broker's
own abort of a timed-out transaction (it bumps the epoch). Not ``SlotTaken``: that comes from the group
coordinator and already says another process holds the slot."""


class BrokerUnreachable(kerrors.KafkaTimeoutError):  # type: ignore[misc]  # kafka-python is untyped
    """No bootstrap server answered a new client in time (a wrong address, a closed port, a firewall).

    A ``KafkaTimeoutError``, so the live worker's start-up retries it as before; an operator command
    ends with its one line, which names the addresses (exit 4).
    """

    def __init__(self, servers: list[str], timeout_s: float | None) -> None:
        within = "" if timeout_s is None else f" within {timeout_s:g} s (CLAIMS_ADMIN_TIMEOUT_S)"
        self.message = (
            f"no Kafka broker answered at {', '.join(servers)}{within}; is KAFKA_BOOTSTRAP_SERVERS right?"
        )
        super().__init__(self.message)
        self.servers = servers

    def __str__(self) -> str:
        """Return the operator's line (kafka-python's errors put their class name in front)."""
        return self.message


class SlotUnconfirmed(ClaimsWorkerError):  # noqa: N818 - established public name
    """The group coordinator did not answer whether the slot is still ours: retried on the backoff."""


class IndefiniteOutcome(ClaimsWorkerError):  # noqa: N818 - established public name, used by the pipeline
    """A commit, abort or send_offsets did not answer in time: its outcome is unknown."""


T = TypeVar("T")


class Kind(Enum):
    """What a failure is, which decides what happens next."""

    FENCED = ExitCode.FENCED
    NOT_AUTHORIZED = ExitCode.NOT_AUTHORIZED
    UNSUPPORTED_VERSION = ExitCode.UNSUPPORTED_VERSION
    BAD_SETTINGS = ExitCode.BAD_SETTINGS
    TRANSIENT = ExitCode.UNREACHABLE  # retried; exits 4 only past the outage limit
    INTERNAL = ExitCode.INTERNAL

    @property
    def exit_code(self) -> ExitCode:
        """The exit code when this kind of failure ends the process."""
        return ExitCode(self.value)


_FENCED: tuple[type[Exception], ...] = (
    kerrors.ProducerFencedError,
    kerrors.InvalidProducerEpochError,
    kerrors.FencedInstanceIdError,
)
_NOT_AUTHORIZED: tuple[type[Exception], ...] = (
    kerrors.AuthorizationError,  # topic, group, cluster, transactional id, delegation token
    kerrors.SaslAuthenticationFailedError,
    kerrors.UnsupportedSaslMechanismError,
    kerrors.IllegalSaslStateError,
)
_UNSUPPORTED: tuple[type[Exception], ...] = (
    kerrors.UnsupportedVersionError,
    kerrors.UnsupportedForMessageFormatError,
)
_BAD_SETTINGS: tuple[type[Exception], ...] = (ConfigError, kerrors.KafkaConfigurationError)
_FATAL: tuple[tuple[tuple[type[Exception], ...], Kind], ...] = (
    (_FENCED, Kind.FENCED),
    (_NOT_AUTHORIZED, Kind.NOT_AUTHORIZED),
    (_UNSUPPORTED, Kind.UNSUPPORTED_VERSION),
    (_BAD_SETTINGS, Kind.BAD_SETTINGS),
)


class OutageTooLong(ClaimsWorkerError):  # noqa: N818 - reads as the condition it reports
    """Transient failures went on past the limit; ``cause`` is the last one."""

    def __init__(self, cause: BaseException, waited_s: float, attempts: int) -> None:
        super().__init__(f"{type(cause).__name__} for {waited_s:.0f}s over {attempts} attempts")
        self.cause = cause
        self.waited_s = waited_s
        self.attempts = attempts


class BatchAborted(ClaimsWorkerError):  # noqa: N818 - names what happened
    """A batch's transaction was aborted and the consumer rewound (``__cause__`` says why); retried."""


class StalePartitions(ClaimsWorkerError):  # noqa: N818 - names the condition
    """The producer's metadata does not list an output partition yet: replace it (fresh metadata)."""


class Stopped(ClaimsWorkerError):  # noqa: N818 - a signal, not an error
    """The stop event was set while waiting: unwind and exit 0."""


class WrappedError(ClaimsWorkerError):
    """A failure handed over from a helper thread: ``classify`` and ``describe`` judge its ``__cause__``."""


class FatalError(ClaimsWorkerError):
    """A failure that ends the process: its ``kind`` gives the exit code, ``message`` the operator's line."""

    def __init__(self, kind: Kind, message: str, cause: BaseException | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.cause = cause


def classify(exc: BaseException) -> Kind:
    """Return what ``exc`` is; the single mapping from exception types to decisions.

    A ``WrappedError`` (a failure handed over from another thread) is what its cause is.
    """
    if isinstance(exc, FatalError):
        return exc.kind
    if isinstance(exc, WrappedError) and exc.__cause__ is not None:
        return classify(exc.__cause__)
    for types, kind in _FATAL:
        if isinstance(exc, types):
            return kind
    return Kind.TRANSIENT if isinstance(exc, OutageTooLong) or is_transient(exc) else Kind.INTERNAL


def is_transient(exc: BaseException) -> bool:
    """Tell whether retrying may help: retriable or abortable Kafka errors, the registry, timeouts.

    Every other ``KafkaError`` (an aborted transaction, a commit lost to a rebalance, ...) is abortable:
    the batch is aborted and comes again, on the same backoff and outage clock as a lost broker.
    """
    if isinstance(exc, _FENCED + _NOT_AUTHORIZED + _UNSUPPORTED + _BAD_SETTINGS):
        return False
    if isinstance(exc, WrappedError):
        return exc.__cause__ is not None and is_transient(exc.__cause__)
    return isinstance(
        exc,
        (
            kerrors.KafkaError,
            RegistryUnavailable,
            IndefiniteOutcome,
            SlotUnconfirmed,
            BatchAborted,
            StalePartitions,
        ),
    )


def describe(exc: BaseException, settings: Settings) -> str:
    """Return the operator's one line for a fatal failure, naming the topic, group or id involved.

    Never includes record data: only exception types, settings names and what the broker named.
    """
    if isinstance(exc, WrappedError) and exc.__cause__ is not None:
        return describe(exc.__cause__, settings)
    kind = classify(exc)
    name = type(exc).__name__
    if isinstance(exc, (FatalError, ConfigError, BrokerUnreachable)):
        return str(exc)
    if kind is Kind.FENCED:
        return _who_fenced(exc, settings)
    if kind is Kind.NOT_AUTHORIZED:
        return f"not authorized ({name}): {_what_was_refused(exc, settings)}"
    if kind is Kind.UNSUPPORTED_VERSION:
        return (
            f"the broker does not support a protocol version the worker needs ({name}); "
            "transactions need Kafka 2.5 or newer"
        )
    return f"{name}: {exc}" if kind is Kind.BAD_SETTINGS else name


def _who_fenced(exc: BaseException, settings: Settings) -> str:
    """Say which live worker took this instance's slot."""
    name = type(exc).__name__
    if isinstance(exc, kerrors.FencedInstanceIdError):
        return (
            f"fenced ({name}): another live worker uses instance slot {settings.instance!r} "
            f"(static member id {group_instance_id(settings)!r} in group {settings.group_id!r}); "
            "give each worker its own CLAIMS_INSTANCE"
        )
    return (
        f"fenced ({name}): a newer producer owns transactional id {settings.transactional_id!r}; "
        f"another worker runs with CLAIMS_INSTANCE={settings.instance!r}"
    )


def _what_was_refused(exc: BaseException, settings: Settings) -> str:
    """Name the resource behind an authorization or authentication failure."""
    detail = _broker_detail(exc)
    if isinstance(exc, kerrors.TopicAuthorizationFailedError):
        topics = detail or (
            f"one of {settings.claims_topic!r}, {settings.results_topic!r}, {settings.dead_letter_topic!r}"
        )
        return f"topic {topics}: grant this principal the topic ACLs (read the claims, write the outputs)"
    if isinstance(exc, kerrors.GroupAuthorizationFailedError):
        return f"consumer group {settings.group_id!r}: grant READ on the group"
    if isinstance(exc, kerrors.TransactionalIdAuthorizationFailedError):
        return transactional_id_refused(settings)
    if isinstance(exc, kerrors.ClusterAuthorizationFailedError):
        return "the cluster (IDEMPOTENT_WRITE or a cluster action): grant it to this principal"
    return "authentication with the brokers failed: check the SASL or TLS credentials"


def transactional_id_refused(settings: Settings) -> str:
    """Name the transactional-id right as docs/security.md grants it: WRITE, on a PREFIXED pattern."""
    return (
        f"WRITE on the transactional id {settings.transactional_id!r} is missing: grant WRITE on"
        f" transactional-id prefix '{settings.transactional_id_prefix}-' (resource pattern PREFIXED;"
        " WRITE implies DESCRIBE), as docs/security.md lists; `claims-worker check-access` checks it"
    )


def _broker_detail(exc: BaseException) -> str:
    """Return the topic names kafka-python put into the exception, if any."""
    names: list[str] = []
    for arg in getattr(exc, "args", ()):
        items: Any = arg if isinstance(arg, (set, frozenset, list, tuple)) else [arg]
        names.extend(str(item) for item in items if isinstance(item, str))
    return ", ".join(repr(n) for n in sorted(names))


def group_instance_id(settings: Settings) -> str:
    """Return the static group member id of this instance slot (stable across restarts, unique when live)."""
    return f"{settings.group_id}-{settings.instance}"


class Backoff:
    """Exponential backoff with decorrelated jitter that a stop request cuts short, with one outage clock.

    ``failed`` counts a failure and returns the delay to wait (``decorrelated_jitter``: between
    ``base_s`` and ``cap_s``, growing about threefold while failures repeat); past ``limit_s`` since
    the first failure of the current outage (or past ``max_attempts``) it raises ``OutageTooLong``.
    ``succeeded`` ends the outage. ``wait`` sleeps the delay unless ``stop`` is set (then raises
    ``Stopped``), so every wait of the worker answers SIGTERM within ``stop.wait``'s latency.
    """

    __slots__ = (
        "_base",
        "_cap",
        "_clock",
        "_last",
        "_limit_s",
        "_max_attempts",
        "_rng",
        "_stop",
        "attempts",
        "since",
    )

    def __init__(
        self,
        stop: threading.Event,
        *,
        limit_s: float | None = None,
        max_attempts: int | None = None,
        base_s: float = 0.5,
        cap_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        self._stop = stop
        self._limit_s = limit_s
        self._max_attempts = max_attempts
        self._base = base_s
        self._cap = cap_s
        self._clock = clock
        # Not for secrets: only spreads retry times (a seeded one in tests).
        self._rng = rng if rng is not None else random.Random()  # noqa: S311
        self._last = base_s
        self.attempts = 0
        self.since: float | None = None

    def failed(self, exc: BaseException) -> float:
        """Count a transient failure; return the delay before the next try or raise ``OutageTooLong``."""
        now = self._clock()
        self.since = now if self.since is None else self.since
        self.attempts += 1
        waited = now - self.since
        if (self._limit_s is not None and waited > self._limit_s) or (
            self._max_attempts is not None and self.attempts > self._max_attempts
        ):
            raise OutageTooLong(exc, waited, self.attempts) from exc
        self._last = decorrelated_jitter(self._last, self._base, self._cap, self._rng)
        return self._last

    def wait(self, delay_s: float) -> None:
        """Sleep ``delay_s`` unless stopped; raise ``Stopped`` when the stop event is (or becomes) set."""
        if self._stop.wait(delay_s):
            raise Stopped

    def succeeded(self) -> None:
        """End the current outage: the next failure starts a new clock and a short delay again."""
        self.attempts = 0
        self.since = None
        self._last = self._base


def interruptible(call: Callable[[], T], stop: threading.Event, what: str, poll_s: float = 0.1) -> T:
    """Run a blocking ``call`` (a client constructor, a read-back) on a helper thread until done or stopped.

    kafka-python's constructors block for up to ``api_version_auto_timeout_ms`` (30 s against a closed
    port) without a way to cancel them; on stop the helper thread is abandoned (a daemon) and
    ``Stopped`` is raised, so SIGTERM is answered within ``poll_s``.
    """
    box: dict[str, Any] = {}
    done = threading.Event()

    def run() -> None:
        try:
            box["value"] = call()
        except BaseException as exc:  # noqa: BLE001 - handed back to the caller's thread
            box["error"] = exc
        finally:
            done.set()

    threading.Thread(target=run, name=f"interruptible-{what}", daemon=True).start()
    while not done.wait(poll_s):
        if stop.is_set():
            raise Stopped
    if "error" in box:
        raise box["error"]
    return box["value"]  # type: ignore[no-any-return]


def recorded_error(producer: object, exc: Exception) -> Exception:
    """Return the error kafka-python recorded for a transaction that failed in the background.

    A send's failure (e.g. the producer was fenced) lands on kafka-python's sender thread; the next
    transactional call then raises a bare ``KafkaError`` ("... in an error state: ...") that hides it.
    A transaction open over several polls meets this more often, so the recorded error decides
    (fenced: exit 3, not an abort and a replacement that would fence the newer instance).
    """
    if type(exc) is not kerrors.KafkaError:
        return exc
    manager = getattr(producer, "_transaction_manager", None)
    recorded = getattr(manager, "last_error", None)
    if isinstance(recorded, type) and issubclass(recorded, Exception):
        recorded = recorded()
    if not isinstance(recorded, Exception):
        return exc
    recorded.__cause__ = exc
    return recorded
