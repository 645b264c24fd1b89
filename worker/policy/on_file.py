"""Decisions about authorizations on file: paid on file, not used, quoted numbers, renumbered approvals.

Pure, like ``decide``: the store (worker/state/authorizations.py) finds the authorization and says what
happened; the Decision, its summary and its reject codes are built here. See docs/authorizations.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from worker.contracts.codes import DecisionSource, Outcome
from worker.contracts.model import Decision, Reject
from worker.contracts.wire import NOT_APPROVED
from worker.policy.facts import ProviderStatus

if TYPE_CHECKING:
    from datetime import date, datetime

    from worker.contracts.model import ProductMatch
    from worker.policy.definition import Policy
    from worker.policy.facts import Facts

__all__ = [
    "ON_FILE_SUMMARY",
    "AuthorizationOnFile",
    "on_file_decision",
    "prescriber_unverified",
    "quoted_not_honoured",
    "quoted_note",
    "renumbered",
    "with_not_used",
]

ON_FILE_SUMMARY = "Approved on file:"
"""How an on-file approval's summary begins (results before v3 named the source only there)."""

_PRESCRIBER_PROBLEM = {
    ProviderStatus.NOT_FOUND: "is not in the prescriber directory",
    ProviderStatus.DEACTIVATED: "is deactivated on the date of service",
    ProviderStatus.ORGANISATION: "is an organisation (entity type 2), not a prescriber",
}


class AuthorizationOnFile(Protocol):
    """What a decision reads of an authorization on file (the store's ``Authorization`` has it)."""

    @property
    def number(self) -> str:
        """The PA number (498-PY)."""
        ...

    @property
    def policy_id(self) -> str:
        """The policy it was issued under."""
        ...

    @property
    def policy_version(self) -> str:
        """The policy version it was issued under."""
        ...

    @property
    def effective(self) -> date:
        """First day of its window."""
        ...

    @property
    def expiration(self) -> date:
        """Last day of its window (inclusive)."""
        ...

    @property
    def source_kind(self) -> str:
        """``claim`` or ``request``."""
        ...

    @property
    def source_id(self) -> str:
        """The claim or request id that issued it."""
        ...

    @property
    def decided_at(self) -> datetime:
        """When it was issued."""
        ...


def prescriber_unverified(facts: Facts) -> ProviderStatus | None:
    """Return the directory's status of the prescriber when it rules out paying on file, else ``None``.

    An authorization belongs to the member and product; it does not validate a later claim's prescriber
    (CMS prescriber validation; docs/authorizations.md). ``None`` also when no directory was read
    (``facts.prescriber`` is ``None``): the on-file payment is then unchanged.
    """
    prescriber = facts.prescriber
    if prescriber is None or prescriber.status is ProviderStatus.ACTIVE:
        return None
    return prescriber.status


def on_file_decision(
    auth: AuthorizationOnFile,
    policy: Policy,
    decided_at: datetime,
    matched: ProductMatch | None,
    note: str = "",
) -> Decision:
    """Return the APPROVED, ON_FILE decision paying a claim against ``auth``: its number and original window.

    No criteria are evaluated and no new window is issued; ``note`` (e.g. why a quoted number did not
    count) ends the summary. The decision names the version the authorization was issued under: an
    authorization from another version than ``policy`` (the one in effect on the date of service) is
    kept to its expiry, continuity of care, and the summary says so (docs/policy.md, "Effective dating").
    """
    summary = (
        f"{ON_FILE_SUMMARY} prior authorization {auth.number} issued under {auth.policy_id} "
        f"{auth.policy_version} on {auth.decided_at.date().isoformat()} (from {auth.source_kind} "
        f"{auth.source_id}) holds the date of service, window {auth.effective.isoformat()} through "
        f"{auth.expiration.isoformat()}; the claim was not re-evaluated and no new window was issued."
    )
    if auth.policy_version != policy.version:
        summary += (
            f" Continuity of care: issued under {auth.policy_version}, not {policy.version} (the version "
            "for the date of service), it is kept to its expiry."
        )
    fields: dict[str, object] = {"matched_product": matched} if matched is not None else {}
    return Decision(
        outcome=Outcome.APPROVED,
        authorization_effective=auth.effective,
        authorization_expiration=auth.expiration,
        authorization_number=auth.number,
        decision_source=DecisionSource.ON_FILE,
        policy_id=policy.policy_id,
        policy_version=auth.policy_version,
        decided_at=decided_at,
        summary=f"{summary} {note}" if note else summary,
        **fields,
    )


def with_not_used(decision: Decision, number: str, status: ProviderStatus) -> Decision:
    """Return ``decision`` (decided as usual) with the summary naming the authorization not used and why.

    The authorization stays on file; only this claim, whose prescriber NPI ``status`` rules it out,
    does not pay against it.
    """
    note = (
        f"Prior authorization {number} on file was not used: the prescriber NPI "
        f"{_PRESCRIBER_PROBLEM[status]}; an authorization belongs to the member and product and does "
        "not validate a later claim's prescriber. It stays on file."
    )
    return decision.model_copy(update={"summary": f"{decision.summary} {note}"})


def quoted_not_honoured(
    decision: Decision, policy: Policy, quoted: str | None, why: str, *, not_found: bool
) -> Decision:
    """Return ``decision`` with the note on a quoted PA number (462-EV) that did not count.

    ``quoted`` is the number as sent when it is a well-formed PA number, ``None`` when it is not (then it
    is never echoed: free text may hold PHI). ``not_found`` (not on file, or malformed) adds the policy's
    authorization-not-found reject (3X) to a non-approved decision, besides its own rejects.
    """
    update: dict[str, object] = {"summary": f"{decision.summary} {quoted_note(quoted, why)}"}
    code = policy.reject_authorization_not_found
    if not_found and decision.outcome in NOT_APPROVED and code not in decision.reject_codes:
        update["rejects"] = (*decision.rejects, Reject(code=code, field="prior_authorization_number"))
    return decision.model_copy(update=update)


def quoted_note(quoted: str | None, why: str) -> str:
    """Return the sentence naming a quoted PA number that did not count (``None``: malformed, not echoed)."""
    named = f"Quoted PA number {quoted} (462-EV)" if quoted is not None else "The quoted PA number (462-EV)"
    return f"{named} not honoured: {why}."


def renumbered(decision: Decision, number: str) -> Decision:
    """Return the approval ``decision`` under the PA number the store resolved (a collision was avoided)."""
    return decision.model_copy(update={"authorization_number": number})
