"""Avro schema sources for the codec: the local ``schemas/`` folder and Confluent schema-id resolvers."""

from __future__ import annotations

import base64
import json
import re
import ssl
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from fastavro import parse_schema
from fastavro.schema import SchemaParseException, fingerprint, to_parsing_canonical_form

from worker.errors import RegistryUnavailable
from worker.lru import LruMemo

__all__ = [
    "SCHEMAS_DIR",
    "HttpSchemaResolver",
    "LocalSchemaResolver",
    "ParsedSchema",
    "RegistryUnavailable",
    "SchemaResolver",
    "SchemaVersion",
    "check_arrays_bounded",
    "load_registry_ids",
    "load_schemas",
    "single_object_fingerprint",
]

ParsedSchema = dict[str, Any]
# Any node of a parsed schema: a type name, a union, or a complex type.
_Node = str | list[Any] | dict[str, Any]

SCHEMAS_DIR = Path(__file__).resolve().parent / "schemas"
_REGISTRY_IDS_FILE = "registry-ids.json"
# "claim.v2.avsc" -> family "claim", version 2; "result.avsc" -> family "result", version 1.
_FILE_NAME = re.compile(r"^(?P<family>[a-z][a-z0-9_]*)(?:\.v(?P<version>[0-9]+))?\.avsc$")
# A registry answer larger than this is not a schema we want to parse.
_MAX_REGISTRY_RESPONSE_BYTES = 1 << 20
# Unknown ids remembered so a flood of bad records does not become a flood of requests; bounded
# because the ids come from input bytes. Producers register before they send, so a miss stays a miss.
_MAX_REMEMBERED_UNKNOWN_IDS = 4096
# Parsed schemas kept; a topic carries a handful of writer schemas, so this bound is never near in practice.
_MAX_CACHED_SCHEMAS = 1024
# Fewest bytes each Avro primitive takes in the binary encoding.
_PRIMITIVE_MIN_BYTES = {
    "null": 0,
    "boolean": 1,
    "int": 1,
    "long": 1,
    "float": 4,
    "double": 8,
    "bytes": 1,
    "string": 1,
}


@dataclass(frozen=True, slots=True)
class SchemaVersion:
    """One schema file, parsed once: its family, version, full record name and single-object fingerprint."""

    file_name: str
    family: str
    version: int
    record_name: str
    parsed: ParsedSchema
    fingerprint: bytes


class SchemaResolver(Protocol):
    """Looks up a Confluent schema id; raises ``KeyError`` when the id is unknown."""

    def schema_for_id(self, schema_id: int) -> ParsedSchema:
        """Return the parsed writer schema registered under ``schema_id``."""
        ...


def single_object_fingerprint(schema: ParsedSchema) -> bytes:
    """Return the 8-byte little-endian CRC-64-AVRO fingerprint of the schema's Parsing Canonical Form."""
    # fastavro already returns the little-endian byte order the single-object header uses, as hex.
    return bytes.fromhex(fingerprint(to_parsing_canonical_form(schema), "CRC-64-AVRO"))


def _min_encoded_size(schema: _Node, named: dict[str, Any], active: frozenset[str]) -> int:
    """Return the fewest bytes a value of ``schema`` can take; recursion through ``active`` counts as 0."""
    if isinstance(schema, list):
        return 1 + min((_min_encoded_size(branch, named, active) for branch in schema), default=0)
    if isinstance(schema, dict):
        kind = schema["type"]
        if kind in ("record", "error"):
            inner = active | {schema["name"]}
            return sum(_min_encoded_size(field["type"], named, inner) for field in schema["fields"])
        size = {"fixed": schema.get("size"), "enum": 1, "array": 1, "map": 1}.get(kind)
        return int(size) if size is not None else _min_encoded_size(kind, named, active)
    if schema in _PRIMITIVE_MIN_BYTES:
        return _PRIMITIVE_MIN_BYTES[schema]
    if schema in active or schema not in named:
        return 0
    return _min_encoded_size(named[schema], named, active | {schema})


def check_arrays_bounded(schema: ParsedSchema) -> None:
    """Refuse a schema with an array whose items can be zero bytes long.

    A declared count of 2**62 such items would make the reader loop (and allocate) for ever on a
    few input bytes; with items of at least one byte the reader hits the end of the input first.
    """
    named: dict[str, Any] = schema.get("__named_schemas", {})
    stack: list[Any] = [schema]
    seen: set[int] = set()
    while stack:
        node = stack.pop()
        if isinstance(node, list):
            stack.extend(node)
            continue
        if not isinstance(node, dict) or id(node) in seen:
            continue
        seen.add(id(node))
        kind = node.get("type")
        if kind == "array":
            if _min_encoded_size(node["items"], named, frozenset()) == 0:
                msg = "schema has an array whose items can encode to zero bytes"
                raise ValueError(msg)
            stack.append(node["items"])
        elif kind == "map":
            stack.append(node["values"])
        elif kind in ("record", "error"):
            stack.extend(field["type"] for field in node["fields"])
        elif isinstance(kind, (dict, list)):
            stack.append(kind)


def _parse(raw: _Node) -> ParsedSchema:
    """Parse a schema with fastavro and check it cannot make the reader loop; raise ValueError if not."""
    parsed = parse_schema(raw)
    if not isinstance(parsed, dict) or parsed.get("type") != "record":
        msg = "a message schema must be a record"
        raise ValueError(msg)
    check_arrays_bounded(parsed)
    return parsed


def load_schemas(directory: Path | None = None) -> tuple[SchemaVersion, ...]:
    """Load and parse every ``*.avsc`` in ``directory`` (default ``SCHEMAS_DIR``), sorted by file name.

    Raises ``ValueError`` for a badly named file, a schema that is not a record, or a family whose
    versions disagree on the record name.
    """
    folder = SCHEMAS_DIR if directory is None else directory
    versions: list[SchemaVersion] = []
    for path in sorted(folder.glob("*.avsc")):
        match = _FILE_NAME.match(path.name)
        if match is None:
            msg = f"schema file name {path.name!r} is not <family>[.v<N>].avsc"
            raise ValueError(msg)
        parsed = _parse(json.loads(path.read_text(encoding="utf-8")))
        versions.append(
            SchemaVersion(
                file_name=path.name,
                family=match["family"],
                version=int(match["version"] or 1),
                record_name=parsed["name"],
                parsed=parsed,
                fingerprint=single_object_fingerprint(parsed),
            )
        )
    names: dict[str, str] = {}
    for version in versions:
        if names.setdefault(version.family, version.record_name) != version.record_name:
            msg = f"schema family {version.family!r} mixes record names"
            raise ValueError(msg)
    return tuple(versions)


def load_registry_ids(directory: Path | None = None) -> dict[str, int]:
    """Read ``registry-ids.json`` (schema file name -> Confluent schema id); empty when the file is absent."""
    path = (SCHEMAS_DIR if directory is None else directory) / _REGISTRY_IDS_FILE
    if not path.exists():
        return {}
    raw = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(raw, dict) or not all(
        isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool) for k, v in raw.items()
    ):
        msg = f"{_REGISTRY_IDS_FILE} must map schema file names to integer ids"
        raise ValueError(msg)
    if len(set(raw.values())) != len(raw):
        msg = f"{_REGISTRY_IDS_FILE} assigns one id twice"
        raise ValueError(msg)
    return raw


class LocalSchemaResolver:
    """Resolves Confluent schema ids from a fixed map of the local schema files (``registry-ids.json``)."""

    __slots__ = ("_by_id",)

    def __init__(self, versions: tuple[SchemaVersion, ...], ids: dict[str, int]) -> None:
        by_file = {version.file_name: version for version in versions}
        unknown = sorted(set(ids) - set(by_file))
        if unknown:
            msg = f"registry ids name schema files that do not exist: {unknown}"
            raise ValueError(msg)
        self._by_id = {schema_id: by_file[name].parsed for name, schema_id in ids.items()}

    def schema_for_id(self, schema_id: int) -> ParsedSchema:
        """Return the local parsed schema for ``schema_id``; raise ``KeyError`` if none has it."""
        return self._by_id[schema_id]


class HttpSchemaResolver:
    """Resolves Confluent schema ids over HTTP (``GET {url}/schemas/ids/{id}``), caching each answer.

    A 404 or a non-Avro/unparseable schema raises ``KeyError`` (the record is bad); any other
    failure raises ``RegistryUnavailable`` (the infrastructure is). Only a cache miss does I/O.
    ``username``/``password`` add HTTP basic authentication; ``ca_file`` trusts a private CA and
    ``cert_file``/``key_file`` present a client certificate (https only).
    """

    __slots__ = ("_authorization", "_base_url", "_cache", "_context", "_timeout", "_unknown")

    def __init__(
        self,
        base_url: str,
        *,
        timeout: float = 5.0,
        username: str | None = None,
        password: str | None = None,
        ca_file: str | None = None,
        cert_file: str | None = None,
        key_file: str | None = None,
    ) -> None:
        scheme = urllib.parse.urlsplit(base_url).scheme
        if scheme not in ("http", "https"):
            msg = "schema registry url must be http or https"
            raise ValueError(msg)
        self._base_url = base_url.rstrip("/")
        self._timeout = timeout
        self._authorization: str | None = None
        if username is not None or password is not None:
            token = base64.b64encode(f"{username or ''}:{password or ''}".encode()).decode("ascii")
            self._authorization = f"Basic {token}"
        self._context: ssl.SSLContext | None = None
        if ca_file is not None or cert_file is not None:
            if scheme != "https":
                msg = "schema registry TLS files need an https url"
                raise ValueError(msg)
            self._context = ssl.create_default_context(cafile=ca_file)
            if cert_file is not None:
                self._context.load_cert_chain(cert_file, key_file)
        self._cache: LruMemo[int, ParsedSchema] = LruMemo(_MAX_CACHED_SCHEMAS)
        self._unknown: LruMemo[int, int] = LruMemo(_MAX_REMEMBERED_UNKNOWN_IDS)

    def schema_for_id(self, schema_id: int) -> ParsedSchema:
        """Return the parsed schema registered under ``schema_id`` (cached after the first fetch)."""
        cached = self._cache.get(schema_id)
        if cached is not None:
            return cached
        if self._unknown.get(schema_id) is not None:
            raise KeyError(schema_id)
        try:
            parsed = self._fetch_schema(schema_id)
        except KeyError:
            self._unknown.put(schema_id, schema_id)
            raise
        self._cache.put(schema_id, parsed)
        return parsed

    def _fetch_schema(self, schema_id: int) -> ParsedSchema:
        """Fetch and parse one schema; ``KeyError`` when it is missing or not a usable Avro record schema."""
        document = self._fetch(schema_id)
        # Confluent omits schemaType for Avro; a Protobuf or JSON schema is no schema of ours.
        if not isinstance(document, dict) or document.get("schemaType", "AVRO") != "AVRO":
            raise KeyError(schema_id)
        try:
            parsed = _parse(json.loads(document["schema"]))
        except (ValueError, TypeError, KeyError, SchemaParseException) as exc:
            raise KeyError(schema_id) from exc
        return parsed

    def _fetch(self, schema_id: int) -> object:
        """GET and JSON-decode the registry's answer for one id.

        Raises ``KeyError`` for a 404, an oversized or non-JSON answer; ``RegistryUnavailable`` otherwise.
        """
        url = f"{self._base_url}/schemas/ids/{int(schema_id)}"
        headers = {"Accept": "application/vnd.schemaregistry.v1+json, application/json"}
        if self._authorization is not None:
            headers["Authorization"] = self._authorization
        request = urllib.request.Request(url, headers=headers)  # noqa: S310 - scheme checked in __init__
        try:
            with urllib.request.urlopen(  # noqa: S310 - same
                request, timeout=self._timeout, context=self._context
            ) as response:
                body: bytes = response.read(_MAX_REGISTRY_RESPONSE_BYTES + 1)
        except urllib.error.HTTPError as exc:
            if exc.code == 404:  # noqa: PLR2004 - HTTP Not Found: the id does not exist
                raise KeyError(schema_id) from exc
            raise RegistryUnavailable(f"schema registry answered HTTP {exc.code}") from exc
        except (urllib.error.URLError, OSError) as exc:
            raise RegistryUnavailable("schema registry unreachable") from exc
        if len(body) > _MAX_REGISTRY_RESPONSE_BYTES:
            raise KeyError(schema_id)
        try:
            document: object = json.loads(body)
        except ValueError as exc:
            raise KeyError(schema_id) from exc
        return document
