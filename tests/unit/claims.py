"""Test builders for policy tests: ``make_claim(**overrides)`` starts from a valid, approvable Ixempra claim."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from worker.contracts.model import Claim

if TYPE_CHECKING:
    from datetime import date

__all__ = ["CONSULTANT_NPI", "NPIS", "make_claim"]

# Valid NPIs (Luhn with the 80840 prefix; checked by worker.contracts.model.npi_is_valid). Synthetic, not issued.
NPIS = ("1234567893", "1987654328", "1111111112", "2222222228", "1555555550", "1333333338")
CONSULTANT_NPI = "1987654328"

_UNSET: Any = object()


def make_claim(
    *,
    dx: tuple[str | tuple[str, str], ...] = ("C50.911", "C78.7"),
    taxonomy: str | None = "207RX0202X",
    status: str | None = None,
    consult: dict[str, Any] | None = None,
    ndc: str = "70020-1910-01",
    qualifier: str = "03",
    tx: str = "B1",
    dos: date | str = "2025-03-10",
    attestation: Any = _UNSET,
    **fields: Any,
) -> Claim:
    """Build a validated claim: metastatic breast cancer by codes, oncologist prescriber, Ixempra 15 mg.

    ``dx`` items are ICD-10 codes (qualifier 02) or ``(code, qualifier)`` pairs. ``status`` and
    ``consult`` build the attestation (none when both are None) unless ``attestation`` is given.
    Any other keyword replaces that top-level field of the raw claim.
    """
    if attestation is _UNSET:
        attestation = None
        if status is not None or consult is not None:
            attestation = {"disease_status": status or "UNKNOWN", "consultation": consult or {}}
    raw: dict[str, Any] = {
        "event_id": "evt-0001",
        # Submitted on its date of service, as a pharmacy does (the plausibility edits compare the two).
        "event_time": f"{dos if isinstance(dos, str) else dos.isoformat()}T09:30:00Z",
        "transaction_code": tx,
        "claim_id": "clm-0001",
        "original_claim_id": None if tx == "B1" else "clm-0000",
        "service_provider_id": "1234567893",
        "prescription_reference_number": "000123",
        "fill_number": 0,
        "date_of_service": dos,
        "patient": {"member_id": "SYN-MEMBER", "last_name": "SYNTHETIC", "date_of_birth": "1970-01-01"},
        "product": {"product_id": ndc, "qualifier": qualifier},
        "quantity": 1,
        "days_supply": 21,
        "diagnoses": [
            {"code": item, "qualifier": "02"}
            if isinstance(item, str)
            else {"code": item[0], "qualifier": item[1]}
            for item in dx
        ],
        "prescriber": {"npi": NPIS[0], "taxonomy": taxonomy},
        "attestation": attestation,
    }
    raw.update(fields)
    return Claim.model_validate(raw)
