"""How criterion 1.B reads one person's specialty: from the taxonomy on the claim or the directory."""

from __future__ import annotations

from typing import TYPE_CHECKING

from worker.contracts.model import npi_is_valid
from worker.policy.facts import Facts, ProviderFacts, ProviderStatus

if TYPE_CHECKING:
    from worker.contracts.model import Claim
    from worker.policy.criteria.specialist import SpecialistRule

__all__ = ["Specialty", "consultant_specialty", "npi_only_consultant", "prescriber_specialty"]


class Specialty:
    """What the rule knows of one person's specialty (prescriber or consultant)."""

    __slots__ = ("disputed", "evidence", "is_specialist", "problem", "shown")

    def __init__(
        self,
        is_specialist: bool | None,
        evidence: str,
        problem: str | None = None,
        shown: str | None = None,
        *,
        disputed: bool = False,
    ) -> None:
        self.is_specialist = is_specialist  # None: not known
        self.evidence = evidence  # codes only, for the evidence list
        self.problem = problem  # why the NPI does not resolve to an active individual, if it does not
        self.shown = shown or evidence  # the same with taxonomy names, for explanations
        self.disputed = disputed  # a sent specialty the directory does not confirm


def _source(provider: ProviderFacts, facts: Facts) -> str:
    version = provider.directory_version or facts.directory_version or "unversioned"
    return f"source=directory {version}"


_PROBLEMS = {
    ProviderStatus.NOT_FOUND: "is not in the directory",
    ProviderStatus.DEACTIVATED: "is deactivated on the date of service",
    ProviderStatus.ORGANISATION: "is an organisation (entity type 2), not a prescriber",
}


def _from_claim(rule: SpecialistRule, role: str, taxonomy: str) -> Specialty:
    """Read a taxonomy sent on the claim, with no directory to check it against (self-reported)."""
    return Specialty(
        taxonomy in rule.specialist_taxonomies,
        f"{role} taxonomy {taxonomy} (source=claim)",
        shown=f"{role} taxonomy {rule.describe(taxonomy)} (source=claim, unverified)",
    )


def _from_directory(
    rule: SpecialistRule, role: str, provider: ProviderFacts, facts: Facts, sent: str | None = None
) -> Specialty:
    """Read one directory entry, and weigh a taxonomy sent on the claim against it (docs/policy.md).

    The directory alone says whether the NPI is an active individual: a sent taxonomy never rescues an
    NPI it rejects. A sent code the directory lists agrees with it, and any listed taxonomy that is a
    physician specialty of the rule counts. A sent code the directory does not list disagrees with it:
    when either side names the rule's specialty the person's specialty is unknown (``disputed``), so the
    decision asks instead of approving on either value; when neither does, both say "not a specialist".
    """
    source = _source(provider, facts)
    if provider.status is not ProviderStatus.ACTIVE:
        evidence = f"{role} NPI {provider.npi} {provider.status.value} ({source})"
        if sent is not None:
            evidence = f"{evidence}; taxonomy {sent} sent on the claim (source=claim, not used)"
        return Specialty(None, evidence, _PROBLEMS[provider.status])
    sent_is_specialist = sent is not None and sent in rule.specialist_taxonomies
    sent_text = "" if sent is None else f"; taxonomy {sent} sent on the claim (source=claim)"
    sent_shown = "" if sent is None else f"; taxonomy {rule.describe(sent)} sent on the claim (source=claim)"
    if not provider.taxonomies:
        evidence = f"{role} NPI {provider.npi} lists no taxonomy ({source}){sent_text}"
        shown = f"{role} NPI {provider.npi} lists no taxonomy ({source}){sent_shown}"
        if sent is None or sent_is_specialist:
            return Specialty(None, evidence, shown=shown, disputed=sent_is_specialist)
        return Specialty(False, evidence, shown=shown)  # noqa: FBT003 - the sent code, not a specialist
    listed = ", ".join(
        f"{code}{' primary' if code == provider.primary_taxonomy else ''}" for code in provider.taxonomies
    )
    named = ", ".join(rule.describe(code) for code in provider.taxonomies)
    hits = [code for code in provider.taxonomies if code in rule.specialist_taxonomies]
    evidence = f"{role} taxonomies {listed} ({source}){sent_text}"
    shown = f"{role} taxonomies {named} ({source}){sent_shown}"
    if sent is not None and sent not in provider.taxonomies and (hits or sent_is_specialist):
        return Specialty(None, evidence, shown=shown, disputed=True)
    return Specialty(bool(hits), evidence, shown=shown)


def prescriber_specialty(rule: SpecialistRule, claim: Claim, facts: Facts) -> Specialty:
    """Read the prescriber: the directory when consulted (weighing a sent taxonomy), else as sent."""
    taxonomy = claim.prescriber.taxonomy
    if facts.prescriber is not None:
        return _from_directory(rule, "prescriber", facts.prescriber, facts, taxonomy)
    if taxonomy is not None:
        return _from_claim(rule, "prescriber", taxonomy)
    return Specialty(None, "prescriber taxonomy unknown (no directory lookup)")


def consultant_specialty(rule: SpecialistRule, claim: Claim, facts: Facts) -> Specialty | None:  # noqa: PLR0911
    """Read the named consultant like the prescriber; ``None`` when no consultant is named.

    With a directory, the consultant's NPI must resolve there whatever taxonomy is sent (a consultant
    named by taxonomy alone cannot be verified); without one, a sent taxonomy is read as sent.
    """
    consultation = None if claim.attestation is None else claim.attestation.consultation
    if consultation is None:
        return None
    taxonomy, npi = consultation.consultant_taxonomy, consultation.consultant_npi
    directory = facts.prescriber is not None or facts.consultant is not None
    if npi is None:
        if taxonomy is None:
            return None
        if not directory:
            return _from_claim(rule, "consultant", taxonomy)
        return Specialty(
            None,
            f"consultant taxonomy {taxonomy} (source=claim) without an NPI to verify",
            "was not sent, so the consultant cannot be verified in the directory",
        )
    if not npi_is_valid(npi):
        return Specialty(None, f"consultant NPI {npi} fails the check digit", "fails the NPI check digit")
    if facts.consultant is not None and facts.consultant.npi == npi:
        who = _from_directory(rule, "consultant", facts.consultant, facts, taxonomy)
        if who.disputed:  # a consultant's unconfirmed specialty asks for it (CONSULTANT_SPECIALTY)
            who.is_specialist = False
        return who
    if taxonomy is not None and not directory:
        return _from_claim(rule, "consultant", taxonomy)
    return Specialty(None, f"consultant NPI {npi} not looked up", "was not looked up in a directory")


def npi_only_consultant(claim: Claim, facts: Facts) -> bool:
    """Tell whether the consultant is named by a well-formed NPI alone that no directory refused.

    True when no taxonomy was sent and the NPI passes its check digit, and the directory either was
    not asked about it or lists it ACTIVE without a taxonomy. A directory that finds the NPI absent,
    deactivated or an organisation refuses it in every catalog version.
    """
    consultation = None if claim.attestation is None else claim.attestation.consultation
    if consultation is None or consultation.consultant_taxonomy is not None:
        return False
    npi = consultation.consultant_npi
    if npi is None or not npi_is_valid(npi):
        return False
    entry = facts.consultant
    if entry is None or entry.npi != npi:
        return True
    return entry.status is ProviderStatus.ACTIVE and not entry.taxonomies
