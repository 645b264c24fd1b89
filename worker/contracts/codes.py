"""The closed code sets of the wire (transaction codes, outcomes, reason codes, statuses), as string enums."""

from __future__ import annotations

from enum import StrEnum

__all__ = [
    "CriterionStatus",
    "DecisionSource",
    "DiseaseStatus",
    "InformationNeed",
    "Outcome",
    "PolicySelection",
    "ProductCodeSystem",
    "ProductReading",
    "ReasonCode",
    "Recommendation",
    "TransactionCode",
    "TriState",
]


class TransactionCode(StrEnum):
    """NCPDP 103-A3: B1 billing, B2 reversal, B3 rebill."""

    BILLING = "B1"
    REVERSAL = "B2"
    REBILL = "B3"


class DiseaseStatus(StrEnum):
    """Disease status attested on a PA request."""

    RECURRENT = "RECURRENT"
    METASTATIC = "METASTATIC"
    LOCALLY_ADVANCED = "LOCALLY_ADVANCED"
    EARLY = "EARLY"
    UNKNOWN = "UNKNOWN"


class TriState(StrEnum):
    """Yes, no, or not known: absence of an answer is not a "no"."""

    YES = "YES"
    NO = "NO"
    UNKNOWN = "UNKNOWN"


class Outcome(StrEnum):
    """What the worker decided for a claim (closed set; result schema v2 ``Outcome``; metric label).

    The worker never denies on its own unless a plan opts in (``CLAIMS_AUTOMATED_DENIALS``): criteria
    not met is REFERRED to clinical review with a deny recommendation; missing information is PENDED
    with the list of what is needed; a decodable claim with a malformed field is REJECTED (M/I codes).
    """

    APPROVED = "APPROVED"
    DENIED = "DENIED"
    PENDED = "PENDED"
    NOT_APPLICABLE = "NOT_APPLICABLE"
    REVERSED = "REVERSED"
    REFERRED = "REFERRED"
    REJECTED = "REJECTED"


class ReasonCode(StrEnum):
    """Why a criterion came out as it did: a closed set of stable codes, safe as metric labels."""

    # Disease criterion (recurrent or metastatic disease).
    METASTATIC_BY_CODES = "METASTATIC_BY_CODES"
    RECURRENCE_INFERRED_FROM_HISTORY = "RECURRENCE_INFERRED_FROM_HISTORY"
    ATTESTED_METASTATIC = "ATTESTED_METASTATIC"
    ATTESTED_RECURRENT = "ATTESTED_RECURRENT"
    ATTESTED_EARLY = "ATTESTED_EARLY"
    ATTESTED_LOCALLY_ADVANCED = "ATTESTED_LOCALLY_ADVANCED"
    OTHER_PRIMARY_CANCER = "OTHER_PRIMARY_CANCER"
    METASTASIS_TO_SITE_ONLY = "METASTASIS_TO_SITE_ONLY"
    IN_SITU_ONLY = "IN_SITU_ONLY"
    ATTESTATION_CONFLICTS_WITH_CODES = "ATTESTATION_CONFLICTS_WITH_CODES"
    DISEASE_STATUS_NEEDED = "DISEASE_STATUS_NEEDED"
    NEW_PRIMARY_OR_RECURRENCE = "NEW_PRIMARY_OR_RECURRENCE"
    HISTORY_WITH_OTHER_ACTIVE_PRIMARY = "HISTORY_WITH_OTHER_ACTIVE_PRIMARY"
    SECONDARY_ORIGIN_UNCLEAR = "SECONDARY_ORIGIN_UNCLEAR"
    PRIMARY_SITE_NOT_SHOWN = "PRIMARY_SITE_NOT_SHOWN"
    PRIMARY_SITE_UNSPECIFIED = "PRIMARY_SITE_UNSPECIFIED"
    DIAGNOSIS_CODE_MISSING = "DIAGNOSIS_CODE_MISSING"
    # Specialist criterion (prescribed by or in consultation with a specialist).
    PRESCRIBER_IS_SPECIALIST = "PRESCRIBER_IS_SPECIALIST"
    CONSULTANT_IS_SPECIALIST = "CONSULTANT_IS_SPECIALIST"
    CONSULTATION_ATTESTED = "CONSULTATION_ATTESTED"
    CONSULTANT_NOT_SPECIALIST = "CONSULTANT_NOT_SPECIALIST"
    CONSULTANT_NOT_RESOLVED = "CONSULTANT_NOT_RESOLVED"
    CONSULTANT_IS_PRESCRIBER = "CONSULTANT_IS_PRESCRIBER"
    CONSULTATION_CONFLICTS_WITH_CONSULTANT = "CONSULTATION_CONFLICTS_WITH_CONSULTANT"
    PRESCRIBER_NOT_SPECIALIST_NO_CONSULTATION = "PRESCRIBER_NOT_SPECIALIST_NO_CONSULTATION"
    PRESCRIBER_NOT_RESOLVED = "PRESCRIBER_NOT_RESOLVED"
    CONSULTANT_NOT_IDENTIFIED = "CONSULTANT_NOT_IDENTIFIED"
    CONSULTATION_STATUS_NEEDED = "CONSULTATION_STATUS_NEEDED"
    PRESCRIBER_SPECIALTY_UNKNOWN = "PRESCRIBER_SPECIALTY_UNKNOWN"
    PRESCRIBER_SPECIALTY_NOT_CONFIRMED = "PRESCRIBER_SPECIALTY_NOT_CONFIRMED"


class InformationNeed(StrEnum):
    """What a PENDED decision asks for (closed set; result schema v2 ``InformationNeed``; metric label)."""

    DISEASE_STATUS = "DISEASE_STATUS"
    DIAGNOSIS_CODE = "DIAGNOSIS_CODE"
    PRIMARY_DIAGNOSIS = "PRIMARY_DIAGNOSIS"
    PRESCRIBER_IDENTITY = "PRESCRIBER_IDENTITY"
    PRESCRIBER_SPECIALTY = "PRESCRIBER_SPECIALTY"
    CONSULTATION_STATUS = "CONSULTATION_STATUS"
    CONSULTANT_IDENTITY = "CONSULTANT_IDENTITY"
    CONSULTANT_SPECIALTY = "CONSULTANT_SPECIALTY"
    PRODUCT_IDENTITY = "PRODUCT_IDENTITY"


class DecisionSource(StrEnum):
    """Which step produced the outcome (closed set; result schema v3 ``DecisionSource``).

    AUTOMATED_RULE: the rule decided finally (approval, not applicable, reversal, opted-in denial).
    ON_FILE: approved against a prior authorization on file (docs/authorizations.md), no criterion
    evaluated; new in result v3 (a v2 reader resolves it to the enum default, AUTOMATED_RULE).
    The others name the step that sent the claim to a person or back to the pharmacy.
    """

    AUTOMATED_RULE = "AUTOMATED_RULE"
    CRITERIA_NOT_MET = "CRITERIA_NOT_MET"
    INFORMATION_MISSING = "INFORMATION_MISSING"
    PRODUCT_NOT_IDENTIFIED = "PRODUCT_NOT_IDENTIFIED"
    FIELD_EDIT = "FIELD_EDIT"
    ON_FILE = "ON_FILE"


class PolicySelection(StrEnum):
    """Why a catalog version decided a claim (closed set; result schema v4 ``PolicySelection``).

    IN_EFFECT: the version in effect on the claim's date of service (``CLAIMS_POLICY`` names a policy
    id, the default). PINNED: ``CLAIMS_POLICY`` or ``replay --policy`` named the version.
    CONTINUITY: continuity of care: paid on file against an authorization issued under another
    version than the date's, or decided under the prior terms a new version declares for members on
    therapy (the result names the version whose terms applied).
    EARLIEST_VERSION: the date of service precedes every version; the earliest decided it.
    """

    IN_EFFECT = "IN_EFFECT"
    PINNED = "PINNED"
    CONTINUITY = "CONTINUITY"
    EARLIEST_VERSION = "EARLIEST_VERSION"


class Recommendation(StrEnum):
    """What the automated rule recommends to the clinical reviewer of a REFERRED claim."""

    APPROVE = "APPROVE"
    DENY = "DENY"


class ProductCodeSystem(StrEnum):
    """The code system of a matched product."""

    NDC11 = "NDC11"
    HCPCS = "HCPCS"


class ProductReading(StrEnum):
    """How a submitted Product/Service ID (407-D7, with its 436-E1 qualifier) was read."""

    NDC_11_DIGIT = "NDC_11_DIGIT"
    NDC_5_4_2_HYPHENATED = "NDC_5_4_2_HYPHENATED"
    NDC_4_4_2_HYPHENATED = "NDC_4_4_2_HYPHENATED"
    NDC_5_3_2_HYPHENATED = "NDC_5_3_2_HYPHENATED"
    NDC_5_4_1_HYPHENATED = "NDC_5_4_1_HYPHENATED"
    NDC_10_DIGIT_AS_4_4_2 = "NDC_10_DIGIT_AS_4_4_2"
    NDC_10_DIGIT_AS_5_3_2 = "NDC_10_DIGIT_AS_5_3_2"
    NDC_10_DIGIT_AS_5_4_1 = "NDC_10_DIGIT_AS_5_4_1"
    HCPCS = "HCPCS"


class CriterionStatus(StrEnum):
    """How one policy criterion evaluated."""

    MET = "MET"
    NOT_MET = "NOT_MET"
    UNKNOWN = "UNKNOWN"
