"""The effective-dated catalog: which version of a policy decides a claim, by its date of service or a pin.

Every catalog entry carries ``effective_from`` (and optionally ``effective_until``, the last date of
service it decides). The versions of one policy id must form one chain: each starts the day after the
previous one ends, with no overlap and no gap, and the newest is open-ended. A claim is decided under
the version in effect on its date of service (docs/policy.md, "Effective dating"), so a version whose
date arrives decides the claims served from that day on, in a running worker and in a replay alike:
nothing reads the wall clock.
"""

from __future__ import annotations

import bisect
import functools
import itertools
import re
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from worker.contracts.codes import PolicySelection
from worker.errors import ConfigError
from worker.policy.definition import catalog_policy, catalog_refs, load_policy

if TYPE_CHECKING:
    from collections.abc import Sequence
    from datetime import date

    from worker.policy.definition import Policy

__all__ = ["PolicyChoice", "catalog_choice", "load_catalog_dir"]

# CLAIMS_POLICY / replay --policy: "<POLICY-ID>" (dated selection) or "<POLICY-ID>/<version>" (a pin).
_POLICY_ID = re.compile(r"^[A-Z0-9][A-Z0-9-]{0,39}$")
_DAY = timedelta(days=1)


def _span(policy: Policy) -> str:
    until = policy.effective_until.isoformat() if policy.effective_until else "open"
    return f"{policy.ref} ({policy.effective_from.isoformat()} to {until})"


def _check_chain(versions: Sequence[Policy]) -> None:
    """Raise ``ConfigError`` naming the versions when ranges overlap, leave a gap, or the newest ends."""
    ids = sorted({policy.policy_id for policy in versions})
    if len(ids) != 1:
        msg = f"a dated catalog holds one policy id, got {', '.join(ids) or 'none'}"
        raise ConfigError(msg)
    for older, newer in itertools.pairwise(versions):
        until = older.effective_until
        if older.effective_from == newer.effective_from or (
            until is not None and until >= newer.effective_from
        ):
            msg = f"policy {ids[0]}: {_span(older)} overlaps {_span(newer)}"
            raise ConfigError(msg)
        if until is not None and until + _DAY < newer.effective_from:
            msg = (
                f"policy {ids[0]}: no version is in effect from {(until + _DAY).isoformat()} to "
                f"{(newer.effective_from - _DAY).isoformat()}, between {_span(older)} and {_span(newer)}"
            )
            raise ConfigError(msg)
    known = {policy.version: policy for policy in versions}
    for policy in versions:
        continuity = policy.continuity
        prior = None if continuity is None else known.get(continuity.prior_version)
        if continuity is not None and (prior is None or prior.effective_from >= policy.effective_from):
            msg = (
                f"policy {ids[0]}: {policy.ref} declares continuity under {continuity.prior_version}, "
                "which is no earlier version of the chain"
            )
            raise ConfigError(msg)
    newest = versions[-1]
    if newest.effective_until is not None:
        msg = (
            f"policy {ids[0]}: the newest version {_span(newest)} ends, so claims served later would have "
            "no version; leave its effective_until out"
        )
        raise ConfigError(msg)


class PolicyChoice:
    """The versions a worker may decide under, and how one is chosen for a claim: pinned or by date.

    ``dated`` checks the chain (``ConfigError`` naming the versions); ``pinned`` holds one version.
    ``named`` is the version a REJECTED answer to a malformed claim names (the pin, or the newest);
    ``criterion_ids`` and ``reason_codes`` are the union over the versions (the metric label sets).
    """

    __slots__ = ("_by_version", "_starts", "criterion_ids", "pinned", "reason_codes", "ref", "versions")

    def __init__(self, versions: Sequence[Policy], *, pinned: bool) -> None:
        ordered = tuple(sorted(versions, key=lambda policy: policy.effective_from))
        if pinned and len(ordered) != 1:  # pragma: no cover - the constructors below hold this
            msg = "a pinned choice holds exactly one version"
            raise ValueError(msg)
        if not pinned:
            _check_chain(ordered)
        self.versions = ordered
        self.pinned = pinned
        self.ref = ordered[0].ref if pinned else ordered[0].policy_id
        self._starts = tuple(policy.effective_from for policy in ordered)
        self._by_version = {policy.version: policy for policy in ordered}
        self.criterion_ids = tuple(dict.fromkeys(c for policy in ordered for c in policy.criterion_ids))
        self.reason_codes = tuple(dict.fromkeys(r for policy in ordered for r in policy.reason_codes))

    @classmethod
    def pin(cls, policy: Policy) -> PolicyChoice:
        """Return the choice that decides every claim under ``policy`` (``CLAIMS_POLICY=<id>/<version>``)."""
        return cls((policy,), pinned=True)

    @classmethod
    def dated(cls, versions: Sequence[Policy]) -> PolicyChoice:
        """Return the choice by date of service over one policy id's versions (``ConfigError``: bad chain)."""
        return cls(versions, pinned=False)

    @property
    def named(self) -> Policy:
        """The pinned version, or the newest one."""
        return self.versions[-1]

    @property
    def version_label(self) -> str:
        """The version the worker reports at start-up: the pinned one, or ``dated`` (chosen per claim)."""
        return self.versions[0].version if self.pinned else "dated"

    def select(self, served: date) -> tuple[Policy, PolicySelection]:
        """Return the version that decides a claim served on ``served``, and why.

        Pinned: the pin, PINNED. Dated: the version in effect on that date, IN_EFFECT; a date before
        the first version is decided by the earliest one (EARLIEST_VERSION), whose timely-filing edit
        rejects a claim that old.
        """
        if self.pinned:
            return self.versions[0], PolicySelection.PINNED
        index = bisect.bisect_right(self._starts, served) - 1
        if index < 0:
            return self.versions[0], PolicySelection.EARLIEST_VERSION
        return self.versions[index], PolicySelection.IN_EFFECT

    def prior_terms(self, policy: Policy, served: date) -> Policy | None:
        """Return the prior version whose terms ``policy``'s continuity keeps on ``served``, if any.

        None when pinned (a pin decides every claim), when ``policy`` declares no continuity, or after
        its ``until``. Whether the member is on therapy is the caller's question (the store's).
        """
        continuity = policy.continuity
        if self.pinned or continuity is None or served > continuity.until:
            return None
        return self._by_version.get(continuity.prior_version)


@functools.cache
def catalog_choice(ref: str) -> PolicyChoice:
    """Return the packaged catalog's choice for ``CLAIMS_POLICY``: ``<id>`` dated, ``<id>/<version>`` pinned.

    Raises ``ConfigError`` naming the catalog's entries when the reference is malformed or absent, and
    naming the versions when a policy id's effective ranges overlap or leave a gap.
    """
    if "/" in ref:
        return PolicyChoice.pin(catalog_policy(ref))
    if _POLICY_ID.match(ref) is None:
        msg = f"policy {ref!r} must be <POLICY-ID> (dated) or <POLICY-ID>/<version> (pinned)"
        raise ConfigError(msg)
    refs = [entry for entry in catalog_refs() if entry.split("/", 1)[0] == ref]
    if not refs:
        msg = f"policy {ref} is not in the catalog (known: {', '.join(catalog_refs())})"
        raise ConfigError(msg)
    return PolicyChoice.dated([catalog_policy(entry) for entry in refs])


def load_catalog_dir(directory: str | Path) -> PolicyChoice:
    """Load every ``*.json`` policy in ``directory`` (one policy id's versions) as a dated choice.

    For tools and tests that decide under a catalog other than the packaged one. Raises
    ``ConfigError`` for an unreadable or invalid file, an empty folder, or a bad chain.
    """
    files = sorted(Path(directory).glob("*.json"))
    if not files:
        msg = f"policy catalog folder {directory} holds no .json policy"
        raise ConfigError(msg)
    return PolicyChoice.dated([load_policy(path) for path in files])
