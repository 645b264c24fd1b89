"""A prior-authorization policy loaded from its JSON data file, validated once and compiled for fast use."""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass, field
from enum import StrEnum
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from worker.contracts.codes import ProductCodeSystem, ProductReading
from worker.contracts.model import ProductMatch
from worker.errors import ConfigError
from worker.lru import LruMemo
from worker.policy.criteria import DiseaseStageRule, SpecialistRule
from worker.policy.diagnoses import CodeFamily, DiagnosisCodes, normalise_code
from worker.policy.ndc import hcpcs_code, ndc_candidates, product_key

if TYPE_CHECKING:
    import os
    from collections.abc import Mapping

    from worker.contracts.model import Product

__all__ = [
    "DEFAULT_POLICY_REF",
    "Policy",
    "ProductScope",
    "catalog_policy",
    "catalog_refs",
    "default_policy",
    "load_policy",
]

DEFAULT_POLICY_REF = "IXEMPRA-PA/2020.09-3"
"""The catalog entry ``default_policy`` loads and the default of ``CLAIMS_POLICY``."""

# A catalog reference: "<policy_id>/<version>", naming worker/policies/<policy_id>/<version>.json.
_REF = re.compile(r"^(?P<id>[A-Z0-9][A-Z0-9-]{0,39})/(?P<version>[0-9A-Za-z][0-9A-Za-z.\-]{0,39})$")


class ProductScope(StrEnum):
    """Whether a claim's product is the policy's: matched, identified as another product, or unknown."""

    MATCHED = "MATCHED"
    OTHER_PRODUCT = "OTHER_PRODUCT"
    UNIDENTIFIED = "UNIDENTIFIED"


_MEMO_LIMIT = 65_536  # distinct product IDs remembered; past it, the least recently used is forgotten

_DOC = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=True)

_Text = Annotated[str, Field(min_length=1, max_length=500)]
_Notes = tuple[_Text, ...]
_Taxonomy = Annotated[str, Field(pattern=r"^[0-9A-Z]{9}X$")]
_CodePrefix = Annotated[str, Field(pattern=r"^[A-Z][0-9A-Z]{0,2}(\.?[0-9A-Z]{1,4})?$")]
_Prefixes = tuple[_CodePrefix, ...]
_TwoChar = Annotated[str, Field(pattern=r"^[0-9A-Z]{2}$")]
_Hcpcs = Annotated[str, Field(pattern=r"^[A-V][0-9]{4}$")]


class _ProductDoc(BaseModel):
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
    def _classified_or_not(self) -> _ProductDoc:
        """Refuse a HCPCS code listed both as the product and as not otherwise classified."""
        both = sorted(self.hcpcs_codes.keys() & self.unclassified_hcpcs_codes.keys())
        if both:
            msg = f"HCPCS codes listed both as the product and as unclassified: {', '.join(both)}"
            raise ValueError(msg)
        return self


class _CodesDoc(BaseModel):
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


class _DiseaseCriterionDoc(BaseModel):
    """A "recurrent or metastatic <condition>" criterion."""

    model_config = _DOC

    id: _Text
    kind: Literal["RECURRENT_OR_METASTATIC_DISEASE"]
    clause: _Text
    text: _Text
    condition: _Text
    site: _Text
    diagnosis_qualifier: _TwoChar
    codes: _CodesDoc
    # Readings that changed between catalog versions (issue 23, rule 9); the defaults are the newest.
    other_active_primary: Literal["ASKS", "IGNORED"] = "ASKS"
    history_with_new_primary: Literal["ASKS", "RECURRENCE"] = "ASKS"
    in_situ_attested_advanced: Literal["ASKS", "NOT_MET"] = "ASKS"
    notes: _Notes = ()


class _SpecialistCriterionDoc(BaseModel):
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
    def _disjoint(self) -> _SpecialistCriterionDoc:
        """Refuse a taxonomy listed both as a qualifying specialty and as a named other one."""
        both = sorted(self.specialist_taxonomies.keys() & self.named_other_taxonomies.keys())
        if both:
            msg = f"taxonomies listed both as specialist and as other: {', '.join(both)}"
            raise ValueError(msg)
        return self


class _RejectCodesDoc(BaseModel):
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


class _EditsDoc(BaseModel):
    """Plausibility edits a claim passes before anything is approved or put on file (docs/policy.md)."""

    model_config = _DOC

    timely_filing_days: int = Field(365, ge=1, le=3_650)
    # At most 1: an approval window starts on the date of service and never after submission + a day.
    max_days_after_submission: int = Field(1, ge=0, le=1)
    max_days_supply: int = Field(365, ge=1, le=999)
    notes: _Notes = ()


class _PolicyDoc(BaseModel):
    """The whole policy file."""

    model_config = _DOC

    policy_id: Annotated[str, Field(pattern=r"^[A-Z0-9][A-Z0-9-]{0,39}$")]
    version: Annotated[str, Field(pattern=r"^[0-9A-Za-z][0-9A-Za-z.\-]{0,39}$")]
    title: _Text
    source_document: _Text
    notes: _Notes = ()
    product: _ProductDoc
    criteria: tuple[
        Annotated[_DiseaseCriterionDoc | _SpecialistCriterionDoc, Field(discriminator="kind")], ...
    ] = Field(min_length=1)
    approval_duration_years: int = Field(ge=1, le=10)
    reject_codes: _RejectCodesDoc
    edits: _EditsDoc = _EditsDoc()

    @model_validator(mode="after")
    def _unique_criteria(self) -> _PolicyDoc:
        """Refuse duplicate criterion ids: they name the results in a Decision."""
        ids = [criterion.id for criterion in self.criteria]
        if len(ids) != len(set(ids)):
            msg = f"criterion ids must be unique, got {ids}"
            raise ValueError(msg)
        return self


@dataclass(frozen=True, slots=True, eq=False)
class Policy:
    """A loaded policy: identity, product match set, compiled criteria, approval length, reject codes.

    Build it with ``load_policy`` (or ``default_policy``); every set and prefix tuple is ready to use.
    ``criterion_ids`` and ``reason_codes`` are the closed sets its Decisions can carry (metric labels).
    Compared and hashed by identity: it carries memos, and two loads of one file are two policies.
    """

    policy_id: str
    version: str
    title: str
    source_document: str
    product_name: str
    product_qualifier: str
    ndc_products: Mapping[str, str]
    criteria: tuple[DiseaseStageRule | SpecialistRule, ...]
    criterion_ids: tuple[str, ...]
    reason_codes: tuple[str, ...]
    approval_duration_years: int
    reject_not_approved: str
    reject_missing_diagnosis: str
    reject_in_review: str
    reject_denied: str
    reject_prescriber_not_matched: str
    reject_product_not_identified: str
    hcpcs_qualifier: str | None = None
    hcpcs_codes: Mapping[str, str] = field(default_factory=dict)
    unclassified_hcpcs_codes: frozenset[str] = frozenset()
    unspecified_qualifiers: tuple[str, ...] = ()
    timely_filing_days: int = 365
    max_days_after_submission: int = 1
    max_days_supply: int = 365
    reject_authorization_not_found: str = "3X"
    _product_memo: LruMemo[tuple[str, str], tuple[ProductScope, ProductMatch | None]] = field(
        default_factory=lambda: LruMemo(_MEMO_LIMIT), repr=False, compare=False
    )

    @property
    def ref(self) -> str:
        """The catalog reference of this policy, ``<policy_id>/<version>``."""
        return f"{self.policy_id}/{self.version}"

    def match_product(self, product: Product) -> tuple[ProductScope, ProductMatch | None]:
        """Tell whether the product is the policy's, memoised; the match says what it was read as.

        NDC qualifier: the listed NDCs (any accepted spelling) match, any other NDC is another
        product. HCPCS qualifier: the listed codes match, any other HCPCS code is another product.
        An unspecified qualifier (e.g. 00): the ID is read as an NDC and as a HCPCS code; a listed one
        matches, another well-formed one is another product. Anything else, and a not-otherwise-
        classified HCPCS code (J9999) that may stand for the product, is UNIDENTIFIED: the worker
        cannot tell it is not the policy's product, so it is not waved through.
        """
        key = (product.qualifier, product.product_id)
        memo = self._product_memo
        known = memo.get(key)
        if known is None:
            known = self._match(product.qualifier, product.product_id)
            memo.put(key, known)
        return known

    def _match(self, qualifier: str, product_id: str) -> tuple[ProductScope, ProductMatch | None]:
        as_ndc = qualifier == self.product_qualifier or qualifier in self.unspecified_qualifiers
        as_hcpcs = (
            self.hcpcs_qualifier is not None and qualifier == self.hcpcs_qualifier
        ) or qualifier in self.unspecified_qualifiers
        identified = False
        if as_ndc:
            candidates = ndc_candidates(product_id)
            identified = bool(candidates)
            for ndc11, reading in candidates:
                name = self.ndc_products.get(product_key(ndc11))
                if name is not None:
                    return ProductScope.MATCHED, ProductMatch(
                        code=ndc11, system=ProductCodeSystem.NDC11, reading=reading, name=name
                    )
        if as_hcpcs:
            code = hcpcs_code(product_id)
            if code is not None and code in self.unclassified_hcpcs_codes:
                return ProductScope.UNIDENTIFIED, None
            if code is not None:
                identified = True
                name = self.hcpcs_codes.get(code)
                if name is not None:
                    return ProductScope.MATCHED, ProductMatch(
                        code=code, system=ProductCodeSystem.HCPCS, reading=ProductReading.HCPCS, name=name
                    )
        return (ProductScope.OTHER_PRODUCT if identified else ProductScope.UNIDENTIFIED), None


def _prefixes(values: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(normalise_code(value) for value in values))


def _compile_codes(qualifier: str, codes: _CodesDoc) -> DiagnosisCodes:
    # A code takes its longest matching prefix's family (C79.81 over C79, C80.0 over "C"); equal
    # prefixes go by this order.
    ordered = (
        (CodeFamily.SECONDARY_OF_SITE, codes.secondary_of_site_prefixes),
        (CodeFamily.PRIMARY, codes.primary_prefixes),
        (CodeFamily.HISTORY, codes.history_prefixes),
        (CodeFamily.REGIONAL_NODE, codes.regional_node_prefixes),
        (CodeFamily.DISTANT_SECONDARY, codes.distant_secondary_prefixes),
        (CodeFamily.IN_SITU, codes.in_situ_prefixes),
        (CodeFamily.INFORMATIONAL, codes.informational_prefixes),
        (CodeFamily.UNSPECIFIED_PRIMARY, codes.unspecified_primary_prefixes),
        (CodeFamily.OTHER_MALIGNANT, codes.other_malignant_prefixes),
    )
    return DiagnosisCodes(
        qualifier=qualifier,
        prefixes=tuple((family, _prefixes(values)) for family, values in ordered if values),
    )


def _code_hint(codes: _CodesDoc) -> str:
    """Return a short reminder of which codes show the condition, e.g. "C50* or Z85.3"."""
    return " or ".join([f"{prefix}*" for prefix in codes.primary_prefixes] + list(codes.history_prefixes))


def _with_article(noun: str) -> str:
    """Return the noun with its indefinite article ("an oncologist", "a rheumatologist")."""
    return f"{'an' if noun[:1].lower() in 'aeiou' else 'a'} {noun}"


def _compile(doc: _PolicyDoc) -> Policy:
    criteria: list[DiseaseStageRule | SpecialistRule] = []
    for criterion in doc.criteria:
        if isinstance(criterion, _DiseaseCriterionDoc):
            criteria.append(
                DiseaseStageRule(
                    criterion_id=criterion.id,
                    clause=criterion.clause,
                    condition=criterion.condition,
                    site=criterion.site,
                    codes=_compile_codes(criterion.diagnosis_qualifier, criterion.codes),
                    code_hint=_code_hint(criterion.codes),
                    asks_other_primary=criterion.other_active_primary == "ASKS",
                    asks_history_with_primary=criterion.history_with_new_primary == "ASKS",
                    asks_in_situ_attested=criterion.in_situ_attested_advanced == "ASKS",
                )
            )
        else:
            criteria.append(
                SpecialistRule(
                    criterion_id=criterion.id,
                    clause=criterion.clause,
                    specialist=criterion.specialist,
                    a_specialist=_with_article(criterion.specialist),
                    specialist_taxonomies=MappingProxyType(dict(criterion.specialist_taxonomies)),
                    named_other_taxonomies=MappingProxyType(dict(criterion.named_other_taxonomies)),
                    asks_consultant_under_no=criterion.consultant_under_no == "ASKS",
                    accepts_npi_only_consultant=criterion.npi_only_consultant_under_yes == "ACCEPTED",
                )
            )
    return Policy(
        policy_id=doc.policy_id,
        version=doc.version,
        title=doc.title,
        source_document=doc.source_document,
        product_name=doc.product.name,
        product_qualifier=doc.product.product_qualifier,
        ndc_products=MappingProxyType(
            {key.replace("-", ""): name for key, name in doc.product.ndc_products.items()}
        ),
        criteria=tuple(criteria),
        criterion_ids=tuple(rule.criterion_id for rule in criteria),
        reason_codes=tuple(dict.fromkeys(str(code) for rule in criteria for code in rule.reason_codes)),
        approval_duration_years=doc.approval_duration_years,
        reject_not_approved=doc.reject_codes.not_approved,
        reject_missing_diagnosis=doc.reject_codes.missing_diagnosis,
        reject_in_review=doc.reject_codes.in_review,
        reject_denied=doc.reject_codes.denied,
        reject_prescriber_not_matched=doc.reject_codes.prescriber_not_matched,
        reject_product_not_identified=doc.reject_codes.product_not_identified,
        hcpcs_qualifier=doc.product.hcpcs_qualifier,
        hcpcs_codes=MappingProxyType(dict(doc.product.hcpcs_codes)),
        unclassified_hcpcs_codes=frozenset(doc.product.unclassified_hcpcs_codes),
        unspecified_qualifiers=doc.product.unspecified_qualifiers,
        timely_filing_days=doc.edits.timely_filing_days,
        max_days_after_submission=doc.edits.max_days_after_submission,
        max_days_supply=doc.edits.max_days_supply,
        reject_authorization_not_found=doc.reject_codes.authorization_not_found,
    )


def _parse(text: str, source: str) -> Policy:
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        msg = f"policy file {source} is not valid JSON: line {exc.lineno} column {exc.colno}: {exc.msg}"
        raise ConfigError(msg) from exc
    try:
        doc = _PolicyDoc.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc']) or '<root>'}: {error['msg']}"
            for error in exc.errors(include_url=False)
        )
        msg = f"policy file {source} is invalid: {problems}"
        raise ConfigError(msg) from exc
    return _compile(doc)


def load_policy(path: str | os.PathLike[str]) -> Policy:
    """Read, validate and compile a policy JSON file.

    Takes the file's path and returns the compiled ``Policy``. Raises ``ConfigError`` naming the file
    and every problem (field path and rule) when the file is missing, unreadable, not JSON, or not a
    valid policy.
    """
    source = Path(path)
    try:
        text = source.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        msg = f"policy file {source} cannot be read: {exc.__class__.__name__}"
        raise ConfigError(msg) from exc
    return _parse(text, str(source))


def catalog_refs() -> tuple[str, ...]:
    """Return every ``<policy_id>/<version>`` in the packaged catalog (``worker/policies/``), sorted."""
    root = resources.files("worker.policies")
    refs = [
        f"{folder.name}/{entry.name.removesuffix('.json')}"
        for folder in root.iterdir()
        if folder.is_dir() and _REF.match(f"{folder.name}/x")
        for entry in folder.iterdir()
        if entry.name.endswith(".json")
    ]
    return tuple(sorted(refs))


@functools.cache
def catalog_policy(ref: str) -> Policy:
    """Return the catalog policy ``<policy_id>/<version>`` (``worker/policies/<id>/<version>.json``), cached.

    Raises ``ConfigError`` naming the reference and the catalog's entries when it is malformed or
    absent, or when the file is invalid or names another id or version than its path.
    """
    match = _REF.match(ref)
    if match is None:
        msg = f"policy reference {ref!r} must be <POLICY-ID>/<version>, e.g. {DEFAULT_POLICY_REF}"
        raise ConfigError(msg)
    resource = resources.files("worker.policies").joinpath(match["id"], f"{match['version']}.json")
    try:
        text = resource.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        msg = f"policy {ref} is not in the catalog (known: {', '.join(catalog_refs())})"
        raise ConfigError(msg) from exc
    policy = _parse(text, f"worker.policies/{ref}.json")
    if policy.ref != ref:
        msg = f"policy file worker.policies/{ref}.json declares {policy.ref}"
        raise ConfigError(msg)
    return policy


def default_policy() -> Policy:
    """Return the catalog's default policy (``DEFAULT_POLICY_REF``), loaded once and cached.

    For tools and tests; the worker loads the policy its ``CLAIMS_POLICY`` setting names.
    Raises ``ConfigError`` if the packaged file is missing or invalid.
    """
    return catalog_policy(DEFAULT_POLICY_REF)
