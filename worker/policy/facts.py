"""Reference-data facts the pipeline looks up and hands to ``decide``: the policy itself does no I/O.

The prescriber directory (``worker.directory``) produces ``ProviderFacts`` for the prescriber's and the
consultant's NPI; ``decide(claim, facts, policy, decided_at)`` reads them. ``Facts()`` (nothing looked up)
is what a worker without a directory passes.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

__all__ = ["Facts", "ProviderFacts", "ProviderStatus"]


class ProviderStatus(StrEnum):
    """What the directory says of one NPI on the date of service (closed set, safe as a metric label)."""

    ACTIVE = "ACTIVE"  # an individual (entity type 1) NPI, active on the date of service
    NOT_FOUND = "NOT_FOUND"  # check digit valid, but the directory does not list the NPI
    DEACTIVATED = "DEACTIVATED"  # deactivated on the date of service (and not reactivated before it)
    ORGANISATION = "ORGANISATION"  # entity type 2: an organisation is not a prescriber


@dataclass(frozen=True, slots=True)
class ProviderFacts:
    """One NPI as the directory knows it: status, every listed NUCC taxonomy, which one is primary."""

    npi: str
    status: ProviderStatus
    taxonomies: tuple[str, ...] = ()
    primary_taxonomy: str | None = None
    directory_version: str | None = None


@dataclass(frozen=True, slots=True)
class Facts:
    """Everything looked up for one claim; ``None`` means "not looked up" (no directory configured)."""

    prescriber: ProviderFacts | None = None
    consultant: ProviderFacts | None = None
    directory_version: str | None = None
