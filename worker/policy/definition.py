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
from typing import TYPE_CHECKING

from pydantic import ValidationError

from worker.contracts.codes import ProductCodeSystem, ProductReading
from worker.contracts.model import ProductMatch
from worker.errors import ConfigError
from worker.lru import LruMemo
from worker.policy.criteria import DiseaseStageRule, SpecialistRule
from worker.policy.diagnoses import CodeFamily, DiagnosisCodes, normalise_code
from worker.policy.document import CodesDoc, DiseaseCriterionDoc, PolicyDoc
from worker.policy.ndc import hcpcs_code, ndc_candidates, product_key

if TYPE_CHECKING:
    import os
    from collections.abc import Mapping
    from datetime import date

    from worker.contracts.model import Product

__all__ = [
    "DEFAULT_POLICY_REF",
    "Continuity",
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


@dataclass(frozen=True, slots=True)
class Continuity:
    """A version's continuity of care: members on therapy keep ``prior_version``'s terms through ``until``."""

    prior_version: str
    on_therapy_days: int
    until: date


_MEMO_LIMIT = 65_536  # distinct product IDs remembered; past it, the least recently used is forgotten


@dataclass(frozen=True, slots=True, eq=False)
class Policy:
    """A loaded policy: identity, product match set, compiled criteria, approval length, reject codes.

    Build it with ``load_policy`` (or ``default_policy``); every set and prefix tuple is ready to use.
    ``criterion_ids`` and ``reason_codes`` are the closed sets its Decisions can carry (metric labels).
    Compared and hashed by identity: it carries memos, and two loads of one file are two policies.
    """

    policy_id: str
    version: str
    effective_from: date
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
    effective_until: date | None = None
    review_date: date | None = None
    change_summary: str | None = None
    continuity: Continuity | None = None
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


def _compile_codes(qualifier: str, codes: CodesDoc) -> DiagnosisCodes:
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


def _code_hint(codes: CodesDoc) -> str:
    """Return a short reminder of which codes show the condition, e.g. "C50* or Z85.3"."""
    return " or ".join([f"{prefix}*" for prefix in codes.primary_prefixes] + list(codes.history_prefixes))


def _with_article(noun: str) -> str:
    """Return the noun with its indefinite article ("an oncologist", "a rheumatologist")."""
    return f"{'an' if noun[:1].lower() in 'aeiou' else 'a'} {noun}"


def _compile(doc: PolicyDoc) -> Policy:
    criteria: list[DiseaseStageRule | SpecialistRule] = []
    for criterion in doc.criteria:
        if isinstance(criterion, DiseaseCriterionDoc):
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
        effective_from=doc.effective_from,
        effective_until=doc.effective_until,
        review_date=doc.review_date,
        change_summary=doc.change_summary,
        continuity=None
        if doc.continuity is None
        else Continuity(doc.continuity.prior_version, doc.continuity.on_therapy_days, doc.continuity.until),
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
        doc = PolicyDoc.model_validate(raw)
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
