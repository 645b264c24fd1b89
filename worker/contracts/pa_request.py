"""PA requests (electronic PA): the ``pa-request`` Avro contract and its decision under the claims policy.

A request carries the clinical information a pharmacy claim rarely has (diagnoses, disease status,
the consultation). It is decided by the same ``decide`` as a claim: the request becomes a synthetic
B1 claim for the requested start date (``request_claim``), so one rule set answers both doors. The
answer (``pa_decision``) names the outcome, the PA number and window of an approval, the list of what
is needed for a pended request, or the referral; it holds no PHI.

The Kafka side (requests in, answers out, through the claims' Pipeline) is worker/runtime/requests.py.
"""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import fastavro
from pydantic import ValidationError

from worker.contracts.codes import Outcome
from worker.contracts.model import Claim, Decision
from worker.contracts.registry import single_object_fingerprint
from worker.errors import BadRecord, DeadLetterClass

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = [
    "REQUEST_PHARMACY",
    "decode_pa_request",
    "encode_pa_request",
    "pa_decision",
    "request_claim",
]

_SCHEMA_PATH = Path(__file__).with_name("schemas") / "requests" / "pa_request.avsc"  # not a result family
_SCHEMA: dict[str, Any] = fastavro.parse_schema(json.loads(_SCHEMA_PATH.read_text()))  # type: ignore[assignment]
_HEADER = b"\xc3\x01" + single_object_fingerprint(_SCHEMA)
REQUEST_PHARMACY = "PA-REQUEST"
"""The service provider id of a request's synthetic claim: its PA number derives from the request id."""


def encode_pa_request(record: Mapping[str, Any]) -> bytes:
    """Return ``record`` as an Avro single-object encoded ``PaRequest``."""
    out = io.BytesIO()
    out.write(_HEADER)
    fastavro.schemaless_writer(out, _SCHEMA, dict(record))
    return out.getvalue()


def decode_pa_request(value: bytes | None) -> dict[str, Any]:
    """Return the request record; raise ``BadRecord`` (dead letter, the claims' classes) when unreadable."""
    if value is None or not value.startswith(b"\xc3\x01"):
        raise BadRecord(DeadLetterClass.NOT_AVRO, "no single-object header")
    if value[: len(_HEADER)] != _HEADER:
        raise BadRecord(DeadLetterClass.UNKNOWN_SCHEMA, "fingerprint is no known pa-request schema")
    try:
        record = fastavro.schemaless_reader(io.BytesIO(value[len(_HEADER) :]), _SCHEMA, None)
    except (EOFError, IndexError):
        raise BadRecord(DeadLetterClass.TRUNCATED, "pa-request body ends early") from None
    except (ValueError, TypeError, UnicodeDecodeError) as exc:
        raise BadRecord(
            DeadLetterClass.CORRUPT, f"pa-request body unreadable ({type(exc).__name__})"
        ) from None
    if not isinstance(record, dict):
        raise BadRecord(DeadLetterClass.CORRUPT, "pa-request body is not a record")
    fields: dict[str, Any] = record
    return fields


def request_claim(request: Mapping[str, Any]) -> Claim:
    """Return the synthetic B1 claim that carries ``request`` through the policy; ``BadRecord`` if invalid."""
    consultant = request.get("consultant") or {}
    requested_at = request["requested_at"]
    raw = {
        "event_id": f"pa-{request['request_id']}"[:64],
        "event_time": requested_at if isinstance(requested_at, datetime) else datetime.now(UTC),
        "transaction_code": "B1",
        "claim_id": request["request_id"],
        "service_provider_id": REQUEST_PHARMACY,
        "prescription_reference_number": "0",
        "fill_number": 0,
        "date_of_service": request["requested_start"],
        "patient": request["patient"],
        "product": request["product"],
        "quantity": 0,
        "days_supply": 0,
        "diagnoses": request.get("diagnoses") or [],
        "prescriber": request["prescriber"],
        "attestation": {
            "disease_status": request.get("disease_status") or "UNKNOWN",
            "consultation": {
                "status": request.get("consultation_status") or "UNKNOWN",
                "consultant_npi": consultant.get("npi"),
                "consultant_taxonomy": consultant.get("taxonomy"),
            },
        },
    }
    try:
        return Claim.model_validate(raw)
    except ValidationError as exc:
        fields = sorted({_request_field(e["loc"], e["type"]) for e in exc.errors(include_input=False)})
        raise BadRecord(
            DeadLetterClass.INVALID_FIELD, "invalid pa-request field(s): " + ", ".join(fields)
        ) from None


# The synthetic claim's fields that carry the request id (``request_claim``).
_REQUEST_ID_FIELDS = frozenset({"claim_id", "event_id"})


def _request_field(loc: tuple[int | str, ...], kind: str) -> str:
    """Name a failed field of a request's claim as the request names it (``request_id (unprintable)``).

    The field path only, never its value: a request id that is no clean identifier
    (``contracts.identifiers``) is named, not echoed.
    """
    path = ".".join(str(part) for part in loc)
    if path in _REQUEST_ID_FIELDS:
        path = "request_id"
        if kind == "string_pattern_mismatch":
            path += " (unprintable)"
    return path


def pa_decision(request_id: str, decision: Decision) -> dict[str, Any]:
    """Return the PA-decisions answer (no PHI): outcome, PA number, window, needs, versions read, summary."""
    approved = decision.outcome is Outcome.APPROVED
    return {
        "request_id": request_id,
        "outcome": decision.outcome.value,
        "pa_number": decision.authorization_number if approved else None,
        "effective": decision.authorization_effective.isoformat()
        if approved and decision.authorization_effective
        else None,
        "expiration": decision.authorization_expiration.isoformat()
        if approved and decision.authorization_expiration
        else None,
        "needs": [need.value for need in decision.needs],
        "recommendation": None if decision.recommendation is None else decision.recommendation.value,
        "policy_id": decision.policy_id,
        "policy_version": decision.policy_version,
        "decided_at": decision.decided_at.isoformat(),
        "reference_versions": dict(decision.reference_versions),  # e.g. the prescriber directory read
        "summary": decision.summary,
    }
