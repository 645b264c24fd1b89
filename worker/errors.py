"""The project's exceptions: one root, bad-input errors that go to the dead-letter topic, infra errors."""

from __future__ import annotations

from enum import IntEnum, StrEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from datetime import datetime

__all__ = [
    "BadRecord",
    "ClaimsWorkerError",
    "ConfigError",
    "DeadLetterClass",
    "DecodeError",
    "ExitCode",
    "InvalidClaim",
    "MalformedClaim",
    "NotAuthorized",
    "RegistryUnavailable",
]

# Symbols the dead-letter schemas still list (an Avro enum only grows, or old records stop reading)
# but the worker never writes any more: KEY_MISMATCH was declared and never produced.
RETIRED_DEAD_LETTER_CLASSES = ("KEY_MISMATCH",)


class ExitCode(IntEnum):
    """The process exit codes, the same for every command; ``worker.cli.EXIT_CODES`` says what each means."""

    OK = 0
    BAD_SETTINGS = 2
    FENCED = 3
    UNREACHABLE = 4
    NOT_AUTHORIZED = 5
    UNSUPPORTED_VERSION = 6
    INTERNAL = 70
    INTERRUPTED = 130  # a replay stopped by SIGINT/SIGTERM before its end (128 + SIGINT, as a shell says)
    PIPE_CLOSED = 141  # stdout's reader went away (`| head`): 128 + SIGPIPE, what a killed writer reports


class DeadLetterClass(StrEnum):
    """Why a record went to the dead-letter topic: a closed set, safe as a metric label."""

    NOT_AVRO = "NOT_AVRO"
    UNKNOWN_SCHEMA = "UNKNOWN_SCHEMA"
    TRUNCATED = "TRUNCATED"
    CORRUPT = "CORRUPT"
    INVALID_FIELD = "INVALID_FIELD"
    MISSING_FIELD = "MISSING_FIELD"
    DUPLICATE_EVENT = "DUPLICATE_EVENT"
    TOO_LARGE = "TOO_LARGE"


class ClaimsWorkerError(Exception):
    """Root of every error this project raises on purpose."""


class BadRecord(ClaimsWorkerError):  # noqa: N818 - established public name, used by codec, pipeline and tests
    """A record that cannot be judged; it goes to the dead-letter topic with its class and reason.

    The message (``reason``) names fields and rules only, never a field's value: values may be PHI.
    """

    def __init__(self, error_class: DeadLetterClass, reason: str) -> None:
        super().__init__(f"{error_class}: {reason}")
        self.error_class = error_class
        self.reason = reason


class DecodeError(BadRecord):
    """The bytes are not a claim we can read (framing, schema, truncation, corruption)."""


class InvalidClaim(BadRecord):
    """The claim decoded but breaks a field rule (format, range, required-with)."""


class MalformedClaim(InvalidClaim):
    """A decodable claim that names its claim id but breaks a field rule: it gets a REJECTED result.

    The pharmacy is answered with NCPDP M/I reject codes (25 M/I Prescriber ID, 39 M/I Diagnosis Code,
    21 M/I Product/Service ID, ...) naming the failed fields; it is not a dead letter. ``fields`` are
    field paths and ``reject_codes`` NCPDP codes, one per field (same order): neither ever holds a
    value (values may be PHI). ``event_time`` is the claim's, when it could be read.
    """

    def __init__(
        self,
        reason: str,
        *,
        claim_id: str,
        event_id: str | None,
        transaction_code: str | None,
        fields: tuple[str, ...],
        reject_codes: tuple[str, ...],
        event_time: datetime | None = None,
    ) -> None:
        super().__init__(DeadLetterClass.INVALID_FIELD, reason)
        self.claim_id = claim_id
        self.event_id = event_id
        self.transaction_code = transaction_code
        self.fields = fields
        self.reject_codes = reject_codes
        self.event_time = event_time


class ConfigError(ClaimsWorkerError):
    """A setting is missing or wrong; the CLI prints it and exits non-zero."""


class NotAuthorized(ClaimsWorkerError):  # noqa: N818 - reads as the outcome, like RegistryUnavailable
    """Kafka refused us: a failed login, an untrusted broker certificate, or a missing ACL (exit 5).

    The message names the broker, topic, group or transactional id, never a secret.
    """


class RegistryUnavailable(ClaimsWorkerError):  # noqa: N818 - established public name
    """The schema registry could not be asked (network, timeout, 5xx): infrastructure, not bad input."""
