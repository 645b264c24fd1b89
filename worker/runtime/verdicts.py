"""What a diff compares: the verdict of one output, why two differ, and what the live worker published.

A verdict is what a comparison looks at in a result or dead letter (never ``decided_at`` or the worker
version); outputs are matched by the source coordinates of the claim they answer.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from worker.contracts.codes import DecisionSource
from worker.contracts.wire import ERROR_CLASS_HEADER
from worker.errors import ConfigError, DeadLetterClass
from worker.kafka.ranges import scan
from worker.state.authorizations import ON_FILE_SUMMARY as _ON_FILE_SUMMARY

if TYPE_CHECKING:
    from collections.abc import Mapping

    from worker.config.settings import Settings
    from worker.contracts.codec import Codec
    from worker.kafka.io import TopicPartition

__all__ = ["Coordinates", "Verdict", "read_live_verdicts", "refuse_baseline", "why"]

# Results and dead letters are written after their claim: read the live outputs from a little before
# the range's start, in case the producers' clocks disagree.
_CLOCK_MARGIN = timedelta(hours=1)

Coordinates = tuple[str, int, int]
"""Source coordinates of one claims record: topic, partition, offset."""


@dataclass(frozen=True, slots=True)
class Verdict:
    """What a comparison looks at in one output: never ``decided_at`` or the worker version."""

    outcome: str
    criteria: tuple[tuple[str, str, str], ...] = ()
    reject_codes: tuple[str, ...] = ()
    window: tuple[str, str] = ("", "")
    claim_id: str = ""
    source: str = ""
    references: tuple[tuple[str, str], ...] = ()  # reference data read, for the cause; not in key()
    week: str = "(unknown)"  # ISO week of the claim's event time, for the impact report; not in key()

    @classmethod
    def of_result(cls, result: Mapping[str, Any]) -> Verdict:
        """Return the verdict of a decoded result (v1, v2 or v3).

        The decision source is compared too (an approval on file vs one evaluated afresh). Results
        written before v3 named an on-file approval only in the summary: such a result reads as ON_FILE.
        """
        effective, expiration = result.get("authorization_effective"), result.get("authorization_expiration")
        source = str(result.get("decision_source") or DecisionSource.AUTOMATED_RULE.value)
        if source == DecisionSource.AUTOMATED_RULE.value and str(result.get("summary") or "").startswith(
            _ON_FILE_SUMMARY
        ):
            source = DecisionSource.ON_FILE.value
        return cls(
            outcome=str(result["outcome"]),
            source=source,
            criteria=tuple(
                (str(c["criterion_id"]), str(c["status"]), str(c["reason_code"]))
                for c in result.get("criteria") or ()
            ),
            reject_codes=tuple(str(code) for code in result.get("reject_codes") or ()),
            window=(str(effective or ""), str(expiration or "")),
            claim_id=str(result.get("claim_id") or ""),
            references=tuple(
                sorted((str(k), str(v)) for k, v in (result.get("reference_versions") or {}).items())
            ),
            week=_week(result.get("event_time")),
        )

    @classmethod
    def dead_letter(cls, error_class: str) -> Verdict:
        """Return the verdict of a dead letter: its class."""
        return cls(outcome=f"DEAD_LETTER:{error_class}")

    def key(self) -> tuple[object, ...]:
        """Return what must be equal for two verdicts to be the same (not the claim id: same record)."""
        return (self.outcome, self.criteria, self.reject_codes, self.window, self.source)

    def brief(self) -> dict[str, Any]:
        """Return a PHI-free summary for the changes file."""
        return {
            "outcome": self.outcome,
            "criteria": {cid: f"{status}/{reason}" for cid, status, reason in self.criteria},
            "reject_codes": list(self.reject_codes),
            "window": list(self.window) if any(self.window) else None,
            "decision_source": self.source or None,
        }


def _week(moment: object) -> str:
    """Return the ISO week of an event time (``2026-W49``), or ``(unknown)``."""
    if not isinstance(moment, datetime):
        return "(unknown)"
    year, week, _day = moment.isocalendar()
    return f"{year}-W{week:02d}"


def why(before: Verdict | None, after: Verdict) -> list[str]:
    """Name what changed between two verdicts: per criterion, reject codes, window."""
    if before is None:
        return ["no live result for these coordinates"]
    reasons: list[str] = []
    old = {cid: (status, reason) for cid, status, reason in before.criteria}
    new = {cid: (status, reason) for cid, status, reason in after.criteria}
    for cid in sorted(old.keys() | new.keys()):
        a, b = old.get(cid), new.get(cid)
        if a != b:
            was = "-" if a is None else f"{a[0]}({a[1]})"
            now = "-" if b is None else f"{b[0]}({b[1]})"
            reasons.append(f"{cid}: {was} -> {now}")
    if before.reject_codes != after.reject_codes:
        reasons.append(
            f"reject codes {','.join(before.reject_codes) or '-'} -> {','.join(after.reject_codes) or '-'}"
        )
    if before.window != after.window and any(before.window) and any(after.window):
        reasons.append("approval window")  # only between two approvals: otherwise the outcome says it
    if before.source != after.source and before.source and after.source:
        reasons.append(f"decision source {before.source} -> {after.source}")  # e.g. on file vs afresh
    if not reasons and before.outcome != after.outcome:
        reasons.append("outcome")
    return reasons


def read_live_verdicts(  # noqa: C901 - two topics, one filter
    settings: Settings,
    codec: Codec,
    ranges: Mapping[TopicPartition, tuple[int, int]],
    since: datetime,
    *,
    results: bool,
    foreign: set[str] | None = None,
) -> tuple[dict[Coordinates, Verdict], set[Coordinates]]:
    """Read what the live worker published for the range: verdicts by source coordinates, and duplicates.

    Reads the live dead-letter topic (and, when ``results``, the live results topic) from a little before
    ``since``; keeps only outputs whose source coordinates fall in ``ranges``. Duplicates are the
    coordinates the live worker dead-lettered as ``DUPLICATE_EVENT``. ``foreign`` (when given) gets the
    claims topics named by results that answer a topic outside ``ranges`` (a baseline of another stream).
    """
    wanted = {(tp.topic, tp.partition): span for tp, span in ranges.items()}
    topics = {tp.topic for tp in ranges}

    def in_range(source: Mapping[str, Any] | None) -> Coordinates | None:
        if not source:
            return None
        span = wanted.get((source["topic"], source["partition"]))
        if span is None or not span[0] <= source["offset"] < span[1]:
            return None
        return (source["topic"], source["partition"], source["offset"])

    verdicts: dict[Coordinates, Verdict] = {}
    duplicates: set[Coordinates] = set()
    start = since - _CLOCK_MARGIN
    for _partition, _offset, record in scan(settings, settings.dead_letter_topic, start):
        error_class = dict(record.headers or ()).get(ERROR_CLASS_HEADER)
        if error_class is None:
            continue
        letter = codec.decode_dead_letter(record.value)
        at = in_range(letter.get("source"))
        if at is None:
            continue
        verdicts[at] = Verdict.dead_letter(error_class.decode())
        if error_class.decode() == DeadLetterClass.DUPLICATE_EVENT.value:
            duplicates.add(at)
    if results:
        for _partition, _offset, record in scan(settings, settings.results_topic, start):
            result = codec.decode_result(record.value)
            source = result.get("source")
            at = in_range(source)
            if at is not None:
                verdicts[at] = Verdict.of_result(result)
            elif foreign is not None and source and source["topic"] not in topics:
                foreign.add(str(source["topic"]))
    return verdicts, duplicates


def refuse_baseline(
    settings: Settings,
    ranges: Mapping[TopicPartition, tuple[int, int]],
    verdicts: Mapping[Coordinates, Verdict],
    foreign: set[str],
) -> None:
    """Raise ``ConfigError`` (one line) when a diff's range has claims and the live outputs answer none.

    Results that name another claims topic say the results topic belongs to another stream; none at
    all says it is empty or wrong for the range. Either way a diff would call every claim changed.
    """
    if not verdicts and any(stop > first for first, stop in ranges.values()):
        claims, results = settings.claims_topic, settings.results_topic
        if foreign:
            others = ", ".join(repr(topic) for topic in sorted(foreign)[:3])
            msg = (
                f"refusing the diff: the results on {results!r} answer claims topic {others}, not {claims!r}"
                " (CLAIMS_RESULTS_TOPIC names another stream's results)"
            )
        else:
            msg = (
                f"refusing the diff: {results!r} holds no result or dead letter for the range of {claims!r}"
                " (an empty or wrong baseline would call every claim changed)"
            )
        raise ConfigError(msg)
