"""The ``feed`` command: validate a JSON Lines file of claims (or PA requests) and send it to the worker.

Every line is checked with the worker's own model and codec (encoded, then decoded back as the worker
will read it) before anything is sent: a bad line is named by its number and field path, never its
value (claims carry PHI), and nothing is sent unless every line is good or ``--skip-bad`` is given.
Claims are keyed by claim id and framed as ``CLAIMS_WIRE_FORMAT`` says; PA requests are keyed by
request id and always single-object framed (the only framing the request worker reads).
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from worker.cli.exits import exit_epilog
from worker.contracts.bad_claims import invalid_claim_from
from worker.contracts.codec import Codec
from worker.contracts.model import Claim
from worker.contracts.pa_request import decode_pa_request, encode_pa_request, request_claim
from worker.contracts.wire import WireFormat
from worker.errors import BadRecord, ConfigError, DeadLetterClass, ExitCode
from worker.ops.escaping import echo, printable

if TYPE_CHECKING:
    import argparse
    from collections.abc import Iterable

    from worker.config.settings import Settings

__all__ = ["FeedFile", "FeedLine", "read_claims", "read_requests", "register"]

_INVALID = DeadLetterClass.INVALID_FIELD
# A bad-line report lists this many lines, then a count of the rest (a wrong export can be all bad).
_MAX_REPORTED = 20
# What the producer may wait for metadata or a full buffer before a send fails (a lost broker: exit 4).
_MAX_BLOCK_MS = 15_000
_REQUEST_FIELDS = frozenset(
    {
        "request_id",
        "requested_at",
        "patient",
        "prescriber",
        "consultant",
        "consultation_status",
        "product",
        "diagnoses",
        "disease_status",
        "requested_start",
    }
)
_REQUEST_REQUIRED = frozenset(
    {"request_id", "requested_at", "patient", "prescriber", "product", "requested_start"}
)


@dataclass(frozen=True, slots=True)
class FeedLine:
    """One good line: its number, the record key and the encoded value the worker will read."""

    number: int
    key: bytes
    value: bytes


@dataclass(slots=True)
class FeedFile:
    """What a feed file holds: the good lines, and each bad line's number with why (field paths only)."""

    good: list[FeedLine] = field(default_factory=list)
    bad: list[tuple[int, str]] = field(default_factory=list)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``feed`` sub-command to the ``claims-worker`` parser."""
    feed = sub.add_parser(
        "feed",
        help="validate a JSON Lines file of claims (claim schema v2 shape) and send it to the claims topic",
        description="Each line is one JSON object in the shape of the newest claim schema (dates as ISO"
        " strings), or with --requests of the pa-request schema. Every line is validated first; nothing"
        " is sent unless all are good (or --skip-bad).",
        epilog=exit_epilog(
            (ExitCode.OK, "sent (or checked, with --check)"),
            (ExitCode.BAD_SETTINGS, "a bad file, bad lines, a missing topic or bad settings"),
            (ExitCode.UNREACHABLE, "no broker answer within CLAIMS_ADMIN_TIMEOUT_S, or a send failed"),
            (ExitCode.NOT_AUTHORIZED, "not authorized"),
        ),
    )
    feed.add_argument("file", type=Path, help="the JSON Lines file (one claim or request per line)")
    feed.add_argument(
        "--requests",
        action="store_true",
        help="the lines are PA requests: send them to CLAIMS_PA_REQUESTS_TOPIC keyed by request id",
    )
    feed.add_argument("--skip-bad", action="store_true", help="send the good lines even when some are bad")
    feed.add_argument("--check", action="store_true", help="validate only: send nothing")
    feed.set_defaults(handler=feed_command)


# -- validation (pure: no Kafka) ------------------------------------------------------------------------


def _lines(text: str) -> Iterable[tuple[int, str]]:
    """Yield ``(line number, line)`` for every non-blank line (numbers count blank lines too)."""
    for number, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            yield number, line


def read_claims(text: str, codec: Codec) -> FeedFile:
    """Validate each line of ``text`` as a claim and encode it with ``codec``; never raises for a bad line.

    A line is good when the model accepts it and the codec reads the encoded bytes back as the same
    claim (the key, the claim id, is a clean identifier too). A bad line's reason is built from the
    errors' field paths and kinds only (``codec.invalid_claim_from``), never from a value.
    """
    out = FeedFile()
    for number, line in _lines(text):
        try:
            claim = Claim.model_validate_json(line)
            key = claim.claim_id.encode()
            value = codec.encode_claim(claim)
            codec.decode_claim(value, key)
        except ValidationError as exc:
            out.bad.append((number, invalid_claim_from(exc).reason))
        except BadRecord as exc:
            out.bad.append((number, exc.reason))
        except ValueError:
            out.bad.append((number, "claim: does not fit the claim schema"))
        else:
            out.good.append(FeedLine(number, key, value))
    return out


def _date(value: object, path: str, *, timestamp: bool) -> datetime | date:
    """Parse an ISO date (or, for ``timestamp``, date-time) string; raise ``BadRecord`` naming ``path``."""
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value) if timestamp else date.fromisoformat(value)
        except ValueError:
            pass
    raise BadRecord(_INVALID, f"{path}: {'datetime' if timestamp else 'date'}_parsing")


def _request_record(raw: object) -> dict[str, Any]:
    """Return the pa-request record of one parsed JSON line, dates parsed; ``BadRecord`` names a bad field."""
    if not isinstance(raw, dict):
        raise BadRecord(_INVALID, "request: not a JSON object")
    unknown = sorted(raw.keys() - _REQUEST_FIELDS)
    missing = sorted(_REQUEST_REQUIRED - raw.keys())
    if unknown or missing:
        parts = [f"{name}: missing" for name in missing]
        parts += [
            f"{name if name.isidentifier() and name.isascii() else '?'}: extra_forbidden" for name in unknown
        ]
        raise BadRecord(_INVALID, "; ".join(parts))
    record = dict(raw)
    record["requested_at"] = _date(raw["requested_at"], "requested_at", timestamp=True)
    record["requested_start"] = _date(raw["requested_start"], "requested_start", timestamp=False)
    patient = raw["patient"]
    if not isinstance(patient, dict) or "date_of_birth" not in patient:
        raise BadRecord(_INVALID, "patient.date_of_birth: missing")
    record["patient"] = {
        **patient,
        "date_of_birth": _date(patient["date_of_birth"], "patient.date_of_birth", timestamp=False),
    }
    return record


def read_requests(text: str) -> FeedFile:
    """Validate each line of ``text`` as a PA request and encode it (single-object); never raises.

    A line is good when it has the pa-request schema's fields, the request worker's ``request_claim``
    accepts it, and the encoded bytes decode back to a request it accepts. Reasons name fields only.
    """
    out = FeedFile()
    for number, line in _lines(text):
        try:
            record = _request_record(json.loads(line))
            request_claim(record)  # the field rules, named as the request names its fields
            try:
                value = encode_pa_request(record)
            except (ValueError, TypeError, KeyError, AttributeError, OverflowError):
                raise BadRecord(_INVALID, "request: does not fit the pa-request schema") from None
            decoded = decode_pa_request(value)
            request_claim(decoded)
        except json.JSONDecodeError:
            out.bad.append((number, "request: not JSON"))
        except BadRecord as exc:
            out.bad.append((number, exc.reason))
        else:
            out.good.append(FeedLine(number, str(decoded["request_id"]).encode(), value))
    return out


# -- sending ---------------------------------------------------------------------------------------------


def _report_bad(feed: FeedFile, path: Path) -> None:
    """Print each bad line (number and field paths, escaped) to stderr, at most ``_MAX_REPORTED``."""
    for number, reason in feed.bad[:_MAX_REPORTED]:
        echo(f"{printable(path)}:{number}: {printable(reason)}", file=sys.stderr)
    if len(feed.bad) > _MAX_REPORTED:
        echo(f"... and {len(feed.bad) - _MAX_REPORTED} more bad lines", file=sys.stderr)


def send_lines(
    settings: Settings, topic: str, lines: list[FeedLine]
) -> tuple[Counter[int], int, BaseException | None]:
    """Send ``lines`` to ``topic`` (idempotent, acks=all); return (per partition, failed, first error)."""
    from worker.kafka.clients import Role, new_producer  # noqa: PLC0415 - keeps --help fast
    from worker.kafka.failures import ClientError  # noqa: PLC0415

    producer = new_producer(
        settings, Role.SEEDER, acks="all", enable_idempotence=True, max_block_ms=_MAX_BLOCK_MS
    )
    per_partition: Counter[int] = Counter()
    failed = 0
    first: BaseException | None = None
    try:
        futures = [producer.send(topic, key=line.key, value=line.value) for line in lines]
        producer.flush()
        for future in futures:
            try:
                per_partition[future.get(timeout=_MAX_BLOCK_MS / 1000).partition] += 1
            except ClientError as exc:
                failed += 1
                first = first or exc
    finally:
        producer.close()
    return per_partition, failed, first


def feed_command(args: argparse.Namespace, settings: Settings) -> int:
    """Validate ``args.file`` and send its good lines; returns the exit code (see the parser's epilog)."""
    from worker.kafka.failures import classify  # noqa: PLC0415 - keeps --help fast

    path: Path = args.file
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {type(exc).__name__}") from None
    if args.requests:
        if settings.pa_requests_topic is None:
            raise ConfigError("CLAIMS_PA_REQUESTS_TOPIC is not set")
        topic, kind, framing = settings.pa_requests_topic, "PA requests", WireFormat.SINGLE_OBJECT
        feed = read_requests(text)
    else:
        topic, kind, framing = settings.claims_topic, "claims", settings.wire_format
        feed = read_claims(text, Codec(wire_format=framing.value))
    _report_bad(feed, path)
    total = len(feed.good) + len(feed.bad)
    if not total:
        raise ConfigError(f"{path} holds no lines")
    if feed.bad and not args.skip_bad:
        echo(
            f"{len(feed.bad)} of {total} lines are bad: nothing sent (fix them, or give --skip-bad)",
            file=sys.stderr,
        )
        return ExitCode.BAD_SETTINGS
    if args.check:
        echo(f"{len(feed.good)} of {total} lines are good {kind}; nothing sent (--check)")
        return ExitCode.BAD_SETTINGS if feed.bad else ExitCode.OK
    if not feed.good:
        echo("no good lines: nothing sent", file=sys.stderr)
        return ExitCode.BAD_SETTINGS
    from worker.kafka.clients import Role  # noqa: PLC0415 - keeps --help fast
    from worker.kafka.topics import require_topic  # noqa: PLC0415

    require_topic(settings, topic, Role.SEEDER)
    per_partition, failed, error = send_lines(settings, topic, feed.good)
    sent = sum(per_partition.values())
    spread = ", ".join(f"{p}: {n}" for p, n in sorted(per_partition.items())) or "none"
    skipped = f", {len(feed.bad)} bad lines skipped" if feed.bad else ""
    echo(f"sent {sent} {kind} to {topic} ({framing.value} framing){skipped}; per partition {spread}")
    if error is not None:
        echo(f"error: {failed} {kind} not sent: {type(error).__name__}", file=sys.stderr)
        return int(classify(error).exit_code)
    return ExitCode.OK
