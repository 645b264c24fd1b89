"""Obviously synthetic sample claims, PA requests and poison records for demos, ``seed-samples`` and tests.

Every person here is fake: members are ``SYNTH0001``..., every last name is ``TEST``, and the NPIs
are made-up numbers that merely pass the check digit. The products, diagnosis codes and taxonomies
are real so that the policy sees realistic input (docs/policy.md §1-3).

Samples are dated relative to the moment they are produced (``now``, default the wall clock), so a demo
shows current approval windows and passes the plausibility edits (issue 23, rule 3): the event time is
``now`` (whole seconds, UTC), the first fills were served ``SERVICE_DAYS_BEFORE`` days before it (B2
and B3 name that same date of service), the demo's later fill and PA request are for the day itself,
and every member is ``MEMBER_AGE_YEARS`` old. The same ``now`` gives the same samples.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any, NamedTuple

from worker.contracts.codec import SINGLE_OBJECT_MARKER, Codec
from worker.contracts.model import Claim

__all__ = [
    "CAPECITABINE_NDC",
    "DEMO_REQUEST_ID",
    "IXEMPRA_15MG_NDC",
    "IXEMPRA_45MG_NDC_HYPHENATED",
    "MEMBER_AGE_YEARS",
    "SERVICE_DAYS_BEFORE",
    "Sample",
    "demo_fills",
    "demo_request",
    "directory_samples",
    "poison_records",
    "sample_claims",
    "sample_records",
]

IXEMPRA_15MG_NDC = "70020191001"
IXEMPRA_45MG_NDC_HYPHENATED = "70020-1911-01"
CAPECITABINE_NDC = "00093747489"  # look-alike that must not match (docs/policy.md §1)

_ONCOLOGY = "207RX0202X"  # Medical Oncology
_FAMILY_MEDICINE = "207Q00000X"
# Made-up NPIs that pass the Luhn check with the 80840 prefix (worker.contracts.model.npi_is_valid).
_ONCOLOGIST_NPI = "1234567893"
_FAMILY_PHYSICIAN_NPI = "1987654328"
_CONSULTANT_NPI = "1555000011"
_PHARMACY_NPI = "1666000025"
_BAD_CHECK_DIGIT_NPI = "1234567890"

SERVICE_DAYS_BEFORE = 2
"""Days from a sample first fill's date of service to its submission (a few: well inside timely filing)."""
MEMBER_AGE_YEARS = 55
"""How old every sample member is in the year of ``now`` (born 15 June): an adult, born before any fill."""
DEMO_REQUEST_ID = "SYNTH-REQ-0001"
_DEMO_REQUEST_MEMBER = "SYNTHREQ0001"


class _Dates(NamedTuple):
    """The dates of one production of the samples, all derived from its ``now``."""

    event_time: datetime
    date_of_service: date
    date_of_birth: date

    @classmethod
    def at(cls, now: datetime | None) -> _Dates:
        """Return the dates for ``now`` (default the wall clock); ``ValueError`` for a naive ``now``."""
        if now is None:
            now = datetime.now(UTC)
        elif now.tzinfo is None:
            msg = "now must be timezone-aware"
            raise ValueError(msg)
        at = now.astimezone(UTC).replace(
            microsecond=0
        )  # the wire keeps milliseconds: whole seconds read back
        today = at.date()
        return cls(
            at, today - timedelta(days=SERVICE_DAYS_BEFORE), date(today.year - MEMBER_AGE_YEARS, 6, 15)
        )


class Sample(NamedTuple):
    """One labelled sample claim and the claim schema version to write it with (None: the newest)."""

    label: str
    claim: Claim
    schema_version: int | None = None


def _dx(*codes: str) -> list[dict[str, str]]:
    """Return ICD-10 diagnosis entries (qualifier 02) for ``codes``."""
    return [{"code": code, "qualifier": "02"} for code in codes]


def _attestation(status: str, consultation: str = "UNKNOWN", *, consultant: bool = False) -> dict[str, Any]:
    """Return an attestation; ``consultant`` names the synthetic oncologist as the consulted physician."""
    return {
        "disease_status": status,
        "consultation": {
            "status": consultation,
            "consultant_npi": _CONSULTANT_NPI if consultant else None,
            "consultant_taxonomy": _ONCOLOGY if consultant else None,
        },
    }


def _record(dates: _Dates, number: int, **overrides: object) -> dict[str, Any]:
    """Return the record of synthetic claim ``number`` (an Ixempra B1 by an oncologist) with ``overrides``."""
    record: dict[str, Any] = {
        "event_id": f"SYNTH-EVT-{number:04d}",
        "event_time": dates.event_time,
        "transaction_code": "B1",
        "claim_id": f"SYNTH-CLM-{number:04d}",
        "original_claim_id": None,
        "service_provider_id": _PHARMACY_NPI,
        "prescription_reference_number": f"90{number:05d}",
        "fill_number": 0,
        "date_of_service": dates.date_of_service,
        "patient": {
            "member_id": f"SYNTH{number:04d}",
            "first_name": "SAMPLE",
            "last_name": "TEST",
            "date_of_birth": dates.date_of_birth,
        },
        "product": {"product_id": IXEMPRA_15MG_NDC, "qualifier": "03"},
        "quantity": 1.0,
        "days_supply": 21,
        "diagnoses": _dx("C50.911", "C78.7"),
        "prescriber": {"npi": _ONCOLOGIST_NPI, "taxonomy": _ONCOLOGY},
        "attestation": None,
        "prior_authorization_number": None,
        "prior_authorization_type_code": None,
    }
    record.update(overrides)
    return record


_FAMILY_PHYSICIAN = {"npi": _FAMILY_PHYSICIAN_NPI, "taxonomy": _FAMILY_MEDICINE}


def sample_claims(now: datetime | None = None) -> list[Sample]:
    """Return the labelled synthetic sample claims, one per policy path worth showing, dated from ``now``.

    ``approve-v1-writer`` is to be written with claim schema v1, to exercise schema evolution.
    """
    d = _Dates.at(now)
    records = [
        ("approve-codes", _record(d, 1)),
        (
            "approve-attested-recurrent",
            _record(
                d,
                2,
                diagnoses=_dx("C50.912"),
                prescriber=_FAMILY_PHYSICIAN,
                attestation=_attestation("RECURRENT", "YES", consultant=True),
                prior_authorization_number="SYNTHPA0002",
                prior_authorization_type_code="1",
            ),
        ),
        (
            "deny-locally-advanced",
            _record(d, 3, diagnoses=_dx("C50.911"), attestation=_attestation("LOCALLY_ADVANCED")),
        ),
        (
            "deny-non-oncologist-no-consult",
            _record(d, 4, prescriber=_FAMILY_PHYSICIAN, attestation=_attestation("METASTATIC", "NO")),
        ),
        ("deny-metastasis-to-breast", _record(d, 5, diagnoses=_dx("C34.90", "C79.81"))),
        ("pend-no-diagnosis", _record(d, 6, diagnoses=[])),
        ("pend-non-oncologist-consult-unknown", _record(d, 7, prescriber=_FAMILY_PHYSICIAN)),
        (
            "not-applicable-capecitabine",
            _record(
                d,
                8,
                product={"product_id": CAPECITABINE_NDC, "qualifier": "03"},
                quantity=120.0,
                days_supply=30,
            ),
        ),
        (
            "approve-ixempra-45mg-hyphenated",
            _record(d, 9, product={"product_id": IXEMPRA_45MG_NDC_HYPHENATED, "qualifier": "03"}),
        ),
        ("reversal-b2", _record(d, 10, transaction_code="B2", original_claim_id="SYNTH-CLM-0001")),
        (
            "rebill-b3",
            _record(d, 11, transaction_code="B3", original_claim_id="SYNTH-CLM-0001", quantity=2.0),
        ),
        ("approve-v1-writer", _record(d, 12)),
    ]
    old_versions = {"approve-v1-writer": 1}
    return [Sample(label, Claim.model_validate(record), old_versions.get(label)) for label, record in records]


# NPIs of the bundled NPPES sample (deploy/demo/nppes_sample.py) and one it does not list.
_SECONDARY_ONCOLOGY_NPI = "1111111112"  # internal medicine primary, medical oncology secondary
_ONCOLOGY_CLINIC_NPI = "2222222228"  # an organisation (entity type 2)
_DEACTIVATED_NPI = "1444444446"  # deactivated 2024-01-15, before the samples' date of service
_UNLISTED_NPI = "1999999992"  # passes the check digit, not in the sample directory


def directory_samples(now: datetime | None = None) -> list[Sample]:
    """Return sample claims that send no taxonomy, so criterion B is decided through the directory.

    Dated from ``now`` like ``sample_claims``. Meant for a worker with the bundled sample directory
    (``make run``): without one they all pend on B.
    """
    d = _Dates.at(now)
    records = [
        (
            "dir-approve-secondary-oncology",
            _record(d, 21, prescriber={"npi": _SECONDARY_ONCOLOGY_NPI}),
        ),
        (
            "dir-approve-consultant-from-directory",
            _record(
                d,
                22,
                diagnoses=_dx("C50.912"),
                prescriber={"npi": _FAMILY_PHYSICIAN_NPI},
                attestation={
                    "disease_status": "RECURRENT",
                    "consultation": {"status": "YES", "consultant_npi": _CONSULTANT_NPI},
                },
            ),
        ),
        ("dir-organisation-npi", _record(d, 23, prescriber={"npi": _ONCOLOGY_CLINIC_NPI})),
        ("dir-deactivated-npi", _record(d, 24, prescriber={"npi": _DEACTIVATED_NPI})),
        ("dir-unknown-npi", _record(d, 25, prescriber={"npi": _UNLISTED_NPI})),
    ]
    return [Sample(label, Claim.model_validate(record)) for label, record in records]


def demo_request(now: datetime | None = None) -> dict[str, Any]:
    """Return the demo PA request: approvable, for a member of its own, asked at ``now`` to start that day.

    It carries ``approve-codes``'s prescriber, product and diagnoses (metastatic breast cancer).
    """
    d = _Dates.at(now)
    first = Claim.model_validate(_record(d, 1))
    return {
        "request_id": DEMO_REQUEST_ID,
        "requested_at": d.event_time,
        "patient": {**first.patient.model_dump(), "member_id": _DEMO_REQUEST_MEMBER},
        "prescriber": first.prescriber.model_dump(),
        "consultant": None,
        "consultation_status": "UNKNOWN",
        "product": first.product.model_dump(),
        "diagnoses": [dx.model_dump() for dx in first.diagnoses],
        "disease_status": "METASTATIC",
        "requested_start": d.event_time.date(),
    }


def demo_fills(now: datetime | None = None, *, request_member: bool = True) -> list[Claim]:
    """Return later fills without clinical data, submitted at ``now`` and served that day.

    One for the member of sample ``approve-codes`` (``SERVICE_DAYS_BEFORE`` days after its first fill,
    inside that approval's window); with ``request_member``, one for the demo request's member (inside
    the window ``demo_request`` opens that day). Neither sends diagnoses or an attestation: they pay on
    file or not at all.
    """
    d = _Dates.at(now)
    fill = _record(
        d,
        1,
        event_id="SYNTH-EVT-0001-FILL2",
        claim_id="SYNTH-CLM-0001-FILL2",
        fill_number=1,
        date_of_service=d.event_time.date(),
        diagnoses=[],
    )
    fills = [fill]
    if request_member:
        patient = {**fill["patient"], "member_id": _DEMO_REQUEST_MEMBER}
        fills.append(
            {**fill, "claim_id": "SYNTH-CLM-REQ1-FILL", "event_id": "SYNTH-EVT-REQ1-FILL", "patient": patient}
        )
    return [Claim.model_validate(record) for record in fills]


def sample_records(codec: Codec | None = None, now: datetime | None = None) -> list[tuple[str, bytes, bytes]]:
    """Return ``(label, key, value)`` per sample claim dated from ``now``, encoded as a producer sends it.

    The key is the claim id; each claim is written with its sample's schema version.
    """
    codec = codec or Codec()
    return [
        (
            sample.label,
            sample.claim.claim_id.encode(),
            codec.encode_claim(sample.claim, version=sample.schema_version),
        )
        for sample in sample_claims(now)
    ]


def poison_records(
    codec: Codec | None = None, now: datetime | None = None
) -> list[tuple[bytes | None, bytes]]:
    """Return ``(key, value)`` records the worker cannot approve; the key names what is wrong.

    Dead letters: bytes that are not Avro, a truncated claim, an unknown fingerprint. Answered with a
    REJECTED result (a readable claim id, a malformed field): a claim whose NPI fails the check digit
    (reject 25), and a B2 reversal that names no original claim (reject 85).
    """
    codec = codec or Codec()
    d = _Dates.at(now)
    valid = codec.encode_claim(_record(d, 90))
    body = valid[len(SINGLE_OBJECT_MARKER) + 8 :]
    bad_npi = _record(d, 91, prescriber={"npi": _BAD_CHECK_DIGIT_NPI, "taxonomy": _ONCOLOGY})
    return [
        (b"SYNTH-POISON-NOT-AVRO", b"not avro"),
        (b"SYNTH-POISON-TRUNCATED", valid[: len(valid) // 2]),
        (b"SYNTH-POISON-UNKNOWN-FINGERPRINT", SINGLE_OBJECT_MARKER + bytes(8) + body),
        (b"SYNTH-POISON-BAD-NPI", codec.encode_claim(bad_npi)),
        (b"SYNTH-POISON-B2-NO-ORIGINAL", codec.encode_claim(_record(d, 92, transaction_code="B2"))),
    ]
