"""The schema of a policy file: pydantic models that validate a catalog JSON document before compiling."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = [
    "CodesDoc",
    "ContinuityDoc",
    "DiseaseCriterionDoc",
    "EditsDoc",
    "PolicyDoc",
    "ProductDoc",
    "RejectCodesDoc",
    "SpecialistCriterionDoc",
]

_DOC = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=True)

_Text = Annotated[str, Field(min_length=1, max_length=500)]
_Notes = tuple[_Text, ...]
_Taxonomy = Annotated[str, Field(pattern=r"^[0-9A-Z]{9}X$")]
_CodePrefix = Annotated[str, Field(pattern=r"^[A-Z][0-9A-Z]{0,2}(\.?[0-9A-Z]{1,4})?$")]
_Prefixes = tuple[_CodePrefix, ...]
_TwoChar = Annotated[str, Field(pattern=r"^[0-9A-Z]{2}$")]
_Hcpcs = Annotated[str, Field(pattern=r"^[A-V][0-9]{4}$")]


class ProductDoc(BaseModel):
    """The ``product`` section: which claims the policy applies to."""

    model_config = _DOC

    name: _Text
    product_qualifier: _TwoChar
    ndc_products: dict[Annotated[str, Field(pattern=r"^[0-9]{5}-[0-9]{4}$")], _Text] = Field(min_length=1)
    hcpcs_qualifier: _TwoChar | None = None
    hcpcs_codes: dict[_Hcpcs, _Text] = Field(default_factory=dict)
    # Not-otherwise-classified codes (J9999): the product may be the policy's, so it pends for its identity.
    unclassified_hcpcs_codes: dict[_Hcpcs, _Text] = Field(default_factory=dict)
    unspecified_qualifiers: tuple[_TwoChar, ...] = ()
    notes: _Notes = ()

    @model_validator(mode="after")
    def _classified_or_not(self) -> ProductDoc:
        """Refuse a HCPCS code listed both as the product and as not otherwise classified."""
        both = sorted(self.hcpcs_codes.keys() & self.unclassified_hcpcs_codes.keys())
        if both:
            msg = f"HCPCS codes listed both as the product and as unclassified: {', '.join(both)}"
            raise ValueError(msg)
        return self


class CodesDoc(BaseModel):
    """ICD-10 code families of a disease criterion (dots optional; a full code is its own prefix)."""

    model_config = _DOC

    primary_prefixes: _Prefixes = Field(min_length=1)
    history_prefixes: _Prefixes = ()
    regional_node_prefixes: _Prefixes = ()
    distant_secondary_prefixes: _Prefixes = Field(min_length=1)
    secondary_of_site_prefixes: _Prefixes = ()
    in_situ_prefixes: _Prefixes = ()
    informational_prefixes: _Prefixes = ()
    unspecified_primary_prefixes: _Prefixes = ()
    other_malignant_prefixes: _Prefixes = ()


class DiseaseCriterionDoc(BaseModel):
    """A "recurrent or metastatic <condition>" criterion."""

    model_config = _DOC

    id: _Text
    kind: Literal["RECURRENT_OR_METASTATIC_DISEASE"]
    clause: _Text
    text: _Text
    condition: _Text
    site: _Text
    diagnosis_qualifier: _TwoChar
    codes: CodesDoc
    # Readings that changed between catalog versions (issue 23, rule 9); the defaults are the newest.
    other_active_primary: Literal["ASKS", "IGNORED"] = "ASKS"
    history_with_new_primary: Literal["ASKS", "RECURRENCE"] = "ASKS"
    in_situ_attested_advanced: Literal["ASKS", "NOT_MET"] = "ASKS"
    notes: _Notes = ()


class SpecialistCriterionDoc(BaseModel):
    """A "prescribed by or in consultation with a <specialist>" criterion."""

    model_config = _DOC

    id: _Text
    kind: Literal["PRESCRIBED_BY_OR_WITH_SPECIALIST"]
    clause: _Text
    text: _Text
    specialist: _Text
    specialist_taxonomies: dict[_Taxonomy, _Text] = Field(min_length=1)
    named_other_taxonomies: dict[_Taxonomy, _Text] = Field(default_factory=dict)
    # Readings that changed between catalog versions (issue 23, rule 9); the defaults are the newest.
    consultant_under_no: Literal["ASKS", "IGNORED"] = "ASKS"
    npi_only_consultant_under_yes: Literal["ASKS", "ACCEPTED"] = "ASKS"
    notes: _Notes = ()

    @model_validator(mode="after")
    def _disjoint(self) -> SpecialistCriterionDoc:
        """Refuse a taxonomy listed both as a qualifying specialty and as a named other one."""
        both = sorted(self.specialist_taxonomies.keys() & self.named_other_taxonomies.keys())
        if both:
            msg = f"taxonomies listed both as specialist and as other: {', '.join(both)}"
            raise ValueError(msg)
        return self


class RejectCodesDoc(BaseModel):
    """NCPDP reject codes (511-FB) a non-approval carries."""

    model_config = _DOC

    not_approved: _TwoChar
    missing_diagnosis: _TwoChar
    in_review: _TwoChar
    denied: _TwoChar
    prescriber_not_matched: _TwoChar
    product_not_identified: _TwoChar
    # 3X "Authorization Number Not Found" (NCPDP 511-FB): a quoted 462-EV that is not on file.
    authorization_not_found: _TwoChar = "3X"


class EditsDoc(BaseModel):
    """Plausibility edits a claim passes before anything is approved or put on file (docs/policy.md)."""

    model_config = _DOC

    timely_filing_days: int = Field(365, ge=1, le=3_650)
    # At most 1: an approval window starts on the date of service and never after submission + a day.
    max_days_after_submission: int = Field(1, ge=0, le=1)
    max_days_supply: int = Field(365, ge=1, le=999)
    notes: _Notes = ()


class ContinuityDoc(BaseModel):
    """Continuity of care a version declares: members already on therapy keep a prior version's terms."""

    model_config = _DOC

    prior_version: Annotated[str, Field(pattern=r"^[0-9A-Za-z][0-9A-Za-z.\-]{0,39}$")]
    # On therapy: an authorization of the member's for this policy held a day within these days before
    # the date of service (the store records approvals, not each fill).
    on_therapy_days: int = Field(ge=1, le=365)
    until: date  # the last date of service decided under the prior version's terms
    notes: _Notes = ()


class PolicyDoc(BaseModel):
    """The whole policy file."""

    model_config = _DOC

    policy_id: Annotated[str, Field(pattern=r"^[A-Z0-9][A-Z0-9-]{0,39}$")]
    version: Annotated[str, Field(pattern=r"^[0-9A-Za-z][0-9A-Za-z.\-]{0,39}$")]
    # Effective dating (issue 28): first and last date of service the version decides (inclusive);
    # effective_until omitted = until the next version of the policy id starts (worker.policy.catalog).
    effective_from: date
    effective_until: date | None = None
    review_date: date | None = None
    change_summary: _Text | None = None
    continuity: ContinuityDoc | None = None
    title: _Text
    source_document: _Text
    notes: _Notes = ()
    product: ProductDoc
    criteria: tuple[
        Annotated[DiseaseCriterionDoc | SpecialistCriterionDoc, Field(discriminator="kind")], ...
    ] = Field(min_length=1)
    approval_duration_years: int = Field(ge=1, le=10)
    reject_codes: RejectCodesDoc
    edits: EditsDoc = EditsDoc()

    @model_validator(mode="after")
    def _dates_in_order(self) -> PolicyDoc:
        """Refuse a version that ends before it starts."""
        if self.effective_until is not None and self.effective_until < self.effective_from:
            msg = f"effective_until {self.effective_until} is before effective_from {self.effective_from}"
            raise ValueError(msg)
        continuity = self.continuity
        if continuity is not None and continuity.until < self.effective_from:
            msg = f"continuity.until {continuity.until} is before effective_from {self.effective_from}"
            raise ValueError(msg)
        if continuity is not None and continuity.prior_version == self.version:
            msg = "continuity.prior_version names this version itself"
            raise ValueError(msg)
        return self

    @model_validator(mode="after")
    def _unique_criteria(self) -> PolicyDoc:
        """Refuse duplicate criterion ids: they name the results in a Decision."""
        ids = [criterion.id for criterion in self.criteria]
        if len(ids) != len(set(ids)):
            msg = f"criterion ids must be unique, got {ids}"
            raise ValueError(msg)
        return self
