"""The table of authorizations on file (by PA number, by member and policy) and what is counted of it."""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge

from worker.policy.facts import ProviderStatus
from worker.state.authorization_rows import DEAD, AuthorizationRows, member_key
from worker.state.row_index import RowIndex, mix

if TYPE_CHECKING:
    from collections.abc import Iterable
    from datetime import date

    from worker.state.authorization import Authorization

__all__ = ["AuthorizationMetrics", "AuthorizationTable", "NotHonoured", "OnFileVia"]

_LOADED = 1024  # authorizations built from rows kept for the next asks (well under a MiB)


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
    """Authorizations by PA number and by (member pseudonym, policy id). A revocation is final.

    Held as packed rows (``AuthorizationRows``, about 110 bytes each) under two ``RowIndex`` hash
    indexes (about 8 to 16 bytes each): by number, and by member and policy, whose slot holds the
    latest row and each row the one issued before it (``next_of_member``). ``get`` and ``of_member``
    build the ``Authorization`` objects they return; nothing else keeps one.
    """

    __slots__ = ("_by_member", "_by_number", "_counts", "_day", "_loaded", "_rows")

    def __init__(self) -> None:
        rows = self._rows = AuthorizationRows()
        self._by_number = RowIndex(lambda row: mix(rows.number_at(row)))
        self._by_member = RowIndex(lambda row: _member_hash(rows.member_at(row), rows.policy_at(row)))
        # The counts by state as of ``_day``, kept up to date by ``apply`` (the metrics gauge).
        self._counts: dict[str, int] | None = None
        self._day: date | None = None
        # Rows built lately: a fill paid on file asks for its authorization two or three times.
        self._loaded: dict[int, Authorization] = {}

    def __len__(self) -> int:
        return len(self._by_number)

    def apply(self, auth: Authorization) -> None:
        """Install ``auth``; a record that would undo a revocation (an older copy read late) is ignored.

        A later record for a number on file is written over its row; one that names another member or
        policy (no worker writes that) is filed under those instead, the old row left behind as dead.
        """
        rows = self._rows
        number = rows.key_of_number(auth.number, add=True)
        assert number is not None  # noqa: S101 - add=True gives every number a key
        slot, row = self._by_number.find(mix(number), lambda r: rows.number_at(r) == number)
        counts, day = self._counts, None if self._day is None else self._day.toordinal()
        member = member_key(auth.member)
        if row == -1:
            row = self._add(auth, number, member)
            self._by_number.add(slot, row)
        elif rows.is_revoked(row) and not auth.revoked:
            return
        else:
            if counts is not None and day is not None:
                counts[rows.state(row, day)] -= 1
            self._loaded.pop(row, None)
            if rows.same_keys(row, auth, member[0]):
                rows.write(row, auth, pseudonym=member[1])
            else:
                rows.kill(row)
                row = self._add(auth, number, member)
                self._by_number.replace(slot, row)
        if counts is not None and day is not None:
            counts[rows.state(row, day)] += 1

    def _add(self, auth: Authorization, number: int, key: tuple[bytes, bool]) -> int:
        """Append a row for ``auth`` and put it first under its member and policy; return the row."""
        rows = self._rows
        row = rows.append(auth, number, key)
        member, policy = key[0], rows.policy_at(row)
        slot, latest = self._by_member.find(
            _member_hash(member, policy), lambda r: rows.keyed(r, member, policy)
        )
        if latest == -1:
            self._by_member.add(slot, row)
        else:
            rows.next_of_member[row] = latest
            self._by_member.replace(slot, row)
        return row

    def get(self, number: str) -> Authorization | None:
        """Return the authorization numbered ``number``, or ``None``."""
        rows = self._rows
        key = rows.key_of_number(number)
        if key is None:
            return None
        _, row = self._by_number.find(mix(key), lambda r: rows.number_at(r) == key)
        return None if row == -1 else self._load(row)

    def of_member(self, member: str, policy_id: str, day: date | None = None) -> list[Authorization]:
        """Return the member's authorizations under ``policy_id`` in the order they were first filed.

        All of them (revoked and expired ones included), or with ``day`` only those that hold it:
        the others are ruled out on their columns, never built.
        """
        rows = self._rows
        policy = rows.policy_code(policy_id)
        if policy is None:
            return []
        key = member_key(member)[0]
        _, row = self._by_member.find(_member_hash(key, policy), lambda r: rows.keyed(r, key, policy))
        ordinal = None if day is None else day.toordinal()
        found = []
        while row != -1:
            if (
                not rows.flags(row) & DEAD
                and (ordinal is None or rows.state(row, ordinal) == "active")
                and rows.belongs_to(row, member)
            ):
                found.append(self._load(row))
            row = rows.next_of_member[row]
        found.reverse()
        return found

    def _load(self, row: int) -> Authorization:
        auth = self._loaded.get(row)
        if auth is None:
            if len(self._loaded) >= _LOADED:
                self._loaded.clear()
            auth = self._loaded[row] = self._rows.load(row)
        return auth

    def counts(self, today: date) -> dict[str, int]:
        """Return how many authorizations are active, expired (or not yet effective) and revoked.

        Counted in one pass over the columns when ``today`` is a new day (a fraction of a second for
        1M), then kept up to date by ``apply``: a loop pass that read new records costs nothing here.
        """
        if self._counts is None or self._day != today:
            counts = {"active": 0, "inactive": 0, "revoked": 0}
            for state in self._rows.states(today.toordinal()):
                counts[state] += 1
            self._counts, self._day = counts, today
        return dict(self._counts)

    def nbytes(self) -> int:
        """Return the bytes of the columns and the two indexes' slots (intern tables aside)."""
        return self._rows.nbytes() + self._by_number.nbytes() + self._by_member.nbytes()


def _member_hash(member: bytes, policy: int) -> int:
    # All 32 bytes (SipHash): a pseudonym is random, but test and bench members share long prefixes.
    return mix(hash(member) ^ policy)


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
