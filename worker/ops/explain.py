"""Explain one decision as a PA pharmacist reads it: outcome, criteria, evidence, needs, PA, versions, source.

Pure: from the rows ``show-results`` decodes (``worker.ops.report.Row``) to one structured explanation
(``explain``, the JSON form) and to text lines (``text_lines``). Every value in the text is escaped on
its own (``worker.ops.escaping.printable``) before lines are built, so nothing a sender wrote into an
id, an evidence item or a reason can start a line of its own or act on the terminal; the JSON form is
ASCII-only. Nothing here reads Kafka.
"""

from __future__ import annotations

import json
import textwrap
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any

from worker.contracts.codes import DecisionSource, InformationNeed, Outcome, PolicySelection
from worker.contracts.results import NEED_MESSAGES
from worker.contracts.wire import (
    REPLAY_AUTHORIZATIONS_HEADER,
    REPLAY_DIRECTORY_HEADER,
    REPLAY_ID_HEADER,
    REPLAY_POLICY_HEADER,
)
from worker.ops.escaping import printable
from worker.ops.report import DEAD_LETTER, RESULT

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence

    from worker.ops.report import Row

__all__ = ["REPLAY_HEADERS", "explain", "json_text", "newest_last", "replay_headers", "text_lines"]

# The headers a replay writes beside its results (worker/runtime/replay.py), shown under their short names.
REPLAY_HEADERS = {
    REPLAY_ID_HEADER: "id",
    REPLAY_POLICY_HEADER: "policy",
    REPLAY_DIRECTORY_HEADER: "directory",
    REPLAY_AUTHORIZATIONS_HEADER: "authorizations",
}
_OUTCOME_TEXT = {
    Outcome.PENDED: "more information needed (see needed)",
    Outcome.NOT_APPLICABLE: "the policy does not apply; the downstream adjudication answers",
    Outcome.REVERSED: "reversal accepted",
    Outcome.REFERRED: "sent to clinical review",
    Outcome.REJECTED: "a malformed field: correct and resubmit",
}
# Why a result lists no criterion, by the step that decided it.
_NO_CRITERIA = {
    DecisionSource.ON_FILE: "none evaluated: paid against the authorization on file",
    DecisionSource.FIELD_EDIT: "none evaluated: the claim was rejected at the field edits",
    DecisionSource.PRODUCT_NOT_IDENTIFIED: "none evaluated: the product was not identified",
}
# Why the version applied (result v4 ``policy_selection``; absent before v4 and for REJECTED answers).
_SELECTION_TEXT = {
    PolicySelection.IN_EFFECT: "in effect on the date of service",
    PolicySelection.PINNED: "pinned by CLAIMS_POLICY or replay --policy",
    PolicySelection.CONTINUITY: "continuity of care: an earlier version's terms kept",
    PolicySelection.EARLIEST_VERSION: "the earliest version: the date of service precedes every version",
}
_WIDTH = 100  # text lines are wrapped here (the explanation and summary are free text)
_LABEL = 13  # width of the labels of the first block


def replay_headers(headers: Iterable[tuple[str, bytes | None]] | None) -> dict[str, str]:
    """Return the replay headers of a record (short name -> value; ``{}`` for a live result).

    Values are decoded as UTF-8 with replacement; printing escapes them like any other value.
    """
    found: dict[str, str] = {}
    for key, value in headers or ():
        name = REPLAY_HEADERS.get(key)
        if name is not None:
            found[name] = (value or b"").decode("utf-8", "replace")
    return found


def _iso(value: object) -> object:
    """Return a date or time as ISO text (UTC times end in ``Z``); anything else unchanged."""
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            value = value.astimezone(UTC)
        return value.isoformat(timespec="seconds").replace("+00:00", "Z")
    if isinstance(value, date):
        return value.isoformat()
    return value


def _need_message(need: str) -> str:
    """Return the pharmacy message of a need (the need itself for a symbol this worker does not know)."""
    try:
        return NEED_MESSAGES[InformationNeed(need)]
    except (ValueError, KeyError):
        return need


def _needed(result: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Return each need of the result, in order, with its pharmacy message and the criteria that raised it."""
    needs: list[str] = list(result["needs"])
    for criterion in result["criteria"]:
        needs += [need for need in criterion["needs"] if need not in needs]
    out = []
    for need in needs:
        raised = [
            {"criterion_id": c["criterion_id"], "reason_code": c["reason_code"]}
            for c in result["criteria"]
            if need in c["needs"]
        ]
        out.append({"need": need, "message": _need_message(need), "criteria": raised})
    return out


def _written(row: Row) -> dict[str, Any]:
    """Return where the explained record itself sits (its topic coordinates and Kafka timestamp)."""
    stamp = datetime.fromtimestamp(row.timestamp_ms / 1000, UTC)
    return {
        "topic": row.topic,
        "partition": row.partition,
        "offset": row.offset,
        "timestamp": stamp.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
    }


def explain(row: Row, replay: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Return the explanation of one result (or dead letter) row as plain JSON-ready values.

    ``replay`` holds the record's replay headers (``replay_headers``); ``None`` or empty for a live
    result. A dead letter's explanation holds its class, reason and coordinates only, never the
    sender's bytes (PHI). Raises ``ValueError`` for an unreadable row (nothing to explain).
    """
    if row.kind == DEAD_LETTER:
        letter = row.record
        return {
            "kind": DEAD_LETTER,
            "claim_id": row.claim_id,
            "record": _written(row),
            "replay": dict(replay or {}),
            "source": dict(letter["source"]),
            "error_class": letter["error_class"],
            "reason": letter["reason"],
            "worker_version": letter["worker_version"],
            "dead_lettered_at": _iso(letter["dead_lettered_at"]),
        }
    if row.kind != RESULT:
        msg = f"an unreadable record has no decision to explain ({row.topic}[{row.partition}]@{row.offset})"
        raise ValueError(msg)
    result = row.record
    number = result["authorization_number"]
    authorization = (
        None
        if number is None and result["authorization_effective"] is None
        else {
            "number": number,
            "effective": _iso(result["authorization_effective"]),
            "expiration": _iso(result["authorization_expiration"]),
        }
    )
    return {
        "kind": RESULT,
        "claim_id": result["claim_id"],
        "source_event_id": result["source_event_id"],
        "transaction_code": result["transaction_code"],
        "outcome": result["outcome"],
        "decision_source": result["decision_source"],
        "recommendation": result["recommendation"],
        "paid_on_file": result["decision_source"] == DecisionSource.ON_FILE,
        "criteria": [
            {
                "criterion_id": c["criterion_id"],
                "status": c["status"],
                "reason_code": c["reason_code"],
                "evidence": list(c["evidence"]),
                "needs": list(c["needs"]),
                "explanation": c["explanation"],
            }
            for c in result["criteria"]
        ],
        "source_criteria": list(result["source_criteria"]),
        "needed": _needed(result),
        "authorization": authorization,
        "policy": {
            "id": result["policy_id"],
            "version": result["policy_version"],
            "selection": result.get("policy_selection"),
        },
        "reference_versions": dict(sorted(result["reference_versions"].items())),
        "product": None if result["matched_product"] is None else dict(result["matched_product"]),
        "pharmacy": {
            "response_status": result["ncpdp"]["response_status"],
            "rejects": [dict(reject) for reject in result["ncpdp"]["rejects"]],
            "messages": list(result["ncpdp"]["messages"]),
        },
        "summary": result["summary"],
        "event_time": _iso(result["event_time"]),
        "decided_at": _iso(result["decided_at"]),
        "worker_version": result["worker_version"],
        "source": dict(result["source"]),
        "record": _written(row),
        "replay": dict(replay or {}),
    }


def json_text(explained: Mapping[str, Any]) -> str:
    """Return ``explained`` as one ASCII-only JSON line (every control character written as an escape)."""
    return json.dumps(explained, ensure_ascii=True, sort_keys=False)


def newest_last(rows: Sequence[tuple[Row, Mapping[str, str]]]) -> list[tuple[Row, Mapping[str, str]]]:
    """Return ``rows`` oldest first: by the record's Kafka timestamp, then topic, partition and offset."""
    return sorted(
        rows, key=lambda pair: (pair[0].timestamp_ms, pair[0].topic, pair[0].partition, pair[0].offset)
    )


# -- text ------------------------------------------------------------------------------------------------


def _line(label: str, text: str) -> str:
    """Return one labelled line of the first block (``text`` already escaped)."""
    return f"  {label:<{_LABEL}} {text}".rstrip()


def _wrapped(text: object, first: str, rest: str | None = None) -> list[str]:
    """Return free text escaped and wrapped at ``_WIDTH``: ``first`` starts it, ``rest`` indents the rest."""
    indent = first if rest is None else rest
    lines = textwrap.wrap(printable(text), _WIDTH, initial_indent=first, subsequent_indent=indent)
    return lines or [first.rstrip()]


def _src(source: Mapping[str, Any]) -> str:
    return f"{source['partition']}:{source['offset']}"


def _coordinates(explained: Mapping[str, Any]) -> list[str]:
    """Return the lines naming the claims-topic source, the record itself and a replay's headers."""
    source, record = explained["source"], explained["record"]
    lines = [
        _line(
            "source",
            f"{printable(source['topic'])} partition {source['partition']} offset {source['offset']}"
            f" (src {_src(source)})",
        ),
        _line(
            "record",
            f"{printable(record['topic'])}[{record['partition']}]@{record['offset']},"
            f" written {record['timestamp']}",
        ),
    ]
    replay = explained["replay"]
    if replay:
        shown = ", ".join(f"{name} {printable(value)}" for name, value in replay.items())
        lines.append(_line("replay", shown))
    return lines


def _outcome_line(explained: Mapping[str, Any]) -> str:
    outcome = explained["outcome"]
    parts = [_OUTCOME_TEXT[outcome]] if outcome in _OUTCOME_TEXT else []
    if explained["recommendation"] is not None:
        parts.append(f"recommendation to the reviewer {explained['recommendation']}")
    shown = printable(outcome) + (f": {printable(', '.join(parts))}" if parts else "")
    return f"{shown}; decided by {printable(explained['decision_source'])}"


def _authorization_lines(explained: Mapping[str, Any]) -> list[str]:
    auth = explained["authorization"]
    if auth is None:
        pa = "none issued"
    else:
        number = "-" if auth["number"] is None else printable(auth["number"])
        pa = f"{number}, window {auth['effective']} through {auth['expiration']} (498-PY, 498-PS/PT)"
    if explained["paid_on_file"]:
        on_file = "yes: paid against the authorization on file in its original window; not re-evaluated"
    elif explained["criteria"]:
        on_file = "no: the criteria were evaluated for this claim"
    else:
        on_file = "no"
    return [_line("PA", pa), _line("paid on file", on_file)]


def _versions(explained: Mapping[str, Any]) -> list[str]:
    policy = explained["policy"]
    references = explained["reference_versions"]
    shown = ", ".join(f"{printable(name)} {printable(version)}" for name, version in references.items())
    return [
        _line(
            "policy", f"{printable(policy['id'])} {printable(policy['version'])}{_why(policy['selection'])}"
        ),
        _line("references", shown or "none read"),
        _line("worker", f"claims-worker {printable(explained['worker_version'])}"),
    ]


def _why(selection: str | None) -> str:
    """Return ", <why the version applied>" for a known selection, else nothing."""
    if selection is None or selection not in PolicySelection.__members__:
        return ""
    return f", {_SELECTION_TEXT[PolicySelection(selection)]}"


def _product(explained: Mapping[str, Any]) -> str:
    product = explained["product"]
    if product is None:
        return _line("product", "no policy product matched")
    return _line(
        "product",
        f"{printable(product['code'])} {printable(product['name'])}"
        f" ({printable(product['system'])}, read as {printable(product['reading'])})",
    )


def _pharmacy(explained: Mapping[str, Any]) -> list[str]:
    answer = explained["pharmacy"]
    status = answer["response_status"] or "none (downstream answers)"
    rejects = "; ".join(
        f"{printable(r['code'])} {printable(r['message'])}"
        + (f" (field {printable(r['field'])})" if r["field"] else "")
        + (f" (occurrence {r['occurrence']})" if r["occurrence"] is not None else "")
        for r in answer["rejects"]
    )
    lines = [_line("pharmacy", f"112-AN {printable(status)}; 511-FB {rejects or 'no reject'}")]
    if answer["messages"]:
        lines.append(_line("", "messages: " + " / ".join(printable(m) for m in answer["messages"])))
    return lines


def _criteria(explained: Mapping[str, Any]) -> list[str]:
    criteria = explained["criteria"]
    if not criteria:
        reason = _NO_CRITERIA.get(explained["decision_source"], "none evaluated")
        return [f"criteria: {reason}"]
    deciding = explained["source_criteria"]
    rests = f"; the outcome rests on {_ids(deciding)}" if deciding else ""
    lines = [f"criteria ({len(criteria)}, in policy order{rests})"]
    for c in criteria:
        lines.append(
            f"  {printable(c['criterion_id'])}  {printable(c['status']):<8} {printable(c['reason_code'])}"
        )
        evidence = [printable(item) for item in c["evidence"]] or ["(none)"]
        lines.append(f"       evidence  {evidence[0]}")
        lines += [f"                 {item}" for item in evidence[1:]]
        if c["needs"]:
            lines.append("       needs     " + ", ".join(printable(n) for n in c["needs"]))
        lines += _wrapped(c["explanation"], "       why       ", " " * 17)
    return lines


def _ids(ids: Sequence[str]) -> str:
    return ", ".join(printable(i) for i in ids)


def _needed_lines(explained: Mapping[str, Any]) -> list[str]:
    needed = explained["needed"]
    if not needed:
        return ["needed: nothing"]
    lines = ["needed (what the prescriber's office must send, and why)"]
    for item in needed:
        why = ", ".join(
            f"{printable(c['criterion_id'])} {printable(c['reason_code'])}" for c in item["criteria"]
        )
        why = f"criterion {why}" if why else f"the {printable(explained['decision_source'])} step"
        lines.append(f"  {printable(item['need'])}: {printable(item['message'])} ({why})")
    return lines


def _dead_letter_lines(explained: Mapping[str, Any]) -> list[str]:
    return [
        (
            f"{printable(explained['claim_id']) or '(no key)'}  DEAD LETTER"
            f" {printable(explained['error_class'])}"
        ),
        *_coordinates(explained),
        _line("reason", printable(explained["reason"])),
        _line("worker", f"claims-worker {printable(explained['worker_version'])}"),
        "  no decision: the worker could not judge the record (its bytes stay on the dead-letter topic)",
    ]


def text_lines(explained: Mapping[str, Any]) -> list[str]:
    """Return the text form of one explanation, every value escaped (lines hold no control character)."""
    if explained["kind"] == DEAD_LETTER:
        return _dead_letter_lines(explained)
    claim = (
        f"{printable(explained['claim_id'])}  {printable(explained['transaction_code'])}"
        f"  event {printable(explained['source_event_id']) or '-'}"
    )
    return [
        claim,
        _line("outcome", _outcome_line(explained)),
        *_authorization_lines(explained),
        *_criteria(explained),
        *_needed_lines(explained),
        "decision",
        *_pharmacy(explained),
        _product(explained),
        *_versions(explained),
        *_coordinates(explained),
        _line("received", f"{explained['event_time'] or '-'}; decided {explained['decided_at']}"),
        "summary",
        *_wrapped(explained["summary"], "  "),
    ]
