"""Reference data for the loop: the prescriber directory (index plus updates overlay) as ``Facts``.

``lookup(directory, claim)`` is the pure part: the prescriber's and the named consultant's
``ProviderFacts`` for the claim's date of service. ``ReferenceData`` holds the opened directory, its
updates follower and the lookup counts; ``open_reference`` builds it at start-up (docs/directory.md):

- the index is opened read-only (a missing or damaged index is a ``ConfigError``: exit 2);
- with ``CLAIMS_DIRECTORY_UPDATES_TOPIC`` the follower connects (retried like any start-up client) and
  reads the topic to its end before the worker reports ready (stoppable; past
  ``CLAIMS_DIRECTORY_CATCH_UP_TIMEOUT_S`` it raises ``KafkaTimeoutError``: exit 4);
- while running, the loop calls ``refresh()`` once per pass: it applies what the follower already
  fetched (no wait) and flushes the lookup counts to the metrics.

Every NPI a decision may rely on is looked up, whatever taxonomy the claim sends: the directory alone says
whether an NPI is an active individual, and a sent taxonomy is weighed against it (docs/policy.md,
"Prescriber identity and sent specialties").
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING

from worker.errors import ConfigError
from worker.policy.facts import Facts

if TYPE_CHECKING:
    import threading
    from collections.abc import Callable

    from structlog.typing import FilteringBoundLogger

    from worker.config.settings import Settings
    from worker.contracts.model import Claim
    from worker.directory import Directory
    from worker.directory.updates import DirectoryUpdates
    from worker.ops.directory_metrics import DirectoryMetrics, LookupRole
    from worker.policy.facts import ProviderFacts

__all__ = ["ReferenceData", "lookup", "open_reference"]

UPDATES_PER_PASS = 500
"""Most update records applied per loop pass (each is a dict assignment: microseconds)."""


def lookup(directory: Directory, claim: Claim) -> Facts:
    """Return the directory's facts on the claim's prescriber and named consultant (pure but for the map).

    Both are looked up whatever taxonomy the claim sends (a sent taxonomy never stands in for the
    directory's word on an NPI's status).
    ``directory_version`` names the index's release, followed by ``+<release>`` of any overlay update
    that answered for one of them, so a replay can tell a directory change from a policy change.
    """
    when = claim.date_of_service
    prescriber = directory.facts(claim.prescriber.npi, when)
    consultant = None
    consultation = None if claim.attestation is None else claim.attestation.consultation
    if consultation is not None and consultation.consultant_npi is not None:
        consultant = directory.facts(consultation.consultant_npi, when)
    return Facts(
        prescriber=prescriber,
        consultant=consultant,
        directory_version=_version(directory.version, prescriber, consultant),
    )


def _version(index: str, *providers: ProviderFacts | None) -> str:
    """Return the index's release, plus the newest overlay release that answered, if one did."""
    overlays = sorted(
        {p.directory_version for p in providers if p is not None and p.directory_version not in {None, index}}
        - {None}
    )
    return f"{index}+{overlays[-1]}" if overlays else index


class ReferenceData:
    """The opened directory, its optional updates follower and the lookup counts, for one worker."""

    def __init__(
        self,
        directory: Directory,
        updates: DirectoryUpdates | None = None,
        metrics: DirectoryMetrics | None = None,
    ) -> None:
        self.directory = directory
        self.updates = updates
        self.metrics = metrics
        self._counts: Counter[tuple[LookupRole, str]] = Counter()
        self._applied_seen = 0
        self._rejected_seen = 0
        if metrics is not None:
            metrics.set_directory(directory.version, directory.release_date)
        self._flush()

    def facts(self, claim: Claim) -> Facts:
        """Return the ``Facts`` for ``claim`` (the pipeline's ``lookup_facts``); counts each lookup."""
        facts = lookup(self.directory, claim)
        counts = self._counts
        if facts.prescriber is not None:
            counts["prescriber", facts.prescriber.status] += 1
        if facts.consultant is not None:
            counts["consultant", facts.consultant.status] += 1
        return facts

    def refresh(self) -> None:
        """Once per loop pass: apply the updates already fetched (no wait) and flush the counts."""
        if self.updates is not None:
            self.updates.poll(max_records=UPDATES_PER_PASS)
        self._flush()

    def _flush(self) -> None:
        metrics = self.metrics
        if metrics is None:
            self._counts.clear()
            return
        if self._counts:
            for (role, status), n in self._counts.items():
                metrics.record_lookup(role, status, n)
            self._counts.clear()
        updates = self.updates
        if updates is not None:
            if updates.applied != self._applied_seen:
                metrics.updates_applied(updates.applied - self._applied_seen)
                self._applied_seen = updates.applied
            if updates.rejected != self._rejected_seen:
                metrics.updates_rejected(updates.rejected - self._rejected_seen)
                self._rejected_seen = updates.rejected
            lag = updates.fetched_lag()  # no request: the high watermarks the follower's fetches saw
            if lag is not None:
                metrics.set_updates_lag(lag)
        metrics.set_overlay(self.directory.overlay_size)

    def close(self) -> None:
        """Close the follower's consumer and unmap the index; safe to call twice."""
        if self.updates is not None:
            self.updates.close()
            self.updates = None
        self.directory.close()


def open_reference(
    settings: Settings,
    log: FilteringBoundLogger,
    stop: threading.Event,
    *,
    metrics: DirectoryMetrics | None = None,
    connect: Callable[[Callable[[], DirectoryUpdates]], DirectoryUpdates] | None = None,
) -> ReferenceData | None:
    """Open the directory of ``settings`` (``None`` when ``CLAIMS_DIRECTORY_PATH`` is unset), caught up.

    Without a directory it logs ``prescriber_identity_unverified`` once (the callers publish
    ``claims_worker_prescriber_identity_verified`` 0): specialties are then self-reported.

    ``connect`` runs the follower's constructor (``cli.run`` passes its stoppable retries); the catch-up
    runs on a helper thread and raises ``Stopped`` within ~0.1 s of ``stop``. Raises ``ConfigError``
    (exit 2) for a missing or damaged index or a missing updates topic, ``KafkaTimeoutError`` (exit 4)
    when the topic is not read to its end within ``CLAIMS_DIRECTORY_CATCH_UP_TIMEOUT_S``.
    """
    if settings.directory_path is None:
        log.warning(
            "prescriber_identity_unverified",
            detail="no CLAIMS_DIRECTORY_PATH: prescriber and consultant specialties are self-reported "
            "(taxonomies sent on claims and requests) and NPI identities are unverified",
        )
        return None
    from worker.directory import Directory, DirectoryIndexError  # noqa: PLC0415 - only with a directory
    from worker.directory.updates import DirectoryUpdates  # noqa: PLC0415
    from worker.kafka.failures import interruptible  # noqa: PLC0415 - failures imports kafka_io

    try:
        directory = Directory.open(settings.directory_path)
    except DirectoryIndexError as exc:
        raise ConfigError(f"CLAIMS_DIRECTORY_PATH: {exc}") from None
    log.info("directory_opened", directory_version=directory.version, n=len(directory))
    topic = settings.directory_updates_topic
    if topic is None:
        return ReferenceData(directory, None, metrics)
    try:

        def make() -> DirectoryUpdates:
            return DirectoryUpdates.connect(settings, directory, topic, log)

        updates = connect(make) if connect is not None else make()
        timeout_s = settings.directory_catch_up_timeout_s
        interruptible(lambda: updates.catch_up(timeout_s), stop, "directory-catch-up")
    except BaseException:
        directory.close()
        raise
    return ReferenceData(directory, updates, metrics)
