"""Why a diff's claim changed (its cause), and the impact figures of a whole diff: pure, no I/O.

A claim a ``replay --diff`` finds changed has one cause (docs/operations.md, "Reading the impact report"):

- ``CRITERIA``: the candidate policy decides differently from the same facts (both sides evaluated).
- ``REFERENCE_DATA``: a reference data set both sides read (the prescriber directory, the ICD-10-CM
  release) is at another version, so the facts themselves differ.
- ``ON_FILE``: either side was decided against an authorization on file (paid, or no longer paid):
  a knock-on effect of an earlier changed decision, or of store timing across partitions.
- ``CONTINUITY_OF_CARE``: reserved for the continuity-of-care rule (issue 28, another item); nothing
  assigns it yet, and no detection is guessed here.
- ``NO_BASELINE``: the live worker published nothing for these coordinates.
- ``INPUT``: a dead letter on one side: the record, not the policy, decided the difference.

Direct changes are ``CRITERIA``, ``REFERENCE_DATA`` and ``CONTINUITY_OF_CARE``; the headline counts them
first. Members are counted only by pseudonym (never an identifier); prescribers by NPI.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from collections.abc import Iterable

__all__ = [
    "DIRECT",
    "Cause",
    "Change",
    "Compared",
    "Impact",
    "changed_criteria",
    "classify",
]

_APPROVED = "APPROVED"
_ON_FILE = "ON_FILE"
_DEAD_LETTER = "DEAD_LETTER:"


class Cause(StrEnum):
    """Why one claim's verdict changed (closed set, stable names: the CSV and JSON carry them)."""

    CRITERIA = "CRITERIA"
    REFERENCE_DATA = "REFERENCE_DATA"
    CONTINUITY_OF_CARE = "CONTINUITY_OF_CARE"  # placeholder: the continuity item will assign it
    ON_FILE = "ON_FILE"
    NO_BASELINE = "NO_BASELINE"
    INPUT = "INPUT"


DIRECT = frozenset({Cause.CRITERIA, Cause.REFERENCE_DATA, Cause.CONTINUITY_OF_CARE})
"""The causes of a direct change: what the candidate itself decides differently."""


class Compared(Protocol):
    """What the classifier reads of one side's verdict (``worker.runtime.verdicts.Verdict`` has it)."""

    @property
    def outcome(self) -> str:
        """The outcome, or ``DEAD_LETTER:<class>``."""

    @property
    def source(self) -> str:
        """The decision source (``ON_FILE``: against an authorization on file)."""

    @property
    def criteria(self) -> tuple[tuple[str, str, str], ...]:
        """``(criterion, status, reason)`` per criterion evaluated."""

    @property
    def references(self) -> tuple[tuple[str, str], ...]:
        """``(reference data set, version)`` per set the decision read."""


def classify(before: Compared | None, after: Compared) -> Cause:
    """Return the cause of a change from ``before`` (the live verdict) to ``after`` (the candidate's).

    In order: no live verdict; a dead letter on either side; an on-file decision on either side;
    a reference data set named on both sides at different versions; otherwise the criteria.
    """
    if before is None:
        return Cause.NO_BASELINE
    if before.outcome.startswith(_DEAD_LETTER) or after.outcome.startswith(_DEAD_LETTER):
        return Cause.INPUT
    if _ON_FILE in (before.source, after.source):
        return Cause.ON_FILE
    old, new = dict(before.references), dict(after.references)
    if any(old[name] != new[name] for name in old.keys() & new.keys()):
        return Cause.REFERENCE_DATA
    return Cause.CRITERIA


def changed_criteria(
    before: Compared | None, after: Compared, cause: Cause | None = None
) -> tuple[tuple[str, str], ...]:
    """Return ``(criterion, "WAS(reason) -> NOW(reason)")`` for each criterion that differs, sorted.

    A change with no differing criterion (a dead letter), or caused ``ON_FILE`` (an on-file decision
    evaluates no criterion, so comparing criteria says nothing), is one ``("-", ...)`` row naming the
    decision source (or the outcome) before and after, so every change has exactly the rows it earns.
    """
    old = {cid: f"{status}({reason})" for cid, status, reason in (before.criteria if before else ())}
    new = {cid: f"{status}({reason})" for cid, status, reason in after.criteria}
    rows = tuple(
        (cid, f"{old.get(cid, '-')} -> {new.get(cid, '-')}")
        for cid in sorted(old.keys() | new.keys())
        if old.get(cid) != new.get(cid)
    )
    if rows and cause is not Cause.ON_FILE:
        return rows
    if before is None:
        return (("-", f"(none) -> {after.outcome}"),)
    was = before.source or before.outcome
    now = after.source or after.outcome
    return (("-", f"{was} -> {now}" if was != now else f"{before.outcome} -> {after.outcome}"),)


@dataclass(frozen=True, slots=True)
class Change:
    """One changed claim as the report counts it: no claim id, no member identifier."""

    cause: Cause
    before: str  # the live outcome ("(none)": no live output)
    after: str
    criteria: tuple[tuple[str, str], ...]  # changed_criteria()
    member: str | None = None  # the member's keyed pseudonym, when the store's secret is set
    prescriber: str | None = None  # the prescriber's NPI (a provider identifier, not PHI)
    week: str = "(unknown)"  # ISO week of the claim's event time, e.g. 2026-W49


@dataclass
class _Tally:
    """Counts of one row: claims, approvals gained and lost, distinct members and prescribers."""

    claims: int = 0
    gained: int = 0
    lost: int = 0
    members: set[str] = field(default_factory=set)
    prescribers: set[str] = field(default_factory=set)

    def add(self, change: Change) -> None:
        self.claims += 1
        self.gained += change.before != _APPROVED and change.after == _APPROVED
        self.lost += change.before == _APPROVED and change.after != _APPROVED
        if change.member is not None:
            self.members.add(change.member)
        if change.prescriber is not None:
            self.prescribers.add(change.prescriber)

    def row(self, members_counted: bool) -> dict[str, Any]:
        return {
            "claims": self.claims,
            "approvals_gained": self.gained,
            "approvals_lost": self.lost,
            "members": len(self.members) if members_counted else None,
            "prescribers": len(self.prescribers),
        }


@dataclass
class Impact:
    """The impact figures of one diff, built change by change; ``figures()`` is what every writer reads."""

    members_counted: bool = False  # True: members carry pseudonyms (CLAIMS_AUTHORIZATIONS_TOPIC is set)
    unchanged: int = 0
    decided: int = 0
    _total: _Tally = field(default_factory=_Tally)
    _causes: dict[Cause, _Tally] = field(default_factory=dict)
    _transitions: dict[tuple[Cause, str, str], int] = field(default_factory=dict)
    _criteria: dict[tuple[Cause, str, str], _Tally] = field(default_factory=dict)
    _weeks: dict[tuple[str, Cause], int] = field(default_factory=dict)

    def add(self, change: Change) -> None:
        """Count one changed claim in every table."""
        self._total.add(change)
        self._causes.setdefault(change.cause, _Tally()).add(change)
        at = (change.cause, change.before, change.after)
        self._transitions[at] = self._transitions.get(at, 0) + 1
        for criterion, reason in change.criteria:
            self._criteria.setdefault((change.cause, criterion, reason), _Tally()).add(change)
        week = (change.week, change.cause)
        self._weeks[week] = self._weeks.get(week, 0) + 1

    def extend(self, changes: Iterable[Change]) -> Impact:
        """Count each of ``changes``; return self."""
        for change in changes:
            self.add(change)
        return self

    def figures(self) -> dict[str, Any]:
        """Return every figure of the report as plain data (JSON-ready): one source for every writer."""
        counted = self.members_counted
        causes = {cause: self._causes.get(cause, _Tally()).claims for cause in Cause}
        return {
            "decided": self.decided,
            "unchanged": self.unchanged,
            "changed": self._total.claims,
            "direct": sum(n for cause, n in causes.items() if cause in DIRECT),
            "on_file": causes[Cause.ON_FILE],
            "other": causes[Cause.NO_BASELINE] + causes[Cause.INPUT],
            "members_counted": counted,
            "total": self._total.row(counted),
            "causes": [
                {"cause": cause.value, **self._causes.get(cause, _Tally()).row(counted)} for cause in Cause
            ],
            "transitions": [
                {"cause": cause.value, "before": before, "after": after, "claims": n}
                for (cause, before, after), n in sorted(
                    self._transitions.items(), key=lambda kv: (_order(kv[0][0]), -kv[1], kv[0][1:])
                )
            ],
            "criteria": [
                {"cause": cause.value, "criterion": criterion, "reason": reason, **tally.row(counted)}
                for (cause, criterion, reason), tally in sorted(
                    self._criteria.items(), key=lambda kv: (_order(kv[0][0]), -kv[1].claims, kv[0][1:])
                )
            ],
            "weeks": [
                {"week": week, "cause": cause.value, "claims": n}
                for (week, cause), n in sorted(
                    self._weeks.items(), key=lambda kv: (kv[0][0], _order(kv[0][1]))
                )
            ],
        }


def _order(cause: Cause) -> int:
    return list(Cause).index(cause)
