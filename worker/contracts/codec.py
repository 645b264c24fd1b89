"""Avro codec for claim, result and dead-letter records: framing, schema evolution and bad-input errors.

Wire formats (the first bytes tell them apart when reading):

* Avro single-object encoding (default for writing): ``C3 01``, the 8-byte little-endian
  CRC-64-AVRO fingerprint of the writer schema's Parsing Canonical Form, then the Avro binary body.
* Confluent framing: byte ``00``, a 4-byte big-endian schema id, then the Avro binary body. Ids are
  resolved through a ``SchemaResolver`` (default: the fixed map in ``schemas/registry-ids.json``).

Every kept version of a record family (``claim.v1.avsc``, ``claim.v2.avsc``, ...) is a valid writer
schema; records are always read into the family's newest version, so old claims decode (v2's added
field comes back as its default).
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass
from datetime import datetime
from io import BytesIO
from typing import TYPE_CHECKING, Any

from fastavro import schemaless_reader, schemaless_writer
from fastavro.read import SchemaResolutionError
from pydantic import ValidationError

from worker.contracts.fastread import compile_reader
from worker.contracts.fastwrite import Unsupported, compile_writer
from worker.contracts.identifiers import key_is_clean
from worker.contracts.model import Claim
from worker.contracts.parts import ClaimParts
from worker.contracts.registry import (
    HttpSchemaResolver,
    LocalSchemaResolver,
    ParsedSchema,
    SchemaResolver,
    SchemaVersion,
    check_arrays_bounded,
    load_registry_ids,
    load_schemas,
    single_object_fingerprint,
)
from worker.contracts.wire import WireFormat
from worker.errors import ConfigError, DeadLetterClass, DecodeError, InvalidClaim, MalformedClaim

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping
    from pathlib import Path

__all__ = [
    "CONFLUENT_MAGIC",
    "DEFAULT_MAX_RECORD_BYTES",
    "SINGLE_OBJECT_MARKER",
    "Codec",
    "invalid_claim_from",
    "malformed_claim_from",
    "reject_code_for",
]

SINGLE_OBJECT_MARKER = b"\xc3\x01"
CONFLUENT_MAGIC = b"\x00"
_SINGLE_OBJECT_HEADER = len(SINGLE_OBJECT_MARKER) + 8
_CONFLUENT_HEADER = len(CONFLUENT_MAGIC) + 4
# Kafka's default max.message.bytes; a larger value is refused before fastavro sees it.
DEFAULT_MAX_RECORD_BYTES = 1 << 20
# How many field errors a reason lists before it summarises the rest as a count.
_MAX_REASON_ERRORS = 8
_SAFE_LOC_PART = re.compile(r"^[a-z_][a-z0-9_]{0,63}$")
_SAFE_ERROR_TYPE = re.compile(r"^[a-z_][a-z0-9_]{0,63}$")

# What fastavro (compiled or pure-Python) raises on a body that does not fit its writer schema:
# bad UTF-8, an enum/union index out of range, a date or timestamp out of range, a giant length.
_CORRUPT_BODY_ERRORS = (
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
class _ReadPlan:
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


def _plan(writer: ParsedSchema, current: ParsedSchema) -> _ReadPlan:
    """Return the cheapest plan that reads ``writer`` into ``current``."""
    if writer is current:
        return _ReadPlan(writer, None, fast=compile_reader(writer))
    writer_names = {field["name"] for field in writer["fields"]}
    added = [field for field in current["fields"] if field["name"] not in writer_names]
    if all("default" in field and field["default"] is None for field in added):
        kept = [field for field in current["fields"] if field["name"] in writer_names]
        if _reading_form(writer) == _reading_form({**current, "fields": kept}):
            added_nulls = tuple(field["name"] for field in added)
            return _ReadPlan(writer, None, added_nulls, compile_reader(writer))
    return _ReadPlan(writer, current)


class _Family:
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
            v.fingerprint: _plan(v.parsed, self.current.parsed) for v in self.versions.values()
        }
        self.by_id: dict[int, _ReadPlan] = {}
        self.field_names = {
            number: frozenset(field["name"] for field in version.parsed["fields"])
            for number, version in self.versions.items()
        }
        self.nullable_branches = _nullable_branches(self.current.parsed)


class Codec:
    """Encodes and decodes claim, result and dead-letter records; parses every schema once, at construction.

    ``schemas_dir`` overrides the ``schemas/`` folder; ``wire_format`` selects the framing ``encode_*``
    writes; ``resolver`` resolves Confluent ids when reading, default an ``HttpSchemaResolver`` on
    ``registry_url`` when given, else the local id map; ``max_record_bytes`` bounds a decode's input.
    Raises ``ConfigError`` for a schema folder that lacks a family or, with Confluent framing, an id.
    """

    __slots__ = ("_families", "_headers", "_max_record_bytes", "_parts", "_resolver", "_result_writer")

    def __init__(
        self,
        schemas_dir: Path | None = None,
        *,
        wire_format: WireFormat | str = WireFormat.SINGLE_OBJECT,
        resolver: SchemaResolver | None = None,
        registry_url: str | None = None,
        max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES,
    ) -> None:
        if resolver is not None and registry_url is not None:
            raise ConfigError("give either a schema resolver or a registry url, not both")
        versions = load_schemas(schemas_dir)
        ids = load_registry_ids(schemas_dir)
        by_family: dict[str, list[SchemaVersion]] = {}
        for version in versions:
            by_family.setdefault(version.family, []).append(version)
        missing = {"claim", "result", "dead_letter"} - by_family.keys()
        if missing:
            raise ConfigError(f"schema folder lacks the families {sorted(missing)}")
        self._families = {name: _Family(name, family) for name, family in by_family.items()}
        self._result_writer = compile_writer(self._families["result"].current.parsed)
        self._parts = ClaimParts()  # validated prescribers, products, diagnoses (claims repeat them)
        if resolver is None:
            resolver = (
                LocalSchemaResolver(versions, ids)
                if registry_url is None
                else HttpSchemaResolver(registry_url)
            )
        self._resolver = resolver
        self._max_record_bytes = max_record_bytes
        if WireFormat(wire_format) is WireFormat.CONFLUENT:
            unassigned = sorted(v.file_name for v in versions if v.file_name not in ids)
            if unassigned:
                raise ConfigError(f"Confluent framing needs registry ids for {unassigned}")
            self._headers = {
                v.file_name: CONFLUENT_MAGIC + ids[v.file_name].to_bytes(4, "big") for v in versions
            }
        else:
            self._headers = {v.file_name: SINGLE_OBJECT_MARKER + v.fingerprint for v in versions}

    # -- claims ---------------------------------------------------------------------------------

    def decode_claim(self, value: bytes | None, key: bytes | None = None) -> Claim:
        """Decode and validate one claim event; ``key`` is its Kafka record key, if any.

        Raises ``DecodeError`` (NOT_AVRO, UNKNOWN_SCHEMA, TRUNCATED or CORRUPT) when the bytes cannot
        be read. When they break a field rule, or the key is not a clean identifier
        (``contracts.identifiers``), raises ``MalformedClaim`` (answered with a REJECTED result and
        NCPDP M/I reject codes) if the claim id can be read, else ``InvalidClaim`` (INVALID_FIELD or
        MISSING_FIELD, a dead letter).
        """
        record = self.decode_claim_record(value)
        known, pending = self._parts.substitute(record)
        clean_key = key_is_clean(key)
        try:
            claim = Claim.model_validate(known)
        except ValidationError as exc:
            raise malformed_claim_from(exc, record, clean_key=clean_key) from exc
        if not clean_key:
            raise _unclean_key(claim)
        if pending:
            self._parts.remember(claim, pending)
        return claim

    def decode_claim_record(self, value: bytes | None) -> dict[str, Any]:
        """Decode one claim event to its newest-version Avro record, unvalidated; raises like decode_claim."""
        return self._decode(self._families["claim"], value)

    def encode_claim(self, claim: Claim | Mapping[str, Any], *, version: int | None = None) -> bytes:
        """Encode a ``Claim`` or an unvalidated record dict with claim schema ``version`` (default: newest).

        Raises ``ValueError`` when the version does not exist, when the claim sets a field that
        version lacks, or when the record does not fit the schema.
        """
        family = self._families["claim"]
        number = family.current.version if version is None else version
        if number not in family.versions:
            raise ValueError(f"no claim schema version {number}")
        record = claim.model_dump() if isinstance(claim, Claim) else dict(claim)
        extra = sorted(key for key in record.keys() - family.field_names[number] if record[key] is not None)
        if extra:
            raise ValueError(f"claim schema v{number} has no fields {extra}")
        return self._encode(family.versions[number], record)

    # -- results and dead letters ---------------------------------------------------------------

    def encode_result(self, record: Mapping[str, Any]) -> bytes:
        """Encode an ``AdjudicationResult`` (``results.build_result``); ValueError if it does not fit.

        The compiled writer (``fastwrite``) writes it when it covers the values, byte-identical to
        fastavro and about twice as fast. Otherwise fastavro writes it, with every top-level
        ``["null", T]`` value in tuple notation (its branch named), which skips fastavro's validation
        of each branch.
        """
        family = self._families["result"]
        if self._result_writer is not None:
            try:
                body = self._result_writer(record)
            except Unsupported:
                pass  # written by fastavro below
            else:
                return self._headers[family.current.file_name] + body
        tagged = dict(record)
        for name, branch in family.nullable_branches:
            value = tagged.get(name)
            if value is not None:
                tagged[name] = (branch, value)
        return self._encode(family.current, tagged, tuple_unions=True)

    def decode_result(self, value: bytes | None) -> dict[str, Any]:
        """Decode an ``AdjudicationResult`` record; raises ``DecodeError`` like ``decode_claim``."""
        return self._decode(self._families["result"], value)

    def encode_dead_letter(self, record: Mapping[str, Any]) -> bytes:
        """Encode a ``DeadLetter`` record (``results.build_dead_letter``); ValueError if it does not fit."""
        return self._encode(self._families["dead_letter"].current, record)

    def decode_dead_letter(self, value: bytes | None) -> dict[str, Any]:
        """Decode a ``DeadLetter`` record; raises ``DecodeError`` like ``decode_claim``."""
        return self._decode(self._families["dead_letter"], value)

    # -- internals ------------------------------------------------------------------------------

    def _encode(
        self, version: SchemaVersion, record: Mapping[str, Any], *, tuple_unions: bool = False
    ) -> bytes:
        """Frame and write one record with ``version`` as the writer schema."""
        buffer = BytesIO()
        buffer.write(self._headers[version.file_name])
        try:
            schemaless_writer(buffer, version.parsed, record, disable_tuple_notation=not tuple_unions)
        except (*_CORRUPT_BODY_ERRORS, AttributeError) as exc:
            raise ValueError(f"record does not fit schema {version.file_name}") from exc
        return buffer.getvalue()

    def _decode(self, family: _Family, value: bytes | None) -> dict[str, Any]:
        """Read the framing, pick the read plan for the writer schema and read the body."""
        if value is None:
            raise DecodeError(DeadLetterClass.NOT_AVRO, "record value is null")
        size = len(value)
        if size > self._max_record_bytes:
            raise DecodeError(
                DeadLetterClass.CORRUPT, f"record is longer than {self._max_record_bytes} bytes"
            )
        if value[:2] == SINGLE_OBJECT_MARKER:
            if size < _SINGLE_OBJECT_HEADER:
                raise DecodeError(DeadLetterClass.TRUNCATED, "single-object header ends early")
            plan = family.by_fingerprint.get(value[2:_SINGLE_OBJECT_HEADER])
            if plan is None:
                raise DecodeError(
                    DeadLetterClass.UNKNOWN_SCHEMA,
                    f"fingerprint {value[2:_SINGLE_OBJECT_HEADER].hex()} is no known {family.name} schema",
                )
            start = _SINGLE_OBJECT_HEADER
        elif value[:1] == CONFLUENT_MAGIC:
            if size < _CONFLUENT_HEADER:
                raise DecodeError(DeadLetterClass.TRUNCATED, "Confluent header ends early")
            plan = self._plan_for_id(family, int.from_bytes(value[1:_CONFLUENT_HEADER], "big"))
            start = _CONFLUENT_HEADER
        elif value == SINGLE_OBJECT_MARKER[:1]:
            raise DecodeError(DeadLetterClass.TRUNCATED, "single-object header ends early")
        else:
            raise DecodeError(DeadLetterClass.NOT_AVRO, "no single-object or Confluent header")
        return _read_body(plan, value, start, family.name)

    def _plan_for_id(self, family: _Family, schema_id: int) -> _ReadPlan:
        """Resolve a Confluent schema id to a read plan, once per id and family."""
        plan = family.by_id.get(schema_id)
        if plan is not None:
            return plan
        try:
            writer = self._resolver.schema_for_id(schema_id)
        except KeyError as exc:
            raise DecodeError(
                DeadLetterClass.UNKNOWN_SCHEMA, f"schema id {schema_id} is not registered"
            ) from exc
        if writer.get("name") != family.record_name:
            raise DecodeError(
                DeadLetterClass.UNKNOWN_SCHEMA, f"schema id {schema_id} is no {family.name} schema"
            )
        # A registered copy of a local version reuses that version's plan (and its no-resolution fast path).
        plan = family.by_fingerprint.get(single_object_fingerprint(writer))
        if plan is None:
            try:
                check_arrays_bounded(writer)
            except ValueError as exc:
                raise DecodeError(
                    DeadLetterClass.UNKNOWN_SCHEMA, f"schema id {schema_id} has unbounded arrays"
                ) from exc
            plan = _plan(writer, family.current.parsed)
        family.by_id[schema_id] = plan
        return plan


def _nullable_branches(schema: ParsedSchema) -> tuple[tuple[str, str], ...]:
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


def _read_fast(plan: _ReadPlan, value: bytes, start: int) -> dict[str, Any] | None:
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


def _read_body(plan: _ReadPlan, value: bytes, start: int, family: str) -> dict[str, Any]:
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
    except _CORRUPT_BODY_ERRORS as exc:
        raise DecodeError(DeadLetterClass.CORRUPT, f"{family} body does not fit its writer schema") from exc
    if buffer.tell() != len(value):
        raise DecodeError(DeadLetterClass.CORRUPT, f"{family} body has trailing bytes")
    if not isinstance(record, dict):
        raise DecodeError(DeadLetterClass.CORRUPT, f"{family} body is not a record")
    for name in plan.added_nulls:
        record[name] = None
    return record


def _loc_text(loc: tuple[int | str, ...]) -> str:
    """Render a pydantic error location as a dotted field path, masking any part that is not a field name."""
    parts = [str(p) if isinstance(p, int) or _SAFE_LOC_PART.match(p) else "?" for p in loc]
    return ".".join(parts) or "claim"


def invalid_claim_from(exc: ValidationError, *, clean_key: bool = True) -> InvalidClaim:
    """Build an ``InvalidClaim`` from a pydantic error using only each error's ``loc`` and ``type``.

    ``input``, ``ctx`` and the message can hold field values (PHI), so they are never read. The
    class is MISSING_FIELD when any error is a missing field, INVALID_FIELD otherwise. An identifier
    that breaks its pattern is named ``unprintable``; ``clean_key=False`` adds ``key: unprintable``.
    """
    errors = exc.errors(include_url=False, include_context=False, include_input=False)
    parts: list[str] = [] if clean_key else [_UNCLEAN_KEY_REASON]
    missing = False
    for error in errors:
        kind = error["type"] if _SAFE_ERROR_TYPE.match(error["type"]) else "?"
        if kind == "string_pattern_mismatch" and error["loc"] and error["loc"][0] in _IDENTIFIER_FIELDS:
            kind = "unprintable"  # the identifiers' only pattern is IDENTIFIER_PATTERN
        missing = missing or kind == "missing"
        part = f"{_loc_text(error['loc'])}: {kind}"
        if part not in parts:
            parts.append(part)
    reason = "; ".join(parts[:_MAX_REASON_ERRORS]) or "claim: invalid"
    if len(parts) > _MAX_REASON_ERRORS:
        reason += f"; and {len(parts) - _MAX_REASON_ERRORS} more"
    error_class = DeadLetterClass.MISSING_FIELD if missing else DeadLetterClass.INVALID_FIELD
    return InvalidClaim(error_class, reason)


# NCPDP reject code for a malformed claim field (field path without indexes). 25, 39 and 21 are [V]
# (docs/policy.md §4, §8); the other M/I codes follow the public NCPDP reject list and are [U] until checked
# against the licensed External Code List. A field with no NCPDP counterpart gets 85 Claim Not Processed.
_REJECT_FOR_FIELD = {
    "transaction_code": "03",
    "event_id": "85",
    "key": "85",  # the Kafka record key: no NCPDP field
    "original_claim_id": "85",
    "service_provider_id": "05",
    "prescription_reference_number": "16",
    "fill_number": "17",
    "date_of_service": "15",
    "patient.member_id": "07",
    "patient.first_name": "CA",
    "patient.last_name": "CB",
    "patient.date_of_birth": "09",
    "product.product_id": "21",
    "product.qualifier": "E1",
    "quantity": "E7",
    "days_supply": "19",
    "diagnoses.code": "39",
    "diagnoses.qualifier": "WE",
    "diagnoses": "39",
    "prescriber.npi": "25",
    "prescriber.taxonomy": "25",
    "prescriber": "25",
    "prior_authorization_number": "EV",
    "prior_authorization_type_code": "EU",
}
_CLAIM_NOT_PROCESSED = "85"
# Model-level rules report at the model's location; these name the field they are about.
_FIELD_FOR_RULE = {
    "ndc_format": "product_id",
    "icd10_format": "code",
    "icd10_unknown": "code",
    "icd10_incomplete": "code",
    "original_claim_id_required": "original_claim_id",
}
_MAX_CLAIM_ID = 64
_MAX_EVENT_ID = 64
# The claim's identifier fields (``model.Identifier``) and the reason a record key that is no clean
# identifier adds (docs/policy.md, "Clean identifiers").
_IDENTIFIER_FIELDS = frozenset(
    {"event_id", "claim_id", "original_claim_id", "service_provider_id", "prescription_reference_number"}
)
_KEY_FIELD = "key"
_UNCLEAN_KEY_REASON = f"{_KEY_FIELD}: unprintable"


def reject_code_for(field: str) -> str:
    """Return the NCPDP reject code for a malformed claim field path (``diagnoses.2.code`` -> 39)."""
    key = ".".join(part for part in field.split(".") if not part.isdigit())
    return _REJECT_FOR_FIELD.get(key, _CLAIM_NOT_PROCESSED)


def _text(record: Mapping[str, Any], name: str, longest: int, bad: set[str]) -> str | None:
    value = record.get(name)
    if name in bad or not isinstance(value, str) or not 1 <= len(value) <= longest:
        return None
    return value


def malformed_claim_from(
    exc: ValidationError, record: Mapping[str, Any], *, clean_key: bool = True
) -> InvalidClaim:
    """Build the error for a decoded claim that breaks field rules, from each error's ``loc`` and ``type``.

    Returns a ``MalformedClaim`` (a REJECTED result) when the record's claim id, transaction code and
    event time can be read (the last two always can in a decoded claim), with one NCPDP reject code
    per failed field path (``key`` first when ``clean_key`` is False); otherwise the ``InvalidClaim``
    of ``invalid_claim_from`` (a dead letter). Values are never read into the error, only identifiers
    the result carries anyway, and only when they passed validation (a claim id that is no clean
    identifier is unreadable: a dead letter).
    """
    invalid = invalid_claim_from(exc, clean_key=clean_key)
    errors = exc.errors(include_url=False, include_context=False, include_input=False)
    bad_top = {str(error["loc"][0]) for error in errors if error["loc"]}
    claim_id = _text(record, "claim_id", _MAX_CLAIM_ID, bad_top)
    transaction_code = _text(record, "transaction_code", 2, bad_top)
    event_time = record.get("event_time")
    if claim_id is None or transaction_code is None or not isinstance(event_time, datetime):
        return invalid
    fields: list[str] = [] if clean_key else [_KEY_FIELD]
    for error in errors:
        loc = tuple(error["loc"])
        rule_field = _FIELD_FOR_RULE.get(error["type"])
        if rule_field is not None:
            loc = (*loc, rule_field)
        field = _loc_text(loc)
        if field not in fields:
            fields.append(field)
    fields = fields[:_MAX_REASON_ERRORS]
    return MalformedClaim(
        invalid.reason,
        claim_id=claim_id,
        event_id=_text(record, "event_id", _MAX_EVENT_ID, bad_top),
        transaction_code=transaction_code,
        fields=tuple(fields),
        reject_codes=tuple(reject_code_for(field) for field in fields),
        event_time=event_time,
    )


def _unclean_key(claim: Claim) -> MalformedClaim:
    """Return the REJECTED answer for a valid claim whose record key is no clean identifier (85, ``key``)."""
    return MalformedClaim(
        _UNCLEAN_KEY_REASON,
        claim_id=claim.claim_id,
        event_id=claim.event_id,
        transaction_code=claim.transaction_code.value,
        fields=(_KEY_FIELD,),
        reject_codes=(reject_code_for(_KEY_FIELD),),
        event_time=claim.event_time,
    )
