"""Avro codec for claim, result and dead-letter records: framing, schema evolution and bad-input errors.

Wire formats (the first bytes tell them apart when reading):

* Avro single-object encoding (default for writing): ``C3 01``, the 8-byte little-endian
  CRC-64-AVRO fingerprint of the writer schema's Parsing Canonical Form, then the Avro binary body.
* Confluent framing: byte ``00``, a 4-byte big-endian schema id, then the Avro binary body. Ids are
  resolved through a ``SchemaResolver`` (default: the fixed map in ``schemas/registry-ids.json``).

Every kept version of a record family (``claim.v1.avsc``, ``claim.v2.avsc``, ...) is a valid writer
schema; records are always read into the family's newest version, so old claims decode (v2's added
field comes back as its default). How each writer schema is read is in ``read_plans``; how a claim
that breaks field rules is explained (reasons, NCPDP reject codes) is in ``bad_claims``.
"""

from __future__ import annotations

from io import BytesIO
from typing import TYPE_CHECKING, Any

from fastavro import schemaless_writer
from pydantic import ValidationError

from worker.contracts.bad_claims import malformed_claim_from, unclean_key
from worker.contracts.codes import PolicySelection
from worker.contracts.decided import DecidedResults
from worker.contracts.fastwrite import Unsupported, compile_writer
from worker.contracts.identifiers import key_is_clean
from worker.contracts.model import Claim
from worker.contracts.parts import ClaimParts
from worker.contracts.read_plans import CORRUPT_BODY_ERRORS, ReadPlan, SchemaFamily, read_body, read_plan
from worker.contracts.registry import (
    HttpSchemaResolver,
    LocalSchemaResolver,
    SchemaResolver,
    SchemaVersion,
    check_arrays_bounded,
    load_registry_ids,
    load_schemas,
    single_object_fingerprint,
)
from worker.contracts.wire import WireFormat
from worker.errors import ConfigError, DeadLetterClass, DecodeError

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from pathlib import Path

    from worker.contracts.model import Decision
    from worker.contracts.results import SourceCoordinates

__all__ = ["CONFLUENT_MAGIC", "DEFAULT_MAX_RECORD_BYTES", "SINGLE_OBJECT_MARKER", "Codec"]

SINGLE_OBJECT_MARKER = b"\xc3\x01"
CONFLUENT_MAGIC = b"\x00"
_SINGLE_OBJECT_HEADER = len(SINGLE_OBJECT_MARKER) + 8
_CONFLUENT_HEADER = len(CONFLUENT_MAGIC) + 4
# ``Claim.model_validate`` without its Python wrapper (same validator, same errors), once per claim.
_validate_claim: Callable[[object], Claim] = Claim.__pydantic_validator__.validate_python
# Kafka's default max.message.bytes; a larger value is refused before fastavro sees it.
DEFAULT_MAX_RECORD_BYTES = 1 << 20


class Codec:
    """Encodes and decodes claim, result and dead-letter records; parses every schema once, at construction.

    ``schemas_dir`` overrides the ``schemas/`` folder; ``wire_format`` selects the framing ``encode_*``
    writes; ``resolver`` resolves Confluent ids when reading, default an ``HttpSchemaResolver`` on
    ``registry_url`` when given, else the local id map; ``max_record_bytes`` bounds a decode's input.
    Raises ``ConfigError`` for a schema folder that lacks a family or, with Confluent framing, an id.
    """

    __slots__ = (
        "_decided",
        "_families",
        "_headers",
        "_max_record_bytes",
        "_parts",
        "_resolver",
        "_result_writer",
    )

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
        self._families = {name: SchemaFamily(name, family) for name, family in by_family.items()}
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
        result = self._families["result"].current
        self._decided = DecidedResults(result.parsed, self._headers[result.file_name], self.encode_result)

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
            claim = _validate_claim(known)
        except ValidationError as exc:
            raise malformed_claim_from(exc, record, clean_key=clean_key) from exc
        if not clean_key:
            raise unclean_key(claim)
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

    def encode_decided(
        self,
        claim: Claim,
        decision: Decision,
        source: SourceCoordinates,
        worker_version: str,
        selection: PolicySelection | None = PolicySelection.PINNED,
    ) -> bytes:
        """Encode the result of ``decision`` on ``claim``, byte for byte ``encode_result(build_result(...))``.

        A decision that recurs (one NOT_APPLICABLE decision per product and batch) has its fields
        encoded once (``contracts.decided``); raises ``ValueError`` like ``encode_result``. ``selection``
        says why the decision's policy version applied (``results.build_result``).
        """
        return self._decided.encode(claim, decision, source, worker_version, selection)

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
        except (*CORRUPT_BODY_ERRORS, AttributeError) as exc:
            raise ValueError(f"record does not fit schema {version.file_name}") from exc
        return buffer.getvalue()

    def _decode(self, family: SchemaFamily, value: bytes | None) -> dict[str, Any]:
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
        return read_body(plan, value, start, family.name)

    def _plan_for_id(self, family: SchemaFamily, schema_id: int) -> ReadPlan:
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
            plan = read_plan(writer, family.current.parsed)
        family.by_id[schema_id] = plan
        return plan
