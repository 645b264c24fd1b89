"""Validated claim and decision types: the vocabulary shared by the codec, the policy and the pipeline.

Field names follow NCPDP Telecommunication D.0 where one exists (see docs/policy.md §4).
PHI (member id, names, date of birth) lives only in ``Patient``, whose fields are hidden from
``repr`` and whose validation errors never carry input values (``hide_input_in_errors``).
"""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Annotated

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ModelWrapValidatorHandler,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from worker.contracts.codes import (
    CriterionStatus,
    DecisionSource,
    DiseaseStatus,
    InformationNeed,
    Outcome,
    ProductCodeSystem,
    ProductReading,
    ReasonCode,
    Recommendation,
    TransactionCode,
    TriState,
)
from worker.contracts.icd10cm import ICD10_QUALIFIER, code_exists, is_billable
from worker.contracts.identifiers import IDENTIFIER_PATTERN

__all__ = [
    "Claim",
    "ClinicalAttestation",
    "Consultation",
    "CriterionResult",
    "Decision",
    "Diagnosis",
    "Patient",
    "Prescriber",
    "Product",
    "ProductMatch",
    "Reject",
    "npi_is_valid",
]

_FROZEN = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)

# NUCC taxonomy codes are 10 characters: 9 alphanumerics and a closing "X" (docs/policy.md §3).
_TAXONOMY = r"^[0-9A-Z]{9}X$"
# ICD-10-CM as sent on claims: letter, digit, alnum, then up to 4 more, dot optional (docs/policy.md §2).
_ICD10 = re.compile(r"^[A-Z][0-9][0-9A-Z](\.?[0-9A-Z]{1,4})?$")


def npi_is_valid(npi: str) -> bool:
    """Tell whether a 10-digit NPI passes the Luhn check with the 80840 prefix (docs/policy.md §5)."""
    if len(npi) != 10 or not npi.isdigit() or npi[0] not in "12":  # noqa: PLR2004 - NPI length
        return False
    total = 24  # the constant that stands for the "80840" prefix
    for i, ch in enumerate(reversed(npi[:-1])):
        d = int(ch)
        if i % 2 == 0:
            d *= 2
            d = d - 9 if d > 9 else d  # noqa: PLR2004 - digit sum of a doubled digit
        total += d
    return (10 - total % 10) % 10 == int(npi[-1])


Npi = Annotated[str, Field(pattern=r"^[12][0-9]{9}$")]
Taxonomy = Annotated[str, Field(pattern=_TAXONOMY)]
# An identifier a result, a key or an operator's terminal shows: printable text (contracts/identifiers.py),
# checked by pydantic-core in Rust, so a clean claim pays no Python call for it.
Identifier = Annotated[str, Field(pattern=IDENTIFIER_PATTERN)]


class Patient(BaseModel):
    """Patient identifiers as the claim carries them. All PHI: decoded, never logged or published."""

    model_config = _FROZEN

    member_id: str = Field(min_length=1, max_length=20, repr=False)
    first_name: str | None = Field(default=None, max_length=35, repr=False)
    last_name: str = Field(min_length=1, max_length=35, repr=False)
    date_of_birth: date = Field(repr=False)


class Product(BaseModel):
    """Product/Service ID (407-D7) and its qualifier (436-E1; 03 = NDC)."""

    model_config = _FROZEN

    product_id: str = Field(min_length=1, max_length=19)
    qualifier: str = Field(pattern=r"^[0-9A-Z]{2}$")

    # "wrap", not "after": an after-validator runs even when an instance is passed in, and the codec
    # passes remembered instances (``contracts.parts``) in place of their raw fields.
    @model_validator(mode="wrap")
    @classmethod
    def _ndc_shape(cls, data: object, handler: ModelWrapValidatorHandler[Product]) -> Product:
        """Require an NDC (qualifier 03) to be 10 or 11 digits, optionally hyphenated."""
        if type(data) is cls:
            return data
        product = handler(data)
        if product.qualifier == "03":
            digits = product.product_id.replace("-", "")
            if not digits.isdigit() or len(digits) not in (10, 11):
                raise PydanticCustomError(
                    "ndc_format", "product_id with qualifier 03 must be a 10- or 11-digit NDC"
                )
        return product


class Diagnosis(BaseModel):
    """Diagnosis Code (424-DO) and qualifier (492-WE; 02 = ICD-10)."""

    model_config = _FROZEN

    code: str = Field(min_length=1, max_length=15)
    qualifier: str = Field(pattern=r"^[0-9]{2}$")

    @field_validator("code")
    @classmethod
    def _upper(cls, value: str) -> str:
        return value.strip().upper()

    @model_validator(mode="wrap")
    @classmethod
    def _icd10_shape(cls, data: object, handler: ModelWrapValidatorHandler[Diagnosis]) -> Diagnosis:
        """Require an ICD-10 code (qualifier 02) to be one of ICD-10-CM (an instance passed in was checked).

        The shape first (cheap, and a clearer rule name), then the code set of ``icd10cm.RELEASE``:
        a code that exists in no category of it (C5O.911, letter O for zero) or a category that is
        further subdivided (C50, C50.9: not coded to its full length) is M/I (reject 39).
        """
        if type(data) is cls:
            return data
        diagnosis = handler(data)
        if diagnosis.qualifier == ICD10_QUALIFIER:
            if not _ICD10.match(diagnosis.code):
                raise PydanticCustomError("icd10_format", "code with qualifier 02 must be an ICD-10 code")
            if not code_exists(diagnosis.code):
                raise PydanticCustomError("icd10_unknown", "code with qualifier 02 is not an ICD-10-CM code")
            if not is_billable(diagnosis.code):
                raise PydanticCustomError(
                    "icd10_incomplete", "code with qualifier 02 is an ICD-10-CM category, not a complete code"
                )
        return diagnosis


class Prescriber(BaseModel):
    """Prescriber ID (411-DB, NPI) and, when known, the prescriber's NUCC taxonomy (specialty)."""

    model_config = _FROZEN

    npi: Npi
    taxonomy: Taxonomy | None = None

    @field_validator("npi")
    @classmethod
    def _luhn(cls, value: str) -> str:
        if not npi_is_valid(value):
            raise PydanticCustomError("npi_check_digit", "npi fails the NPI check digit")
        return value


class Consultation(BaseModel):
    """Whether the drug is prescribed in consultation with an oncologist, and who that is."""

    model_config = _FROZEN

    status: TriState = TriState.UNKNOWN
    consultant_npi: Npi | None = None
    consultant_taxonomy: Taxonomy | None = None


class ClinicalAttestation(BaseModel):
    """What a PA request adds to a claim: attested disease status and oncology consultation."""

    model_config = _FROZEN

    disease_status: DiseaseStatus = DiseaseStatus.UNKNOWN
    consultation: Consultation = Consultation()


class Claim(BaseModel):
    """A validated pharmacy claim event (NCPDP D.0 vocabulary)."""

    model_config = _FROZEN

    event_id: Identifier = Field(min_length=1, max_length=64)
    event_time: datetime
    transaction_code: TransactionCode
    claim_id: Identifier = Field(min_length=1, max_length=64)
    original_claim_id: Identifier | None = Field(default=None, min_length=1, max_length=64)
    service_provider_id: Identifier = Field(min_length=1, max_length=15)
    prescription_reference_number: Identifier = Field(min_length=1, max_length=12)
    fill_number: int = Field(ge=0, le=99)
    date_of_service: date
    patient: Patient = Field(repr=False)
    product: Product
    quantity: float = Field(ge=0, allow_inf_nan=False)
    days_supply: int = Field(ge=0, le=999)
    diagnoses: tuple[Diagnosis, ...] = ()
    prescriber: Prescriber
    attestation: ClinicalAttestation | None = None
    prior_authorization_number: str | None = Field(default=None, max_length=11)
    # v2 of the claim schema: Prior Authorization Type Code (461-EU).
    prior_authorization_type_code: str | None = Field(default=None, max_length=2)

    @model_validator(mode="after")
    def _original_claim_for_b2_b3(self) -> Claim:
        """Require a reversal or rebill to name the claim it reverses or rebills."""
        if self.transaction_code != TransactionCode.BILLING and self.original_claim_id is None:
            raise PydanticCustomError(
                "original_claim_id_required", "original_claim_id is required for B2 and B3"
            )
        return self


class CriterionResult(BaseModel):
    """One evaluated policy criterion: its status, the evidence that decided it, why, and what it needs."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    criterion_id: str
    status: CriterionStatus
    reason_code: ReasonCode
    evidence: tuple[str, ...] = ()
    explanation: str
    needs: tuple[InformationNeed, ...] = ()


class ProductMatch(BaseModel):
    """The policy product a claim's Product/Service ID matched: normalised code and how it was read."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    code: str
    system: ProductCodeSystem
    reading: ProductReading
    name: str


class Reject(BaseModel):
    """One NCPDP reject (511-FB) with its 546-4F occurrence (1-based, repeating fields) and field path."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    code: str = Field(pattern=r"^[0-9A-Z]{2,3}$")
    occurrence: int | None = Field(default=None, ge=1)
    field: str | None = None


class Decision(BaseModel):
    """The policy's answer for one claim. Carries no PHI by construction.

    ``rejects`` are the NCPDP reject codes for the pharmacy (``reject_codes`` lists just the codes);
    ``needs`` is what a PENDED claim waits for; ``reference_versions`` names every reference data
    set (and its version) the decision read, e.g. ``{"prescriber-directory": "2025-03-01"}``.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    outcome: Outcome
    criteria: tuple[CriterionResult, ...] = ()
    rejects: tuple[Reject, ...] = ()
    authorization_effective: date | None = None
    authorization_expiration: date | None = None
    authorization_number: str | None = None
    matched_product: ProductMatch | None = None
    needs: tuple[InformationNeed, ...] = ()
    recommendation: Recommendation | None = None
    decision_source: DecisionSource = DecisionSource.AUTOMATED_RULE
    source_criteria: tuple[str, ...] = ()
    reference_versions: tuple[tuple[str, str], ...] = ()
    policy_id: str
    policy_version: str
    decided_at: datetime
    summary: str

    @property
    def reject_codes(self) -> tuple[str, ...]:
        """The NCPDP reject codes alone, in order."""
        return tuple(reject.code for reject in self.rejects)
