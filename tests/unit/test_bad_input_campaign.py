"""The bad-input campaign's own checks (tests/chaos/bad_input_campaign.py): each violation it must catch is caught.

The campaign itself runs against a real broker under ``make chaos-input``; these feed its per-input judge
made-up answers, so a checker that passed everything would fail here.
"""

from __future__ import annotations

import random
from collections import Counter

import pytest

from tests.chaos.bad_input_campaign import judge
from tests.chaos.bad_inputs import MARKER_HEADER, Expect, Input, make_inputs


def _letter(item: Input, **changes: object) -> tuple[str, dict]:
    out = {
        "original_key": item.key,
        "original_value": item.value,
        "original_headers": [{"key": k, "value": v} for k, v in item.headers],
        "error_class": "NOT_AVRO",
    }
    return ("dead_letter", out | changes)


def _result(outcome: str, claim_id: str | None, codes: list[str] | None = None) -> tuple[str, dict]:
    return ("result", {"outcome": outcome, "claim_id": claim_id, "reject_codes": codes or []})


DEAD = Input("random", b"k", b"\x01\x02", [("h", b"\xff"), (MARKER_HEADER, b"7")], Expect.DEAD)
VALID = Input("valid", b"clm-1", b"\xc3\x01...", [(MARKER_HEADER, b"8")], Expect.RESULT, "clm-1")
BAD_FIELD = Input("invalid-field", b"bad-1", b"\xc3\x01...", [], Expect.REJECTED, "bad-1")
NEAR_LIMIT = Input("near-size-limit", b"k", b"x" * 10, [], Expect.ANSWER)


def test_the_expected_answers_pass():
    """A faithful dead letter, a judged claim, a REJECTED with codes, a TOO_LARGE near the limit: no violation."""
    assert judge(DEAD, [_letter(DEAD)]) == ("dead letter NOT_AVRO", None)
    assert judge(VALID, [_result("APPROVED", "clm-1")]) == ("result APPROVED", None)
    assert judge(BAD_FIELD, [_result("REJECTED", "bad-1", ["19"])]) == ("result REJECTED", None)
    too_large = _letter(NEAR_LIMIT, error_class="TOO_LARGE", original_value=None, original_headers=[])
    assert judge(NEAR_LIMIT, [too_large]) == ("dead letter TOO_LARGE", None)


@pytest.mark.parametrize(
    ("item", "got", "violation"),
    [
        (DEAD, [], "unanswered"),
        (DEAD, [_letter(DEAD), _letter(DEAD)], "answered more than once"),
        (DEAD, [_letter(DEAD, original_value=b"\x01")], "dead letter does not keep the original bytes"),
        (DEAD, [_letter(DEAD, original_key=None)], "dead letter does not keep the original bytes"),
        (DEAD, [_letter(DEAD, original_headers=[])], "dead letter does not keep the original bytes"),
        (DEAD, [_result("APPROVED", None)], "result for an input that must be a dead letter"),
        (
            DEAD,
            [_letter(DEAD, error_class="TOO_LARGE", original_value=None)],
            "unexpected TOO_LARGE dead letter",
        ),
        (VALID, [_letter(VALID)], "dead letter for an input that must get a result"),
        (VALID, [_result("REJECTED", "clm-1", ["85"])], "a claim that must be judged was REJECTED"),
        (VALID, [_result("APPROVED", "clm-2")], "result names another claim id"),
        (BAD_FIELD, [_result("DENIED", "bad-1")], "no REJECTED result with reject codes"),
        (BAD_FIELD, [_result("REJECTED", "bad-1", [])], "no REJECTED result with reject codes"),
    ],
)
def test_each_violation_is_caught(item, got, violation):
    """Every rule of the campaign's check names its violation."""
    assert judge(item, got)[1] == violation


def test_the_plan_marks_every_input_once_and_holds_every_kind():
    """Each input's marker header is its index; malformed and valid inputs come in the asked numbers."""
    inputs = make_inputs(600, 100, random.Random(3))
    markers = [dict(item.headers)[MARKER_HEADER] for item in inputs]
    assert markers == [str(i).encode() for i in range(len(inputs))]
    kinds = Counter(item.kind for item in inputs)
    assert kinds.pop("valid") == 100
    assert sum(kinds.values()) == 600
    assert {
        "truncated",
        "wrong-fingerprint",
        "confluent-unknown-id",
        "wrong-types",
        "invalid-field",
        "control-in-claim-id",
        "control-in-text",
        "bidi-in-claim-id",
        "oversized-field",
        "null-required",
        "many-headers",
        "large-headers",
        "empty",
        "tombstone",
        "non-utf8-key",
    } <= set(kinds)
