"""structlog set-up: only allowlisted keys with primitive values reach the output, so PHI cannot leak."""

from __future__ import annotations

import ast
import io
import json
import logging
import re
from datetime import date
from pathlib import Path

import pytest
import structlog

from tests.unit.sources import python_sources
from worker.errors import DeadLetterClass, DecodeError, RegistryUnavailable
from worker.ops.logs import ALLOWED_KEYS, configure_logging, get_logger, keep_allowed_keys, reset_logging

WORKER = Path(__file__).resolve().parents[2] / "worker"

# Values no log line may ever contain.
SENTINELS = ("SENTINEL-MEMBER-7731", "Zebulon-Sentinel", "Quux-Sentinel", "1901-02-03")


class _TTY(io.StringIO):
    """A string stream that claims to be a terminal."""

    def isatty(self) -> bool:
        return True


@pytest.fixture
def out():
    """A JSON-configured structlog writing to a StringIO at debug level; defaults restored afterwards."""
    stream = io.StringIO()
    configure_logging("json", "debug", stream=stream)
    yield stream
    reset_logging()


def _fail_foreign() -> None:
    """Raise a foreign error whose message is PHI."""
    raise ValueError(SENTINELS[0])


def _fail_eof() -> None:
    """Raise the kind of error a truncated Avro record gives, with PHI in its message."""
    raise EOFError(SENTINELS[0])


def _fail_own() -> None:
    """Raise our own error, chained from a foreign one whose message is PHI."""
    try:
        _fail_eof()
    except EOFError as exc:
        raise DecodeError(DeadLetterClass.TRUNCATED, "record ends early") from exc


def _lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


class TestAllowlist:
    """Keys outside ALLOWED_KEYS never reach the output."""

    def test_output_is_one_json_object_per_line(self, out):
        """Each event renders as one JSON line with event, level and timestamp."""
        log = structlog.get_logger()
        log.info("batch_committed", batch_size=3, counts={"APPROVED": 2, "DENIED": 1})
        log.warning("slow_batch", duration_ms=1200.5)
        first, second = _lines(out)
        assert first["event"] == "batch_committed"
        assert first["level"] == "info"
        assert first["counts"] == {"APPROVED": 2, "DENIED": 1}
        assert isinstance(first["timestamp"], str)
        assert second["duration_ms"] == 1200.5

    def test_unknown_keys_are_dropped_and_counted(self, out):
        """Keys not allowlisted are removed and dropped_keys says how many."""
        structlog.get_logger().info("decided", claim_id="C-1", member_id="M", whatever=1)
        (line,) = _lines(out)
        assert line["claim_id"] == "C-1"
        assert "member_id" not in line
        assert "whatever" not in line
        assert line["dropped_keys"] == 2

    def test_nothing_dropped_means_no_dropped_keys(self, out):
        """A clean event carries no dropped_keys key."""
        structlog.get_logger().info("decided", claim_id="C-1")
        assert "dropped_keys" not in _lines(out)[0]

    def test_phi_sentinels_never_render(self, out):
        """PHI passed as keywords, bound values or context variables never appears in the output."""
        member_id, first_name, last_name, dob = SENTINELS
        log = structlog.get_logger().bind(member_id=member_id, patient={"last_name": last_name})
        structlog.contextvars.bind_contextvars(first_name=first_name)
        log.info("decided", claim_id="C-1", date_of_birth=date(1901, 2, 3), record={"member_id": member_id})
        log.error("invalid_claim", error_class=DeadLetterClass.INVALID_FIELD, dob=dob)
        text = out.getvalue()
        for sentinel in SENTINELS:
            assert sentinel not in text
        assert [line["dropped_keys"] for line in _lines(out)] == [5, 4]

    def test_non_primitive_values_under_allowed_keys_are_dropped(self, out):
        """An allowlisted key whose value is not built from primitives is dropped, not stringified."""

        class Leaky:
            def __str__(self) -> str:
                return SENTINELS[0]

            __repr__ = __str__

        structlog.get_logger().info("decided", claim_id=Leaky(), offsets=[1, Leaky()], partition=0)
        (line,) = _lines(out)
        assert SENTINELS[0] not in out.getvalue()
        assert "claim_id" not in line
        assert "offsets" not in line
        assert line["partition"] == 0
        assert line["dropped_keys"] == 2

    def test_nested_primitives_are_kept(self, out):
        """Lists, tuples and dicts of primitives pass; tuples render as lists; str enums as values."""
        structlog.get_logger().info(
            "batch",
            offsets={"0": (10, 20), "1": [5, 6]},
            reasons=["DX_NOT_COVERED"],
            error_class=DeadLetterClass.TRUNCATED,
        )
        (line,) = _lines(out)
        assert line["offsets"] == {"0": [10, 20], "1": [5, 6]}
        assert line["reasons"] == ["DX_NOT_COVERED"]
        assert line["error_class"] == "TRUNCATED"

    def test_allowlist_has_no_phi_field_names(self):
        """None of the PHI field names of Patient is allowlisted."""
        assert ALLOWED_KEYS.isdisjoint({"member_id", "first_name", "last_name", "date_of_birth", "patient"})

    def test_every_key_the_worker_logs_is_allowlisted(self):
        """Each keyword the worker passes to a log call is allowlisted, so no intended field is silently lost."""
        methods = {"debug", "info", "warning", "error", "exception", "critical", "bind"}
        used: dict[str, str] = {}
        for path in python_sources(WORKER):
            for node in ast.walk(ast.parse(path.read_text())):
                if (
                    isinstance(node, ast.Call)
                    and isinstance(node.func, ast.Attribute)
                    and node.func.attr in methods
                    and "log" in ast.unparse(node.func.value)
                ):
                    for kw in node.keywords:
                        if kw.arg is not None:
                            used.setdefault(kw.arg, f"{path.name}:{node.lineno}")
        missing = {key: where for key, where in used.items() if key not in ALLOWED_KEYS}
        assert not missing, (
            f"add to ALLOWED_KEYS in worker/ops/logs.py (if the value can never be PHI): {missing}"
        )

    def test_processor_is_a_plain_function(self):
        """keep_allowed_keys works on a bare event dict, without structlog configured."""
        assert keep_allowed_keys(None, "info", {"event": "x", "n": 1, "ssn": "1"}) == {
            "event": "x",
            "n": 1,
            "dropped_keys": 1,
        }


class TestExceptions:
    """Exceptions render as a type name, plus a message only for our own PHI-free errors."""

    def test_foreign_exception_renders_type_only(self, out):
        """A foreign exception's message and traceback are left out; its type is kept."""
        log = structlog.get_logger()
        try:
            _fail_foreign()
        except ValueError:
            log.exception("decode_failed", claim_id="C-1")
        (line,) = _lines(out)
        assert SENTINELS[0] not in out.getvalue()
        assert "Traceback" not in out.getvalue()
        assert line["error_type"] == "ValueError"
        assert "error" not in line
        assert line["level"] == "error"

    def test_own_exception_renders_message_and_cause_type(self, out):
        """Our own error keeps its message; its foreign cause is named by type only."""
        log = structlog.get_logger()
        try:
            _fail_own()
        except DecodeError:
            log.exception("decode_failed", offset=4)
        (line,) = _lines(out)
        assert SENTINELS[0] not in out.getvalue()
        assert line["error_type"] == "DecodeError"
        assert line["error"] == "TRUNCATED: record ends early"
        assert line["cause_type"] == "EOFError"

    def test_exception_given_as_exc_info_value(self, out):
        """exc_info=<exception> is rendered the same way as log.exception."""
        structlog.get_logger().error("commit_failed", exc_info=RegistryUnavailable("commit timed out"))
        (line,) = _lines(out)
        assert line["error_type"] == "RegistryUnavailable"
        assert line["error"] == "commit timed out"

    def test_exception_as_a_keyword_value(self, out):
        """An exception passed under an allowlisted key renders as its type name only."""
        structlog.get_logger().warning("retrying", error=KeyError(SENTINELS[0]), attempt=2)
        (line,) = _lines(out)
        assert SENTINELS[0] not in out.getvalue()
        assert line["error"] == "KeyError"


class TestConfigure:
    """Format, level and side effects of configure_logging."""

    def test_level_filters(self):
        """At level warning, info events are not written."""
        stream = io.StringIO()
        configure_logging("json", "WARNING", stream=stream)
        try:
            log = structlog.get_logger()
            log.info("quiet")
            log.warning("loud")
        finally:
            reset_logging()
        assert [line["event"] for line in _lines(stream)] == ["loud"]

    def test_auto_is_json_when_not_a_tty(self):
        """auto writes JSON to a stream that is not a terminal."""
        stream = io.StringIO()
        configure_logging("auto", "info", stream=stream)
        try:
            structlog.get_logger().info("hello", n=1)
        finally:
            reset_logging()
        assert _lines(stream)[0]["n"] == 1

    def test_auto_is_console_on_a_tty(self):
        """auto writes console lines (not JSON) to a terminal, still filtered by the allowlist."""
        stream = _TTY()
        configure_logging("auto", "info", stream=stream)
        try:
            structlog.get_logger().info("hello", n=1, member_id=SENTINELS[0])
        finally:
            reset_logging()
        text = re.sub(r"\x1b\[[0-9;]*m", "", stream.getvalue())
        assert "hello" in text
        assert "n=1" in text
        assert SENTINELS[0] not in text
        with pytest.raises(json.JSONDecodeError):
            json.loads(text)

    def test_unknown_level_is_rejected(self):
        """An unknown level name raises ValueError."""
        with pytest.raises(ValueError, match="level"):
            configure_logging("json", "loud")

    def test_unknown_format_is_rejected(self):
        """An unknown format raises ValueError."""
        with pytest.raises(ValueError, match="format"):
            configure_logging("xml", "info")

    def test_stdlib_logging_is_left_alone(self):
        """configure_logging adds no handler to the root logger and does not change its level."""
        root = logging.getLogger()
        before = (list(root.handlers), root.level)
        configure_logging("json", "debug", stream=io.StringIO())
        try:
            assert (list(root.handlers), root.level) == before
        finally:
            reset_logging()

    def test_get_logger_names_the_logger(self, out):
        """get_logger(name) adds logger=name to every event."""
        get_logger("worker.runtime.pipeline").info("hello")
        assert _lines(out)[0]["logger"] == "worker.runtime.pipeline"

    def test_loggers_are_cached(self):
        """cache_logger_on_first_use is on, per the structlog performance guide."""
        configure_logging("json", "info", stream=io.StringIO())
        try:
            assert structlog.get_config()["cache_logger_on_first_use"] is True
        finally:
            reset_logging()
