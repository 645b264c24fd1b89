"""One prior authorization on file: the record, its store-topic codec and the member's pseudonym.

The store topic is compacted and keyed by PA number; each value is JSON ``format`` 1 holding the whole
authorization (a revocation is the same record plus ``revoked_at`` and ``revoked_reason``). It holds no
PHI: the member is a keyed pseudonym. See docs/authorizations.md.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import sys
from dataclasses import dataclass, replace
from datetime import date, datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from worker.errors import ClaimsWorkerError

if TYPE_CHECKING:
    from worker.contracts.model import Patient

__all__ = [
    "AUTHORIZATION_FORMAT",
    "Authorization",
    "BadAuthorization",
    "Pseudonymizer",
    "RevocationReason",
    "decode_authorization",
    "encode_authorization",
    "member_pseudonym",
    "revoked",
]

AUTHORIZATION_FORMAT = 1
_PSEUDONYM_VERSION = "v1"


class BadAuthorization(ClaimsWorkerError):  # noqa: N818 - reads as what it is
    """A store record the follower cannot read; it is skipped, counted and logged by coordinates."""


class RevocationReason(StrEnum):
    """Why an authorization was revoked: a closed set of codes, since the store is PHI-free.

    ``authorizations revoke --reason`` takes one of these (docs/authorizations.md lists them). Records
    written before the codes may hold free text in ``revoked_reason``; they stay readable.
    """

    ENTERED_IN_ERROR = "ENTERED_IN_ERROR"  # approved or recorded by mistake (wrong member, wrong claim)
    CLINICAL_REVIEW = "CLINICAL_REVIEW"  # a clinician reversed the approval on review or appeal
    PRESCRIBER_INVALID = (
        "PRESCRIBER_INVALID"  # the prescriber's NPI is deactivated, unknown, not an individual
    )
    MEMBER_NOT_ELIGIBLE = "MEMBER_NOT_ELIGIBLE"  # coverage ended, or the member moved to another plan
    THERAPY_DISCONTINUED = "THERAPY_DISCONTINUED"  # the prescriber stopped the drug
    DUPLICATE = "DUPLICATE"  # another authorization covers the same member, product and period
    PROGRAM_INTEGRITY = "PROGRAM_INTEGRITY"  # suspected fraud, waste or abuse under investigation

    @classmethod
    def parse(cls, text: str) -> RevocationReason | None:
        """Return the code ``text`` names (case, blanks and hyphens ignored), or ``None``."""
        try:
            return cls("_".join(text.replace("-", " ").split()).upper())
        except ValueError:
            return None


def member_pseudonym(secret: bytes, patient: Patient) -> str:
    """Return the member's pseudonym: HMAC-SHA256 of the normalised member id and date of birth.

    Member id (302-C2, trimmed, upper case) and date of birth (304-C4, ISO): a cardholder id can be
    shared by dependants of one subscriber, so the date of birth tells them apart; names are left out
    because their spelling varies between claims for the same person. Without the secret the hash
    cannot be recomputed from a guessed member id (the id space is small: a plain hash would not hide it).
    """
    return hmac.digest(secret, _pseudonym_text(patient), "sha256").hex()


def _pseudonym_text(patient: Patient) -> bytes:
    return (
        f"{_PSEUDONYM_VERSION}|{patient.member_id.strip().upper()}|{patient.date_of_birth.isoformat()}"
    ).encode()


_SHA256_BLOCK = 64


class Pseudonymizer:
    """``member_pseudonym`` under one secret, for the loop: the same HMAC-SHA256 (RFC 2104), pads hashed once.

    Not ``hmac.digest``: it releases the GIL around OpenSSL's one-shot HMAC, and taking it back while
    kafka-python's I/O threads are busy costs up to the interpreter's switch interval per claim (0.45 ms
    a call in the end-to-end bench, 4 us alone); ``hashlib`` keeps the GIL for inputs under 2 KiB.
    """

    __slots__ = ("_inner", "_outer")

    def __init__(self, secret: bytes) -> None:
        """Hash the key's inner and outer pads once."""
        key = hashlib.sha256(secret).digest() if len(secret) > _SHA256_BLOCK else secret
        key = key.ljust(_SHA256_BLOCK, b"\0")
        self._inner = hashlib.sha256(bytes(b ^ 0x36 for b in key))
        self._outer = hashlib.sha256(bytes(b ^ 0x5C for b in key))

    def __call__(self, patient: Patient) -> str:
        """Return ``patient``'s pseudonym (equal to ``member_pseudonym(secret, patient)``)."""
        inner = self._inner.copy()
        inner.update(_pseudonym_text(patient))
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.hexdigest()


@dataclass(frozen=True, slots=True)
class Authorization:
    """One prior authorization on file (no PHI: the member is a pseudonym)."""

    number: str
    member: str
    policy_id: str
    policy_version: str
    product: str
    effective: date
    expiration: date
    source_kind: str  # "claim" or "request"
    source_id: str
    decided_at: datetime
    revoked_at: datetime | None = None
    revoked_reason: str | None = None  # a RevocationReason code; free text in records written before them

    @property
    def revoked(self) -> bool:
        """Tell whether the authorization was revoked."""
        return self.revoked_at is not None

    def holds(self, day: date) -> bool:
        """Tell whether the authorization pays a fill on ``day``: not revoked and inside its window."""
        return not self.revoked and self.effective <= day <= self.expiration


def encode_authorization(auth: Authorization) -> tuple[bytes, bytes]:
    """Return the store record (key: the PA number, value: JSON ``format`` 1) of ``auth``."""
    value: dict[str, Any] = {
        "format": AUTHORIZATION_FORMAT,
        "pa_number": auth.number,
        "member_pseudonym": auth.member,
        "policy_id": auth.policy_id,
        "policy_version": auth.policy_version,
        "product": auth.product,
        "effective": auth.effective.isoformat(),
        "expiration": auth.expiration.isoformat(),
        "source_kind": auth.source_kind,
        "source_id": auth.source_id,
        "decided_at": auth.decided_at.isoformat(),
        "revoked_at": None if auth.revoked_at is None else auth.revoked_at.isoformat(),
        "revoked_reason": auth.revoked_reason,
    }
    return auth.number.encode(), json.dumps(value, separators=(",", ":")).encode()


def decode_authorization(key: bytes | None, value: bytes | None) -> Authorization:
    """Return the authorization of one store record; raise ``BadAuthorization`` when it is unreadable."""
    if key is None or value is None:
        raise BadAuthorization("a store record needs a key and a value (authorizations are never deleted)")
    try:
        body: dict[str, Any] = json.loads(value)
        _check_body(body, key)
        revoked_at = body.get("revoked_at")
        return Authorization(
            number=str(body["pa_number"]),
            member=str(body["member_pseudonym"]),
            # Shared by many authorizations: one string object each (a 1M table saves ~200 MB).
            policy_id=sys.intern(str(body["policy_id"])),
            policy_version=sys.intern(str(body["policy_version"])),
            product=sys.intern(str(body["product"])),
            effective=date.fromisoformat(body["effective"]),
            expiration=date.fromisoformat(body["expiration"]),
            source_kind=sys.intern(str(body["source_kind"])),
            source_id=str(body["source_id"]),
            decided_at=datetime.fromisoformat(body["decided_at"]),
            revoked_at=None if revoked_at is None else datetime.fromisoformat(revoked_at),
            revoked_reason=body.get("revoked_reason"),
        )
    except BadAuthorization:
        raise
    except (ValueError, KeyError, TypeError, AttributeError, UnicodeDecodeError) as exc:
        raise BadAuthorization(f"unreadable store record ({type(exc).__name__})") from None


def _check_body(body: dict[str, Any], key: bytes) -> None:
    if body.get("format") != AUTHORIZATION_FORMAT:
        raise BadAuthorization(f"unknown store record format {body.get('format')!r}")
    if body["pa_number"] != key.decode():
        raise BadAuthorization("the value's PA number differs from the key")


def revoked(auth: Authorization, at: datetime, reason: RevocationReason) -> Authorization:
    """Return ``auth`` revoked at ``at`` for ``reason`` (stored as its code)."""
    return replace(auth, revoked_at=at, revoked_reason=reason.value)
