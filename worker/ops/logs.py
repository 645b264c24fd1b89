"""structlog set-up: JSON or console lines that carry only allowlisted keys with primitive values."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, TextIO, cast

import structlog

from worker.errors import ClaimsWorkerError

if TYPE_CHECKING:
    from structlog.typing import EventDict, FilteringBoundLogger, Processor, WrappedLogger

    from worker.config.settings import Settings

__all__ = [
    "ALLOWED_KEYS",
    "configure_logging",
    "get_logger",
    "keep_allowed_keys",
    "log_startup_warnings",
    "render_exception",
    "reset_logging",
]

# The allowlist is the PHI guard: a key not named here never reaches the output, so a new field is
# hidden until someone decides it is safe. Values must be identifiers, codes, counts or timings.
# `member_id` is left out on purpose even though Kafka has one: it is also the PHI field's name.
ALLOWED_KEYS: frozenset[str] = frozenset(
    {
        # structlog's own
        "event",
        "level",
        "timestamp",
        "logger",
        # record coordinates: where a record is, never what it holds (values may be PHI)
        "claim_id",
        "event_id",
        "topic",
        "partition",
        "offset",
        "offsets",
        "partitions",
        # decisions and failures, as closed-set codes
        "outcome",
        "reasons",
        "reason_code",
        "criterion_id",
        "transaction_code",
        "pa_number",  # an 11-digit PA number the worker issued (498-PY), never a quoted 462-EV value
        "resolved_pa_number",  # the rehash a colliding approval got instead (issue 23)
        "error_class",
        "fields",  # field paths (pydantic `loc`) of an invalid claim, never the values
        "error",
        "error_type",
        "cause_type",
        # batch line
        "counts",
        "dead_letters",  # counts by dead-letter class
        "duration_ms",
        "batch_size",
        "n",
        "lag",
        # Kafka and retry plumbing
        "transactional_id",
        "group_id",
        "bootstrap_servers",
        "input_topic",
        "output_topic",
        "dead_letter_topic",
        "attempt",
        "backoff_s",
        "waited_s",
        "limit_s",
        "store",  # a partition-state store's name (closed set: dedupe)
        "detail",  # why a read-back was cut short: "stopped" or "timed out"; why a setting weakens security
        "setting",  # the name of a setting (an environment variable), never its value
        "message",  # the operator's line for a fatal failure: names topics, group, ids; never record data
        # process lifecycle
        "worker_version",
        "policy_id",
        "policy_version",
        "schema_version",
        "directory_version",  # the prescriber directory's release id (worker/runtime/reference.py)
        "host",
        "port",
        "signal",
        "exit_code",
        "idle_s",
        # added by keep_allowed_keys itself
        "dropped_keys",
    }
)

_LEVELS = {"debug": 10, "info": 20, "warning": 30, "warn": 30, "error": 40, "critical": 50}

_MISSING = object()


def _safe_value(value: object) -> object:
    """Return ``value`` when it is built only from primitives (tuples become lists), else ``_MISSING``."""
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, BaseException):
        return _describe(value)
    if isinstance(value, list | tuple):
        items = [_safe_value(v) for v in value]
        return _MISSING if any(v is _MISSING for v in items) else items
    if isinstance(value, dict):
        out: dict[str, object] = {}
        for k, v in value.items():
            safe = _safe_value(v)
            if not isinstance(k, str | int) or safe is _MISSING:
                return _MISSING
            out[str(k)] = safe
        return out
    return _MISSING


def _describe(exc: BaseException) -> str:
    """Name an exception: type and message for our own errors (written PHI-free), type only otherwise."""
    if isinstance(exc, ClaimsWorkerError):
        return f"{type(exc).__name__}: {exc}"
    return type(exc).__name__


def keep_allowed_keys(_logger: WrappedLogger, _method_name: str, event_dict: EventDict) -> EventDict:
    """Keep only ``ALLOWED_KEYS`` whose values are primitives; count what was dropped in ``dropped_keys``."""
    kept: EventDict = {}
    dropped = 0
    for key, value in event_dict.items():
        safe = _safe_value(value) if key in ALLOWED_KEYS else _MISSING
        if safe is _MISSING:
            dropped += 1
        else:
            kept[key] = safe
    if dropped:
        kept["dropped_keys"] = dropped
    return kept


def render_exception(_logger: WrappedLogger, _method_name: str, event_dict: EventDict) -> EventDict:
    """Replace ``exc_info``/``exception`` with ``error_type``, ``cause_type`` and, for our errors, ``error``.

    Tracebacks and foreign exception messages are left out: both can quote the data being handled.
    """
    exc_info = event_dict.pop("exc_info", None)
    event_dict.pop("exception", None)
    event_dict.pop("stack_info", None)
    exc: BaseException | None = None
    if isinstance(exc_info, BaseException):
        exc = exc_info
    elif isinstance(exc_info, tuple) and len(exc_info) == 3:  # noqa: PLR2004 - sys.exc_info() shape
        exc = exc_info[1]
    elif exc_info:
        exc = sys.exc_info()[1]
    if exc is None:
        return event_dict
    event_dict["error_type"] = type(exc).__name__
    if isinstance(exc, ClaimsWorkerError):
        event_dict["error"] = str(exc)
    if exc.__cause__ is not None:
        event_dict["cause_type"] = type(exc.__cause__).__name__
    return event_dict


def configure_logging(
    fmt: str = "auto",
    level: str = "info",
    *,
    stream: TextIO | None = None,
) -> None:
    """Configure structlog: ``fmt`` is ``json``, ``console`` or ``auto`` (console on a TTY, else JSON).

    ``stream`` defaults to stdout. Only structlog is configured; stdlib ``logging`` is left alone.
    Raises ``ValueError`` for an unknown ``fmt`` or ``level``.
    """
    try:
        level_no = _LEVELS[level.lower()]
    except KeyError:
        msg = f"unknown log level {level!r}; use one of {sorted(_LEVELS)}"
        raise ValueError(msg) from None
    out = sys.stdout if stream is None else stream
    if fmt == "auto":
        fmt = "console" if out.isatty() else "json"
    renderer: Processor
    if fmt == "json":
        renderer = structlog.processors.JSONRenderer()
    elif fmt == "console":
        renderer = structlog.dev.ConsoleRenderer(colors=out.isatty())
    else:
        msg = f"unknown log format {fmt!r}; use json, console or auto"
        raise ValueError(msg)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            render_exception,
            keep_allowed_keys,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level_no),
        logger_factory=structlog.WriteLoggerFactory(file=out),
        cache_logger_on_first_use=True,
    )


def get_logger(name: str) -> FilteringBoundLogger:
    """Return a logger whose events carry ``logger=name``; call it after ``configure_logging``.

    The logger is built from the configuration in force at the call, so fetch it once at start-up
    (or per object) and reuse it; nothing on the per-record path should call this.
    """
    return cast("FilteringBoundLogger", structlog.get_logger().bind(logger=name))


def reset_logging() -> None:
    """Put structlog back to its defaults (for tests); loggers cached before this keep their old set-up."""
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()


def log_startup_warnings(settings: Settings, log: FilteringBoundLogger) -> None:
    """Log each setting that weakens security (``worker.config.warnings``) once, as ``setting_warning``."""
    import os  # noqa: PLC0415
    from datetime import UTC, datetime  # noqa: PLC0415

    from worker.config.warnings import startup_warnings  # noqa: PLC0415

    for setting, why in startup_warnings(settings, os.environ, datetime.now(UTC)):
        log.warning("setting_warning", setting=setting, detail=why)
