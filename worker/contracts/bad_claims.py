"""How a claim that breaks field rules is explained: field paths, error kinds, NCPDP codes, never values."""

from __future__ import annotations

import re
from datetime import datetime
from typing import TYPE_CHECKING, Any

from worker.errors import DeadLetterClass, InvalidClaim, MalformedClaim

if TYPE_CHECKING:
    from collections.abc import Mapping

    from pydantic import ValidationError

    from worker.contracts.model import Claim

__all__ = ["invalid_claim_from", "malformed_claim_from", "reject_code_for", "unclean_key"]

# How many field errors a reason lists before it summarises the rest as a count.
_MAX_REASON_ERRORS = 8
_SAFE_LOC_PART = re.compile(r"^[a-z_][a-z0-9_]{0,63}$")
_SAFE_ERROR_TYPE = re.compile(r"^[a-z_][a-z0-9_]{0,63}$")


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


def unclean_key(claim: Claim) -> MalformedClaim:
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
