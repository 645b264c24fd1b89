"""The codec's read plans: how each writer schema of a record family is read into its newest version."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from io import BytesIO
from typing import TYPE_CHECKING, Any

from fastavro import schemaless_reader
from fastavro.read import SchemaResolutionError

from worker.contracts.fastread import compile_reader
from worker.errors import DeadLetterClass, DecodeError

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from worker.contracts.registry import ParsedSchema, SchemaVersion

__all__ = ["CORRUPT_BODY_ERRORS", "ReadPlan", "SchemaFamily", "nullable_branches", "read_body", "read_plan"]

# What fastavro (compiled or pure-Python) raises on a body that does not fit its writer schema:
# bad UTF-8, an enum/union index out of range, a date or timestamp out of range, a giant length.
CORRUPT_BODY_ERRORS = (
    ValueError,
    TypeError,
    KeyError,
    IndexError,
    OverflowError,
    MemoryError,
    RecursionError,
    struct.error,
)


@dataclass(frozen=True, slots=True)
class ReadPlan:
    """How to read one writer schema into the current version.

    ``reader`` is None when no resolution is needed: the writer is the current version, or differs
    from it only by ``added_nulls``, top-level fields with a null default that are then set to None
    (twice as fast as fastavro's general resolution, and the same result).
    """

    writer: ParsedSchema
    reader: ParsedSchema | None
    added_nulls: tuple[str, ...] = ()
    # The generated reader of a well-formed body (``fastread``), when no resolution is needed and it
    # covers the writer schema; bytes it cannot read are read again by fastavro, which names the fault.
    fast: Callable[[bytes, int], tuple[dict[str, Any], int]] | None = None


# Schema keys that do not change how a writer's bytes are read when names and symbols already match.
_READ_NEUTRAL_KEYS = frozenset({"doc", "default", "aliases"})


def _reading_form(node: object) -> object:
    """Return ``node`` without documentation, defaults, aliases and fastavro's bookkeeping keys."""
    if isinstance(node, dict):
        return {
            key: _reading_form(value)
            for key, value in node.items()
            if key not in _READ_NEUTRAL_KEYS and not key.startswith("__")
        }
    if isinstance(node, list):
        return [_reading_form(item) for item in node]
    return node


def read_plan(writer: ParsedSchema, current: ParsedSchema) -> ReadPlan:
    """Return the cheapest plan that reads ``writer`` into ``current``."""
    if writer is current:
        return ReadPlan(writer, None, fast=compile_reader(writer))
    writer_names = {field["name"] for field in writer["fields"]}
    added = [field for field in current["fields"] if field["name"] not in writer_names]
    if all("default" in field and field["default"] is None for field in added):
        kept = [field for field in current["fields"] if field["name"] in writer_names]
        if _reading_form(writer) == _reading_form({**current, "fields": kept}):
            added_nulls = tuple(field["name"] for field in added)
            return ReadPlan(writer, None, added_nulls, compile_reader(writer))
    return ReadPlan(writer, current)


class SchemaFamily:
    """All kept versions of one record type, their read plans by fingerprint and by registry id."""

    __slots__ = (
        "by_fingerprint",
        "by_id",
        "current",
        "field_names",
        "name",
        "nullable_branches",
        "record_name",
        "versions",
    )

    def __init__(self, name: str, versions: Iterable[SchemaVersion]) -> None:
        self.name = name
        self.versions = {version.version: version for version in versions}
        self.current = self.versions[max(self.versions)]
        self.record_name = self.current.record_name
        self.by_fingerprint = {
            v.fingerprint: read_plan(v.parsed, self.current.parsed) for v in self.versions.values()
        }
        self.by_id: dict[int, ReadPlan] = {}
        self.field_names = {
            number: frozenset(field["name"] for field in version.parsed["fields"])
            for number, version in self.versions.items()
        }
        self.nullable_branches = nullable_branches(self.current.parsed)


def nullable_branches(schema: ParsedSchema) -> tuple[tuple[str, str], ...]:
    """Return ``(field, branch name)`` for each top-level ``["null", T]`` field, as tuple notation names T."""
    out = []
    for field in schema["fields"]:
        kind = field["type"]
        if isinstance(kind, list) and len(kind) == 2 and kind[0] == "null":  # noqa: PLR2004 - null + one type
            branch = kind[1]
            if isinstance(branch, dict):
                branch = branch["name"] if branch["type"] in ("record", "enum", "fixed") else branch["type"]
            out.append((field["name"], str(branch)))
    return tuple(out)


def _read_fast(plan: ReadPlan, value: bytes, start: int) -> dict[str, Any] | None:
    """Read a well-formed body with the plan's generated reader; None when there is none or it refuses."""
    fast = plan.fast
    if fast is None:
        return None
    try:
        record, end = fast(value, start)
    except Exception:  # noqa: BLE001 - any surprise: fastavro reads the bytes and names the fault
        return None
    if end != len(value):
        return None
    for name in plan.added_nulls:
        record[name] = None
    return record


def read_body(plan: ReadPlan, value: bytes, start: int, family: str) -> dict[str, Any]:
    """Read the Avro body at ``value[start:]``, turning every reader failure into a ``DecodeError``."""
    fast = _read_fast(plan, value, start)
    if fast is not None:
        return fast
    buffer = BytesIO(value)
    buffer.seek(start)
    try:
        record = schemaless_reader(buffer, plan.writer, plan.reader)
    except EOFError as exc:
        raise DecodeError(DeadLetterClass.TRUNCATED, f"{family} body ends early") from exc
    except SchemaResolutionError as exc:
        raise DecodeError(
            DeadLetterClass.UNKNOWN_SCHEMA, f"{family} writer schema does not resolve to the current version"
        ) from exc
    except (IndexError, struct.error) as exc:
        # The compiled reader reads a varint byte by byte and fails with IndexError at the end of input.
        if buffer.tell() >= len(value):
            raise DecodeError(DeadLetterClass.TRUNCATED, f"{family} body ends early") from exc
        raise DecodeError(DeadLetterClass.CORRUPT, f"{family} body does not fit its writer schema") from exc
    except CORRUPT_BODY_ERRORS as exc:
        raise DecodeError(DeadLetterClass.CORRUPT, f"{family} body does not fit its writer schema") from exc
    if buffer.tell() != len(value):
        raise DecodeError(DeadLetterClass.CORRUPT, f"{family} body has trailing bytes")
    if not isinstance(record, dict):
        raise DecodeError(DeadLetterClass.CORRUPT, f"{family} body is not a record")
    for name in plan.added_nulls:
        record[name] = None
    return record
