"""The authorizations on file packed into columns of fixed-width fields: about 110 bytes a row, no objects.

One row per authorization, across ``array`` and ``bytearray`` columns: the PA number as an integer,
the member pseudonym as its 32 bytes, the policy id and the rest of the shared strings (policy
version, product, source kind, revocation reason) as codes into intern tables, the window as day
ordinals, ``decided_at`` and ``revoked_at`` as microseconds since the epoch (UTC), and the source id's
UTF-8 in one shared ``bytearray``. ``load`` gives back an ``Authorization`` equal to the one written.

A value with no exact fixed-width form (a member that is not 64 lower-case hex digits, a datetime
not in UTC, a non-canonical PA number, a source id of 64 KiB or more, a non-text field) is not
squeezed: its row still holds the keys and the window, and the whole ``Authorization`` is kept
beside the columns (``ODD``). The worker writes none of these; old or hand-made records may hold them.
"""

from __future__ import annotations

import hashlib
from array import array
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Generic, TypeVar

from worker.state.authorization import Authorization

if TYPE_CHECKING:
    from collections.abc import Hashable, Iterator

__all__ = ["DEAD", "ODD", "AuthorizationRows", "member_key", "number_key"]

ODD = 1  # the row's Authorization is kept whole in ``_odd`` (its columns hold only keys and window)
DEAD = 2  # replaced by a later row (the record moved to another member or policy): skipped

MEMBER_BYTES = 32
_PA_DIGITS = 11
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
_NO_TIME = -(2**63)  # revoked_at None
_REVOKED_ODD = 0  # an odd row's revoked marker (its revoked_at is in the kept Authorization)
_LENGTH_BITS = 16
_ODD_MEMBER = b"\0odd member\0"  # prefix of the hashed key of a member with no 32-byte form

T = TypeVar("T", bound="Hashable")


class _Interned(Generic[T]):
    """Values shared by many rows, each stored once and referred to by its code."""

    __slots__ = ("_codes", "_values")

    def __init__(self) -> None:
        self._values: list[T] = []
        self._codes: dict[T, int] = {}

    def code(self, value: T) -> int:
        """Return ``value``'s code, adding it when new."""
        code = self._codes.get(value)
        if code is None:
            code = self._codes[value] = len(self._values)
            self._values.append(value)
        return code

    def known(self, value: T) -> int | None:
        """Return ``value``'s code, or ``None`` when no row holds it (a lookup adds nothing)."""
        return self._codes.get(value)

    def __getitem__(self, code: int) -> T:
        return self._values[code]


def number_key(number: str) -> int | None:
    """Return a canonical PA number (11 ASCII digits) as its integer, else ``None``."""
    if len(number) == _PA_DIGITS and number.isascii() and number.isdigit():
        return int(number)
    return None


def member_key(member: str) -> tuple[bytes, bool]:
    """Return the member's 32 key bytes and whether they are its pseudonym itself (not a hash of odd text)."""
    if len(member) == 2 * MEMBER_BYTES:
        try:
            raw = bytes.fromhex(member)
        except ValueError:
            pass
        else:
            if raw.hex() == member:
                return raw, True
    return hashlib.sha256(_ODD_MEMBER + member.encode("utf-8", "surrogatepass")).digest(), False


def _micros(moment: datetime) -> int | None:
    """Return a UTC datetime as microseconds since the epoch; ``None`` for any other (naive, offset)."""
    if type(moment) is datetime and moment.tzinfo is UTC and not moment.fold:
        return (moment - _EPOCH) // _MICROSECOND
    return None


class AuthorizationRows:
    """Append-only columns, one row per authorization; a row is rewritten in place by a later record."""

    __slots__ = (
        "_blob",
        "_days",
        "_flags",
        "_members",
        "_numbers",
        "_odd",
        "_odd_numbers",
        "_policies",
        "_policy",
        "_shared",
        "_shared_codes",
        "_sources",
        "_times",
        "next_of_member",
    )

    def __init__(self) -> None:
        self._numbers = array("q")  # the PA number, or -code of a non-canonical one in _odd_numbers
        self._members = bytearray()  # MEMBER_BYTES a row: the pseudonym's bytes (or the hash of odd text)
        self._policy = array("I")  # code in _policies
        self._shared_codes = array("I")  # code in _shared: (policy_version, product, source_kind, reason)
        self._days = array("i")  # two a row: effective and expiration ordinals
        self._times = array("q")  # two a row: decided_at, revoked_at (_NO_TIME: not revoked)
        self._sources = array("q")  # offset << 16 | length of the source id in _blob
        self._blob = bytearray()
        self._flags = bytearray()  # ODD, DEAD
        self.next_of_member = array("i")  # the row issued before this one to the same member and policy
        self._policies: _Interned[str] = _Interned()
        self._shared: _Interned[tuple[str, str, str, str | None]] = _Interned()
        self._odd_numbers: _Interned[str] = _Interned()
        self._odd: dict[int, Authorization] = {}

    def __len__(self) -> int:
        return len(self._flags)

    # --- keys ------------------------------------------------------------------------------------
    def key_of_number(self, number: str, *, add: bool = False) -> int | None:
        """Return the integer the number column holds for ``number`` (``None``: on no row, ``add`` false)."""
        key = number_key(number)
        if key is not None:
            return key
        code = self._odd_numbers.code(number) if add else self._odd_numbers.known(number)
        return None if code is None else -code - 1

    def number_at(self, row: int) -> int:
        """Return the number column of ``row``."""
        return self._numbers[row]

    def policy_code(self, policy_id: str) -> int | None:
        """Return the code of ``policy_id``, or ``None`` when no row was issued under it."""
        return self._policies.known(policy_id)

    def policy_at(self, row: int) -> int:
        """Return the policy code of ``row``."""
        return self._policy[row]

    def member_at(self, row: int) -> bytes:
        """Return the member key bytes of ``row``."""
        start = row * MEMBER_BYTES
        return bytes(self._members[start : start + MEMBER_BYTES])

    def keyed(self, row: int, member: bytes, policy: int) -> bool:
        """Tell whether ``row`` holds the member key bytes ``member`` and the policy code ``policy``."""
        start = row * MEMBER_BYTES
        return self._policy[row] == policy and self._members[start : start + MEMBER_BYTES] == member

    def belongs_to(self, row: int, member: str) -> bool:
        """Tell whether the live ``row`` under ``member``'s key bytes is ``member``'s (odd text compared)."""
        return not self._flags[row] & ODD or self._odd[row].member == member

    def flags(self, row: int) -> int:
        """Return the ``ODD``/``DEAD`` flags of ``row``."""
        return self._flags[row]

    def same_keys(self, row: int, auth: Authorization, member: bytes) -> bool:
        """Tell whether ``auth`` (its member's key bytes ``member``) has ``row``'s member and policy."""
        code = self._policies.known(auth.policy_id)
        return code is not None and self.keyed(row, member, code) and self.belongs_to(row, auth.member)

    # --- rows ------------------------------------------------------------------------------------
    def append(self, auth: Authorization, number: int, member: tuple[bytes, bool]) -> int:
        """Add a row for ``auth`` (its number column ``number``, its ``member_key``) and return it."""
        row = len(self._flags)
        self._numbers.append(number)
        self._members += member[0]
        self._policy.append(self._policies.code(auth.policy_id))
        self._shared_codes.append(0)
        self._days.extend((0, 0))
        self._times.extend((0, 0))
        self._sources.append(0)
        self._flags.append(0)
        self.next_of_member.append(-1)
        self.write(row, auth, pseudonym=member[1])
        return row

    def write(self, row: int, auth: Authorization, *, pseudonym: bool) -> None:
        """Write ``auth`` over ``row`` (same number, member and policy: ``same_keys``).

        ``pseudonym``: the member is a pseudonym's 64 lower-case hex digits (``member_key``).
        """
        decided = _micros(auth.decided_at)
        revoked = None if auth.revoked_at is None else _micros(auth.revoked_at)
        source = auth.source_id.encode("utf-8", "surrogatepass") if type(auth.source_id) is str else None
        compact = (
            pseudonym
            and decided is not None
            and (revoked is not None or auth.revoked_at is None)
            and source is not None
            and len(source) < 1 << _LENGTH_BITS
            and type(auth.policy_version) is str
            and type(auth.product) is str
            and type(auth.source_kind) is str
            and (auth.revoked_reason is None or type(auth.revoked_reason) is str)
            and self._numbers[row] >= 0
        )
        self._days[2 * row] = auth.effective.toordinal()
        self._days[2 * row + 1] = auth.expiration.toordinal()
        if not compact or source is None or decided is None:
            self._flags[row] = ODD
            self._odd[row] = auth
            self._times[2 * row + 1] = _NO_TIME if auth.revoked_at is None else _REVOKED_ODD
            return
        self._flags[row] = 0
        self._odd.pop(row, None)
        shared = (auth.policy_version, auth.product, auth.source_kind, auth.revoked_reason)
        self._shared_codes[row] = self._shared.code(shared)
        self._times[2 * row] = decided
        self._times[2 * row + 1] = _NO_TIME if revoked is None else revoked
        self._sources[row] = self._source_at(row, source)

    def _source_at(self, row: int, source: bytes) -> int:
        """Return the source column for ``source``: ``row``'s own bytes when unchanged, else appended."""
        held = self._sources[row]
        offset, length = held >> _LENGTH_BITS, held & ((1 << _LENGTH_BITS) - 1)
        if held and self._blob[offset : offset + length] == source:
            return held
        offset = len(self._blob)
        self._blob += source
        return offset << _LENGTH_BITS | len(source)

    def kill(self, row: int) -> None:
        """Mark ``row`` replaced by a later row (its record moved to another member or policy)."""
        self._flags[row] |= DEAD
        self._odd.pop(row, None)

    def load(self, row: int) -> Authorization:
        """Return the authorization ``row`` holds."""
        if self._flags[row] & ODD:
            return self._odd[row]
        start = row * MEMBER_BYTES
        version, product, source_kind, reason = self._shared[self._shared_codes[row]]
        held = self._sources[row]
        offset, length = held >> _LENGTH_BITS, held & ((1 << _LENGTH_BITS) - 1)
        revoked = self._times[2 * row + 1]
        return Authorization(
            number=f"{self._numbers[row]:0{_PA_DIGITS}d}",
            member=self._members[start : start + MEMBER_BYTES].hex(),
            policy_id=self._policies[self._policy[row]],
            policy_version=version,
            product=product,
            effective=date.fromordinal(self._days[2 * row]),
            expiration=date.fromordinal(self._days[2 * row + 1]),
            source_kind=source_kind,
            source_id=self._blob[offset : offset + length].decode("utf-8", "surrogatepass"),
            decided_at=_EPOCH + timedelta(microseconds=self._times[2 * row]),
            revoked_at=None if revoked == _NO_TIME else _EPOCH + timedelta(microseconds=revoked),
            revoked_reason=reason,
        )

    # --- state -----------------------------------------------------------------------------------
    def is_revoked(self, row: int) -> bool:
        """Tell whether ``row``'s authorization was revoked."""
        return self._times[2 * row + 1] != _NO_TIME

    def state(self, row: int, day: int) -> str:
        """Return ``row``'s state on the day of ordinal ``day``: revoked, active or inactive."""
        if self._times[2 * row + 1] != _NO_TIME:
            return "revoked"
        return "active" if self._days[2 * row] <= day <= self._days[2 * row + 1] else "inactive"

    def states(self, day: int) -> Iterator[str]:
        """Yield the state of every live row on the day of ordinal ``day`` (one pass over the columns)."""
        columns = zip(self._days[0::2], self._days[1::2], self._times[1::2], self._flags, strict=True)
        for effective, expiration, revoked, flags in columns:
            if flags & DEAD:
                continue
            if revoked != _NO_TIME:
                yield "revoked"
            else:
                yield "active" if effective <= day <= expiration else "inactive"

    def nbytes(self) -> int:
        """Return the bytes of the columns (the intern tables and odd rows aside)."""
        columns = (self._numbers, self._policy, self._shared_codes, self._days, self._times, self._sources)
        arrays = sum(c.itemsize * len(c) for c in (*columns, self.next_of_member))
        return arrays + len(self._members) + len(self._blob) + len(self._flags)
