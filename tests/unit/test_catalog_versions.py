"""Each catalog version decides as its own notes say: one table row per note, parametrised over the versions."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from importlib import resources

import pytest

from tests.unit.claims import CONSULTANT_NPI, NPIS, make_claim
from worker.contracts.codes import CriterionStatus, Outcome
from worker.errors import ConfigError
from worker.policy import Facts, ProviderFacts, ProviderStatus, catalog_policy, decide, load_policy

DECIDED_AT = datetime(2025, 3, 11, 8, 15, tzinfo=UTC)
V1, V2, V3 = "IXEMPRA-PA/2020.09-1", "IXEMPRA-PA/2020.09-2", "IXEMPRA-PA/2020.09-3"
VERSIONS = (V1, V2, V3)
MET, NOT_MET, UNKNOWN = CriterionStatus.MET, CriterionStatus.NOT_MET, CriterionStatus.UNKNOWN
INTERNIST = "207R00000X"
ONCOLOGIST = "207RX0202X"


def _notes(ref: str) -> str:
    """Return every note of a catalog entry (top level, product and criteria) as one text."""
    policy_id, version = ref.split("/")
    doc = json.loads((resources.files("worker.policies") / policy_id / f"{version}.json").read_text("utf-8"))
    return " ".join(
        [*doc["notes"], *doc["product"]["notes"], *(n for c in doc["criteria"] for n in c["notes"])]
    )


def _row(note: str, claim_kw: dict, expected: dict, rid: str, facts: Facts | None = None):
    """One note of a version, the claim that shows it and each version's (outcome, criterion, status, reason)."""
    return pytest.param(note, claim_kw, facts or Facts(), expected, id=rid)


# Each row: the note (as written in the version(s) it describes), the claim, and per version what is
# decided: (outcome, criterion id, criterion status, reason code); criterion None for product outcomes.
NOTE_ROWS = [
    _row(
        "Z85.3 history + an active C50 or C77 code, with no attested status, is read as a recurrence",
        {"dx": ("Z85.3", "C50.912")},
        {
            V1: (Outcome.APPROVED, "A", MET, "RECURRENCE_INFERRED_FROM_HISTORY"),
            V2: (Outcome.PENDED, "A", UNKNOWN, "NEW_PRIMARY_OR_RECURRENCE"),
            V3: (Outcome.PENDED, "A", UNKNOWN, "NEW_PRIMARY_OR_RECURRENCE"),
        },
        "Z85.3+C50:v1-recurrence,v2-v3-new-primary-or-recurrence",
    ),
    _row(
        "Z85.3 history + an active C50 or C77 code, with no attested status, is read as a recurrence",
        {"dx": ("Z85.3", "C77.3", "C34.90")},
        {
            V1: (Outcome.APPROVED, "A", MET, "RECURRENCE_INFERRED_FROM_HISTORY"),
            V2: (Outcome.PENDED, "A", UNKNOWN, "HISTORY_WITH_OTHER_ACTIVE_PRIMARY"),
            V3: (Outcome.PENDED, "A", UNKNOWN, "HISTORY_WITH_OTHER_ACTIVE_PRIMARY"),
        },
        "Z85.3+C77.3+C34:v1-recurrence-other-primary-ignored,v2-v3-ask",
    ),
    _row(
        "C77 all regional",
        {"dx": ("C50.911", "C77.5")},
        {
            V1: (Outcome.PENDED, "A", UNKNOWN, "DISEASE_STATUS_NEEDED"),
            V2: (Outcome.APPROVED, "A", MET, "METASTATIC_BY_CODES"),
            V3: (Outcome.APPROVED, "A", MET, "METASTATIC_BY_CODES"),
        },
        "C50+C77.5:v1-regional,v2-v3-distant",
    ),
    _row(
        "NDC qualifier 03 only",
        {"ndc": "J9207", "qualifier": "09"},
        {
            V1: (Outcome.PENDED, None, None, None),
            V2: (Outcome.APPROVED, "A", MET, "METASTATIC_BY_CODES"),
            V3: (Outcome.APPROVED, "A", MET, "METASTATIC_BY_CODES"),
        },
        "J9207-qualifier-09:v1-not-read-so-unidentified,v2-v3-in-scope",
    ),
    _row(
        "NDC qualifier 03 only",
        {"ndc": "70020191001", "qualifier": "00"},
        {
            V1: (Outcome.PENDED, None, None, None),
            V2: (Outcome.APPROVED, "A", MET, "METASTATIC_BY_CODES"),
            V3: (Outcome.APPROVED, "A", MET, "METASTATIC_BY_CODES"),
        },
        "Ixempra-digits-qualifier-00:v1-unidentified,v2-v3-in-scope",
    ),
    _row(
        "Breast code + distant secondary = metastatic by codes, unless EARLY or LOCALLY_ADVANCED is attested",
        {"dx": ("C34.90", "C50.911", "C78.7")},
        {
            V1: (Outcome.APPROVED, "A", MET, "METASTATIC_BY_CODES"),
            V2: (Outcome.PENDED, "A", UNKNOWN, "SECONDARY_ORIGIN_UNCLEAR"),
            V3: (Outcome.PENDED, "A", UNKNOWN, "SECONDARY_ORIGIN_UNCLEAR"),
        },
        "C50+C34+C78.7:v1-metastatic-by-codes,v2-v3-origin-unclear",
    ),
    _row(
        "Breast code + distant secondary = metastatic by codes, unless EARLY or LOCALLY_ADVANCED is attested",
        {"dx": ("Z85.3", "C34.90", "C79.51")},
        {
            V1: (Outcome.APPROVED, "A", MET, "METASTATIC_BY_CODES"),
            V2: (Outcome.PENDED, "A", UNKNOWN, "HISTORY_WITH_OTHER_ACTIVE_PRIMARY"),
            V3: (Outcome.PENDED, "A", UNKNOWN, "HISTORY_WITH_OTHER_ACTIVE_PRIMARY"),
        },
        "Z85.3+C34+C79.51:v1-metastatic-by-codes,v2-v3-history-with-other-primary",
    ),
    _row(
        "Attested RECURRENT or METASTATIC needs a breast cancer code to meet A",
        {"dx": ("D05.11",), "status": "METASTATIC"},
        {
            V1: (Outcome.REFERRED, "A", NOT_MET, "IN_SITU_ONLY"),
            V2: (Outcome.PENDED, "A", UNKNOWN, "ATTESTATION_CONFLICTS_WITH_CODES"),
            V3: (Outcome.PENDED, "A", UNKNOWN, "ATTESTATION_CONFLICTS_WITH_CODES"),
        },
        "D05+METASTATIC:v1-in-situ-not-met,v2-v3-conflict-asks",
    ),
    _row(
        "including C80.1 (primary site unspecified), is a non-breast cancer",
        {"dx": ("C80.1", "C78.7")},
        {
            V1: (Outcome.REFERRED, "A", NOT_MET, "OTHER_PRIMARY_CANCER"),
            V2: (Outcome.REFERRED, "A", NOT_MET, "OTHER_PRIMARY_CANCER"),
            V3: (Outcome.PENDED, "A", UNKNOWN, "PRIMARY_SITE_UNSPECIFIED"),
        },
        "C80.1+C78.7:v1-v2-other-cancer,v3-asks-for-the-primary",
    ),
    _row(
        "C80.1 (primary site unspecified) and C80.2 are a malignancy of unknown primary",
        {"dx": ("C80.1",)},
        {
            V1: (Outcome.REFERRED, "A", NOT_MET, "OTHER_PRIMARY_CANCER"),
            V2: (Outcome.REFERRED, "A", NOT_MET, "OTHER_PRIMARY_CANCER"),
            V3: (Outcome.PENDED, "A", UNKNOWN, "PRIMARY_SITE_UNSPECIFIED"),
        },
        "C80.1-alone:v1-v2-other-cancer,v3-asks",
    ),
    _row(
        "not-otherwise-classified HCPCS codes J9999, J3490 and C9399 may stand for ixabepilone",
        {"ndc": "J9999", "qualifier": "09"},
        {
            V1: (Outcome.PENDED, None, None, None),
            V2: (Outcome.NOT_APPLICABLE, None, None, None),
            V3: (Outcome.PENDED, None, None, None),
        },
        "J9999:v1-qualifier-09-unread,v2-another-product,v3-pends-for-identity",
    ),
    _row(
        "A named consultant without YES is ignored",
        {"taxonomy": INTERNIST, "consult": {"status": "NO", "consultant_taxonomy": ONCOLOGIST}},
        {
            V1: (Outcome.REFERRED, "B", NOT_MET, "PRESCRIBER_NOT_SPECIALIST_NO_CONSULTATION"),
            V2: (Outcome.PENDED, "B", UNKNOWN, "CONSULTATION_CONFLICTS_WITH_CONSULTANT"),
            V3: (Outcome.PENDED, "B", UNKNOWN, "CONSULTATION_CONFLICTS_WITH_CONSULTANT"),
        },
        "NO+oncologist-named:v1-ignored,v2-v3-conflict-asks",
    ),
    _row(
        "a taxonomy-less consultant NPI under YES is accepted as an attested consultation",
        {"taxonomy": INTERNIST, "consult": {"status": "YES", "consultant_npi": CONSULTANT_NPI}},
        {
            V1: (Outcome.APPROVED, "B", MET, "CONSULTATION_ATTESTED"),
            V2: (Outcome.PENDED, "B", UNKNOWN, "CONSULTANT_NOT_RESOLVED"),
            V3: (Outcome.PENDED, "B", UNKNOWN, "CONSULTANT_NOT_RESOLVED"),
        },
        "YES+NPI-only-no-directory:v1-accepted,v2-v3-unresolved",
    ),
    _row(
        "a taxonomy-less consultant NPI under YES is accepted as an attested consultation",
        {"taxonomy": INTERNIST, "consult": {"status": "YES", "consultant_npi": CONSULTANT_NPI}},
        {
            V1: (Outcome.APPROVED, "B", MET, "CONSULTATION_ATTESTED"),
            V2: (Outcome.PENDED, "B", UNKNOWN, "CONSULTANT_NOT_RESOLVED"),
            V3: (Outcome.PENDED, "B", UNKNOWN, "CONSULTANT_NOT_RESOLVED"),
        },
        "YES+NPI-only-directory-active-without-taxonomy:v1-accepted,v2-v3-unresolved",
        Facts(
            prescriber=ProviderFacts(NPIS[0], ProviderStatus.ACTIVE, (INTERNIST,), INTERNIST),
            consultant=ProviderFacts(CONSULTANT_NPI, ProviderStatus.ACTIVE),
            directory_version="d1",
        ),
    ),
]


@pytest.mark.parametrize("ref", VERSIONS)
@pytest.mark.parametrize(("note", "claim_kw", "facts", "expected"), NOTE_ROWS)
def test_each_version_decides_as_its_notes_say(ref, note, claim_kw, facts, expected):
    """The version whose notes state a reading decides that way; the others decide as theirs say."""
    decision = decide(make_claim(**claim_kw), facts, catalog_policy(ref), DECIDED_AT)
    outcome, criterion_id, status, reason = expected[ref]
    assert decision.outcome is outcome
    if criterion_id is None:
        assert decision.criteria == ()
    else:
        (result,) = [c for c in decision.criteria if c.criterion_id == criterion_id]
        assert (result.status, result.reason_code) == (status, reason)
    assert decision.policy_version == ref.split("/")[1]


@pytest.mark.parametrize(("note", "claim_kw", "facts", "expected"), NOTE_ROWS)
def test_the_note_each_row_proves_is_in_a_version_that_decides_so(note, claim_kw, facts, expected):
    """Every row's note is written in some catalog entry, so the table tests what the notes say."""
    assert any(note in _notes(ref) for ref in VERSIONS)


@pytest.mark.parametrize("ref", VERSIONS)
@pytest.mark.parametrize(
    "consultant",
    [
        pytest.param(ProviderFacts(CONSULTANT_NPI, ProviderStatus.NOT_FOUND), id="not-in-directory"),
        pytest.param(ProviderFacts(CONSULTANT_NPI, ProviderStatus.DEACTIVATED), id="deactivated"),
        pytest.param(ProviderFacts(CONSULTANT_NPI, ProviderStatus.ORGANISATION), id="organisation"),
    ],
)
def test_a_consultant_the_directory_refuses_is_never_accepted(ref, consultant):
    """In every version, a consultant NPI the directory finds absent, deactivated or an organisation pends."""
    claim = make_claim(taxonomy=INTERNIST, consult={"status": "YES", "consultant_npi": CONSULTANT_NPI})
    facts = Facts(consultant=consultant, directory_version="d1")
    decision = decide(claim, facts, catalog_policy(ref), DECIDED_AT)
    assert decision.outcome is Outcome.PENDED
    assert decision.criteria[1].reason_code == "CONSULTANT_NOT_RESOLVED"


@pytest.mark.parametrize("ref", VERSIONS)
@pytest.mark.parametrize(
    ("consult", "reason"),
    [
        pytest.param(
            {"status": "YES", "consultant_npi": NPIS[0]}, "CONSULTANT_IS_PRESCRIBER", id="prescriber-own-npi"
        ),
        pytest.param(
            {"status": "YES", "consultant_npi": "1987654320"}, "CONSULTANT_NOT_RESOLVED", id="bad-check-digit"
        ),
    ],
)
def test_identity_floor_holds_in_every_version(ref, consult, reason):
    """An NPI-only consultant that is the prescriber, or fails its check digit, is not accepted even by 2020.09-1."""
    decision = decide(
        make_claim(taxonomy=INTERNIST, consult=consult), Facts(), catalog_policy(ref), DECIDED_AT
    )
    assert decision.outcome is Outcome.PENDED
    assert decision.criteria[1].reason_code == reason


def test_the_default_is_the_newest_version():
    """The default policy is 2020.09-3; the CLAIMS_POLICY default is the dated catalog, whose newest is 2020.09-3."""
    from worker.config.settings import load_settings  # noqa: PLC0415
    from worker.policy import DEFAULT_POLICY_REF, catalog_choice, default_policy  # noqa: PLC0415

    assert DEFAULT_POLICY_REF == V3 == default_policy().ref
    setting = load_settings({"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9"}).policy
    assert setting == "IXEMPRA-PA"
    assert catalog_choice(setting).named is default_policy()


@pytest.mark.parametrize(
    ("where", "field", "value"),
    [
        pytest.param(0, "other_active_primary", "MAYBE", id="disease-reading-not-in-its-set"),
        pytest.param(0, "history_with_new_primary", "RECURRENT", id="history-reading-misspelt"),
        pytest.param(1, "npi_only_consultant_under_yes", True, id="consultant-reading-not-a-word"),
    ],
)
def test_a_version_gated_field_outside_its_set_is_refused(tmp_path, where, field, value):
    """definition.py validates the version-gated readings: anything but their named values is a ConfigError."""
    doc = json.loads(
        (resources.files("worker.policies") / "IXEMPRA-PA" / "2020.09-3.json").read_text("utf-8")
    )
    doc["criteria"][where][field] = value
    path = tmp_path / "policy.json"
    path.write_text(json.dumps(doc), encoding="utf-8")
    with pytest.raises(ConfigError, match=field):
        load_policy(path)


def test_a_hcpcs_code_cannot_be_both_the_product_and_unclassified(tmp_path):
    """Listing J9207 as unclassified too is refused: a code is the product or stands for unknown products."""
    doc = json.loads(
        (resources.files("worker.policies") / "IXEMPRA-PA" / "2020.09-3.json").read_text("utf-8")
    )
    doc["product"]["unclassified_hcpcs_codes"]["J9207"] = "ixabepilone"
    path = tmp_path / "policy.json"
    path.write_text(json.dumps(doc), encoding="utf-8")
    with pytest.raises(ConfigError, match="J9207"):
        load_policy(path)


@pytest.mark.parametrize("ref", [V1, V2])
def test_longest_prefix_reads_every_code_as_the_first_family_did_for_earlier_versions(ref):
    """For 2020.09-1 and -2, every ICD-10-CM code falls in the same family under longest-prefix as under the old first-match order."""
    from worker.contracts import icd10cm  # noqa: PLC0415
    from worker.policy.diagnoses import CodeFamily  # noqa: PLC0415

    codes = next(c for c in catalog_policy(ref).criteria if hasattr(c, "codes")).codes

    def first_match(code: str) -> CodeFamily:
        return next(
            (family for family, prefixes in codes.prefixes if code.startswith(prefixes)), CodeFamily.UNRELATED
        )

    assert [c for c in sorted(icd10cm._CODES) if codes.family(c) is not first_match(c)] == []
