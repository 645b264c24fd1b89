"""Prometheus metrics of the prescriber directory (worker/runtime/reference.py, docs/directory.md)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Literal

from prometheus_client import Counter, Gauge, Info

from worker.ops.labels import LABEL_VALUE, OTHER

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

__all__ = ["DirectoryMetrics", "LookupRole"]

LookupRole = Literal["prescriber", "consultant"]
_LOOKUP_ROLES: tuple[LookupRole, ...] = ("prescriber", "consultant")


class DirectoryMetrics:
    """The prescriber directory's metrics: lookups by role and ``ProviderStatus``, version, age, updates.

    Labels are closed: ``role`` is prescriber or consultant, ``status`` a ``ProviderStatus``; the info
    series carries the index's release id (a code like ``nppes-20241110``, checked like any label value).
    """

    __slots__ = (
        "_info",
        "_lookups",
        "_overlay",
        "_release",
        "_updates_applied",
        "_updates_lag",
        "_updates_rejected",
    )

    def __init__(self, registry: CollectorRegistry) -> None:
        from worker.policy.facts import ProviderStatus  # noqa: PLC0415 - keeps this module's imports light

        lookups = Counter(
            "claims_worker_directory_lookups",
            "Prescriber directory lookups, by who was looked up and what the directory said.",
            ["role", "status"],
            registry=registry,
        )
        self._lookups = {
            (role, status.value): lookups.labels(role=role, status=status.value)
            for role in _LOOKUP_ROLES
            for status in ProviderStatus
        }
        self._info = Info(
            "claims_worker_directory",
            "The prescriber directory index the worker reads (its release and release date).",
            registry=registry,
        )
        self._release = Gauge(
            "claims_worker_directory_release_timestamp_seconds",
            "Unix time of the directory index's release date: its age is time() minus this.",
            registry=registry,
        )
        self._updates_applied = Counter(
            "claims_worker_directory_updates_applied",
            "Directory update records applied from the updates topic (catch-up included).",
            registry=registry,
        )
        self._updates_rejected = Counter(
            "claims_worker_directory_updates_rejected",
            "Directory update records that could not be read and were skipped.",
            registry=registry,
        )
        self._overlay = Gauge(
            "claims_worker_directory_overlay_npis",
            "NPIs the updates topic currently overrides over the index.",
            registry=registry,
        )
        self._updates_lag = Gauge(
            "claims_worker_directory_updates_lag_records",
            "Update records on the updates topic not applied yet (from the follower's last fetch).",
            registry=registry,
        )

    def record_lookup(self, role: LookupRole, status: str, n: int = 1) -> None:
        """Count ``n`` lookups of ``role`` that answered ``status`` (a ``ProviderStatus`` value)."""
        self._lookups[role, status].inc(n)

    def set_directory(self, version: str, release_date: date) -> None:
        """Publish the index's release (info series) and its release date (the age gauge)."""
        if not LABEL_VALUE.match(version):
            version = OTHER
        self._info.info({"version": version, "release_date": release_date.isoformat()})
        self._release.set(datetime.combine(release_date, datetime.min.time(), UTC).timestamp())

    def updates_applied(self, n: int) -> None:
        """Count ``n`` update records applied."""
        self._updates_applied.inc(n)

    def updates_rejected(self, n: int) -> None:
        """Count ``n`` update records skipped as unreadable."""
        self._updates_rejected.inc(n)

    def set_overlay(self, n: int) -> None:
        """Set how many NPIs the updates currently override."""
        self._overlay.set(n)

    def set_updates_lag(self, n: int) -> None:
        """Set how many update records the follower is behind the topic's end (negative counts as 0)."""
        self._updates_lag.set(max(n, 0))
