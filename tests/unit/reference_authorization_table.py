"""The dict-of-objects authorization table the packed one replaced, kept as the oracle of its tests.

Its behaviour (not its memory) is the specification: ``tests/unit/test_authorization_table.py`` runs
the same records and claims through both and expects the same answers and decisions.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from datetime import date

    from worker.state.authorization import Authorization

__all__ = ["ReferenceTable"]


class ReferenceTable:
    """Authorizations by PA number and by (member pseudonym, policy id), as whole objects in dicts."""

    def __init__(self) -> None:
        self._by_number: dict[str, Authorization] = {}
        self._by_member: dict[tuple[str, str], list[str]] = {}

    def __len__(self) -> int:
        return len(self._by_number)

    def apply(self, auth: Authorization) -> None:
        """Install ``auth`` unless it would undo a revocation; file it under its current member and policy."""
        old = self._by_number.get(auth.number)
        if old is not None and old.revoked and not auth.revoked:
            return
        self._by_number[auth.number] = auth
        if old is not None and (old.member, old.policy_id) != (auth.member, auth.policy_id):
            self._by_member[old.member, old.policy_id].remove(auth.number)
        if old is None or (old.member, old.policy_id) != (auth.member, auth.policy_id):
            self._by_member.setdefault((auth.member, auth.policy_id), []).append(auth.number)

    def get(self, number: str) -> Authorization | None:
        """Return the authorization numbered ``number``, or ``None``."""
        return self._by_number.get(number)

    def of_member(self, member: str, policy_id: str, day: date | None = None) -> list[Authorization]:
        """Return the member's authorizations under ``policy_id`` (``day``: those holding it), as filed."""
        held = [self._by_number[n] for n in self._by_member.get((member, policy_id), [])]
        return held if day is None else [a for a in held if a.holds(day)]

    def counts(self, today: date) -> dict[str, int]:
        """Return how many authorizations are active, inactive and revoked on ``today``."""
        counts = {"active": 0, "inactive": 0, "revoked": 0}
        for auth in self._by_number.values():
            state = "revoked" if auth.revoked else "active" if auth.holds(today) else "inactive"
            counts[state] += 1
        return counts
