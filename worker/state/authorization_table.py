"""The table of authorizations on file (by PA number, by member and policy) and what is counted of it."""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge

from worker.policy.facts import ProviderStatus

if TYPE_CHECKING:
    from collections.abc import Iterable
    from datetime import date

    from worker.state.authorization import Authorization

__all__ = ["AuthorizationMetrics", "AuthorizationTable", "NotHonoured", "OnFileVia"]


class OnFileVia(StrEnum):
    """How a claim was matched to an authorization on file (closed label set)."""

    MEMBER_PRODUCT = "member_product"
    QUOTED_NUMBER = "quoted_number"


class NotHonoured(StrEnum):
    """Why a quoted PA number (462-EV) did not count (closed label set)."""

    UNKNOWN = "unknown"
    REVOKED = "revoked"
    OTHER_MEMBER = "other_member"
    OTHER_PRODUCT = "other_product"
    OUTSIDE_WINDOW = "outside_window"
    MALFORMED = "malformed"  # not 11 digits with a valid check digit: treated as not found, never echoed


class AuthorizationTable:
    """Authorizations by PA number and by (member pseudonym, policy id). A revocation is final."""

    __slots__ = ("_by_member", "_by_number", "_counts", "_day")

    def __init__(self) -> None:
        self._by_number: dict[str, Authorization] = {}
        self._by_member: dict[tuple[str, str], str | list[str]] = {}
        # The counts by state as of ``_day``, kept up to date by ``apply`` (the metrics gauge).
        self._counts: dict[str, int] | None = None
        self._day: date | None = None

    def __len__(self) -> int:
        return len(self._by_number)

    def apply(self, auth: Authorization) -> None:
        """Install ``auth``; a record that would undo a revocation (an older copy read late) is ignored."""
        old = self._by_number.get(auth.number)
        if old is not None and old.revoked and not auth.revoked:
            return
        self._by_number[auth.number] = auth
        counts, day = self._counts, self._day
        if counts is not None and day is not None:
            if old is not None:
                counts[_state(old, day)] -= 1
            counts[_state(auth, day)] += 1
        if old is None:
            key = (auth.member, auth.policy_id)
            held = self._by_member.get(key)
            # Most members hold one authorization: keep its number, not a list of one (memory).
            if held is None:
                self._by_member[key] = auth.number
            elif isinstance(held, str):
                self._by_member[key] = [held, auth.number]
            else:
                held.append(auth.number)

    def get(self, number: str) -> Authorization | None:
        """Return the authorization numbered ``number``, or ``None``."""
        return self._by_number.get(number)

    def of_member(self, member: str, policy_id: str) -> list[Authorization]:
        """Return the member's authorizations under ``policy_id`` (revoked and expired ones included)."""
        held = self._by_member.get((member, policy_id))
        if held is None:
            return []
        return [self._by_number[held]] if isinstance(held, str) else [self._by_number[n] for n in held]

    def counts(self, today: date) -> dict[str, int]:
        """Return how many authorizations are active, expired (or not yet effective) and revoked.

        Counted in one pass over the table when ``today`` is a new day (about a second for 1M), then
        kept up to date by ``apply``: a loop pass that read new records costs nothing here.
        """
        if self._counts is None or self._day != today:
            counts = {"active": 0, "inactive": 0, "revoked": 0}
            for auth in self._by_number.values():
                counts[_state(auth, today)] += 1
            self._counts, self._day = counts, today
        return dict(self._counts)


def _state(auth: Authorization, day: date) -> str:
    return "revoked" if auth.revoked else "active" if auth.holds(day) else "inactive"


class AuthorizationMetrics:
    """The store's metrics: authorizations by state, paid on file or not used, quoted numbers, collisions."""

    def __init__(self, registry: CollectorRegistry) -> None:
        """Register the store's metrics on ``registry`` (label values from closed enums)."""
        self._state = Gauge(
            "claims_worker_authorizations",
            "Prior authorizations on file by state (active today, inactive: outside window, revoked).",
            ["state"],
            registry=registry,
        )
        on_file = Counter(
            "claims_worker_on_file_approvals",
            "Claims approved against an authorization on file (committed), by how they matched.",
            ["via"],
            registry=registry,
        )
        self._on_file = {via: on_file.labels(via.value) for via in OnFileVia}
        not_honoured = Counter(
            "claims_worker_quoted_pa_not_honoured",
            "Claims quoting a PA number (462-EV) that did not count (committed), by why.",
            ["why"],
            registry=registry,
        )
        self._not_honoured = {why: not_honoured.labels(why.value) for why in NotHonoured}
        self._issued = Counter(
            "claims_worker_authorizations_issued",
            "Authorizations written to the store with the result that approved them (committed).",
            registry=registry,
        )
        collisions = Counter(
            "claims_worker_authorization_number_collisions",
            "Approvals whose PA number was already another authorization's and were renumbered (committed).",
            registry=registry,
        )
        self._collisions = collisions
        not_used = Counter(
            "claims_worker_on_file_not_used",
            "Fills an authorization on file would have paid, decided as usual because the directory rules "
            "out their prescriber (committed), by the prescriber's status.",
            ["prescriber"],
            registry=registry,
        )
        self._not_used: dict[ProviderStatus, Counter] = {
            status: not_used.labels(status.value)
            for status in ProviderStatus
            if status is not ProviderStatus.ACTIVE
        }
        self._restore_seconds = Gauge(
            "claims_worker_authorizations_restore_seconds",
            "How long the start-up read of the whole store topic took (the worker is not ready meanwhile).",
            registry=registry,
        )
        self._restored = Gauge(
            "claims_worker_authorizations_restored_records",
            "Store records applied by the start-up read (the topic's size after compaction, roughly).",
            registry=registry,
        )
        for state in ("active", "inactive", "revoked"):
            self._state.labels(state).set(0)

    def restored(self, seconds: float, records: int) -> None:
        """Record how long the start-up read of the store took and how many records it applied."""
        self._restore_seconds.set(seconds)
        self._restored.set(records)

    def set_states(self, counts: dict[str, int]) -> None:
        """Set the authorizations-by-state gauge."""
        for state, n in counts.items():
            self._state.labels(state).set(n)

    def committed(
        self,
        on_file: Iterable[OnFileVia],
        not_honoured: Iterable[NotHonoured],
        issued: int,
        *,
        collisions: int = 0,
        not_used: Iterable[ProviderStatus] = (),
    ) -> None:
        """Count what a committed batch did."""
        for via in on_file:
            self._on_file[via].inc()
        for why in not_honoured:
            self._not_honoured[why].inc()
        if issued:
            self._issued.inc(issued)
        if collisions:
            self._collisions.inc(collisions)
        for status in not_used:
            self._not_used[status].inc()
