"""Clean identifiers (issue 23, rule 8): unprintable claim ids, event ids, Rx numbers and keys are never used."""

from __future__ import annotations

import json
import unicodedata
from datetime import UTC, date, datetime
from typing import Annotated

import pytest
from pydantic import Field, TypeAdapter, ValidationError

from tests.unit.claims import NPIS, make_claim
from tests.unit.fakes import Rec
from worker.config.roles import request_settings
from worker.config.settings import load_settings
from worker.contracts.codec import Codec
from worker.contracts.codes import Outcome
from worker.contracts.identifiers import IDENTIFIER_PATTERN, is_clean_identifier, key_is_clean
from worker.contracts.model import Claim
from worker.contracts.pa_request import encode_pa_request
from worker.contracts.wire import EVENT_ID_HEADER
from worker.errors import DeadLetterClass
from worker.policy import default_policy
from worker.policy.facts import Facts
from worker.runtime.judge import Decider, judge
from worker.runtime.requests import REQUESTS, judge_request, route_request
from worker.runtime.route import route
from worker.state.dedupe import SeenEvents

NOW = datetime(2025, 3, 10, 12, 0, tzinfo=UTC)
CODEC = Codec()
POLICY = default_policy()
SETTINGS = load_settings({"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9"})

# What a sender can hide in an identifier; each must be refused. The marker "ZQ" makes a leak findable.
NASTY = [
    pytest.param("ZQ\x1b[2J", id="ESC-CSI-clear-screen"),
    pytest.param("ZQ\x1b]0;owned\x07", id="OSC-window-title-BEL"),
    pytest.param("ZQ\r", id="CR"),
    pytest.param("ZQ\x07", id="BEL"),
    pytest.param("ZQ\x08x", id="backspace"),
    pytest.param("ZQ\t1", id="tab"),
    pytest.param("ZQ\n1", id="newline"),
    pytest.param("ZQ\x00", id="NUL"),
    pytest.param("ZQ\x7f", id="DEL"),
    pytest.param("ZQ\x85", id="C1-NEL"),
    pytest.param("ZQ\x9b2J", id="C1-CSI"),
    pytest.param("ZQ\u202e1", id="bidi-RLO-override"),
    pytest.param("ZQ\u2066x", id="bidi-isolate"),
    pytest.param("ZQ\u200b", id="zero-width-space"),
    pytest.param("ZQ\ufeff", id="BOM"),
    pytest.param("ZQ\u2028", id="line-separator"),
    pytest.param("ZQ\u2029", id="paragraph-separator"),
    pytest.param("ZQ\u00a01", id="no-break-space"),
    pytest.param("ZQ\u30001", id="ideographic-space"),
    pytest.param("ZQ\ue000", id="private-use"),
    pytest.param("ZQ\U000e0041", id="tag-character"),
    pytest.param("ZQ\u0378", id="unassigned"),
    pytest.param(" ZQ1", id="leading-space"),
    pytest.param("ZQ1 ", id="trailing-space"),
]
CLEAN = ["CLM-2025-000123", "RX 123", "Müller-7", "処方123", "a  b"]

_PATTERN = TypeAdapter(Annotated[str, Field(pattern=IDENTIFIER_PATTERN)])


def _pattern_accepts(text: str) -> bool:
    try:
        _PATTERN.validate_python(text)
    except ValidationError:
        return False
    return True


def _judge(claim_record: dict[str, object], key: bytes | None = b"k"):
    """Encode a raw claim, judge and route it as the worker does; return the outgoing record."""
    record = Rec(CODEC.encode_claim(claim_record), key=key)
    judgement = judge(record, codec=CODEC, seen=SeenEvents(10), decided_at=NOW, decider=Decider(POLICY))
    return route(judgement, codec=CODEC, settings=SETTINGS, at=NOW)


def _raw(**overrides: object) -> dict[str, object]:
    return {**make_claim().model_dump(), **overrides}


class TestTheRule:
    """One rule, stated twice: the Rust pattern of the model and the Python check of keys agree."""

    @pytest.mark.parametrize("text", NASTY)
    def test_nasty_text_is_refused_by_both(self, text):
        """Controls, format characters, separators, odd spaces and edge spaces are not clean identifiers."""
        assert not is_clean_identifier(text)
        assert not _pattern_accepts(text)

    @pytest.mark.parametrize("text", CLEAN)
    def test_printable_text_and_inner_ascii_spaces_are_clean(self, text):
        """Letters of any script, digits, punctuation and ASCII spaces between them are clean."""
        assert is_clean_identifier(text)
        assert _pattern_accepts(text)

    def test_pattern_and_function_agree_on_every_assigned_character(self):
        """For every code point of planes 0, 1 and 14 that this Python's Unicode assigns, both give one answer."""
        planes = [*range(0x20000), *range(0xE0000, 0xE1000)]
        differ = [
            hex(cp)
            for cp in planes
            if not 0xD800 <= cp <= 0xDFFF
            and unicodedata.category(chr(cp)) != "Cn"  # the Unicode versions of Rust and Python differ there
            and _pattern_accepts(f"a{chr(cp)}b") != is_clean_identifier(f"a{chr(cp)}b")
        ]
        assert differ == []

    @pytest.mark.parametrize(
        ("key", "clean"),
        [
            (None, True),
            (b"", True),
            (b"SYNTH-CLM-0001", True),
            (b"\xff\xfe", False),
            (b"ZQ\x1b[2J", False),
            ("ZQ\u202e".encode(), False),
        ],
        ids=["none", "empty", "claim-id", "not-utf8", "ESC", "bidi"],
    )
    def test_keys(self, key, clean):
        """No key or an empty key is fine; a key must otherwise be UTF-8 and a clean identifier."""
        assert key_is_clean(key) is clean


class TestClaims:
    """Decode -> decide -> result: an unclean identifier gets a REJECTED result that does not echo it."""

    @pytest.mark.parametrize(
        ("field", "code", "extra"),
        [
            ("event_id", "85", {}),
            ("prescription_reference_number", "16", {}),
            ("service_provider_id", "05", {}),
            ("original_claim_id", "85", {"transaction_code": "B3"}),
        ],
    )
    @pytest.mark.parametrize("bad", NASTY)
    def test_unclean_field_is_rejected_with_its_code(self, field, code, extra, bad):
        """The claim is REJECTED with the field's M/I code, keyed by its clean claim id; the value is nowhere in it."""
        out = _judge(_raw(**extra, **{field: bad}))
        result = CODEC.decode_result(out.value)
        assert out.outcome is Outcome.REJECTED
        assert (out.topic, out.key, result["claim_id"]) == (SETTINGS.results_topic, b"clm-0001", "clm-0001")
        assert result["reject_codes"] == [code]
        assert result["ncpdp"]["rejects"][0]["field"] == field
        assert f"{field}: unprintable" in result["summary"]
        assert "ZQ" not in json.dumps(result, default=str)
        assert all(b"ZQ" not in value for _, value in out.headers)

    def test_unclean_event_id_leaves_no_event_id_behind(self):
        """A REJECTED answer to an unclean event id carries an empty source event id and no event-id header."""
        out = _judge(_raw(event_id="ZQ\x1b[2J"))
        assert CODEC.decode_result(out.value)["source_event_id"] == ""
        assert out.event_id is None
        assert EVENT_ID_HEADER not in [name for name, _ in out.headers]

    @pytest.mark.parametrize("bad", NASTY)
    def test_unclean_claim_id_is_a_dead_letter_naming_the_field(self, bad):
        """A claim id with unprintable text is no usable claim id: a dead letter whose reason names it, not its value."""
        out = _judge(_raw(claim_id=bad))
        letter = CODEC.decode_dead_letter(out.value)
        assert out.topic == SETTINGS.dead_letter_topic
        assert out.error_class is DeadLetterClass.INVALID_FIELD
        assert letter["reason"] == "claim_id: unprintable"
        assert "ZQ" not in letter["reason"]

    def test_clean_identifiers_with_inner_spaces_are_decided(self):
        """An Rx number with an inner ASCII space and a non-Latin claim id are judged as usual, not rejected."""
        out = _judge(_raw(prescription_reference_number="RX 12", claim_id="処方-1"))
        assert out.outcome is Outcome.APPROVED
        assert out.key == "処方-1".encode()

    @pytest.mark.parametrize("key", [b"\xff\xfe", b"ZQ\x1b]0;t\x07", b"ZQ\r", "ZQ\u202e".encode()], ids=str)
    def test_unclean_record_key_is_rejected_and_the_result_keyed_by_claim_id(self, key):
        """A valid claim under an unclean record key is REJECTED (85, field key); the result's key is the claim id."""
        out = _judge(_raw(), key=key)
        result = CODEC.decode_result(out.value)
        assert (out.outcome, out.key) == (Outcome.REJECTED, b"clm-0001")
        assert result["reject_codes"] == ["85"]
        assert result["ncpdp"]["rejects"][0]["field"] == "key"
        assert (EVENT_ID_HEADER, b"evt-0001") in out.headers

    def test_unclean_key_and_a_malformed_field_are_both_named(self):
        """With an unclean key and a bad NPI, the REJECTED result names both: key 85, then prescriber.npi 25."""
        out = _judge(_raw(prescriber={"npi": "1234567890", "taxonomy": None}), key=b"ZQ\x1b")
        result = CODEC.decode_result(out.value)
        assert result["reject_codes"] == ["85", "25"]
        assert [r["field"] for r in result["ncpdp"]["rejects"]] == ["key", "prescriber.npi"]

    def test_unclean_key_and_claim_id_is_a_dead_letter_naming_both(self):
        """With neither a clean key nor a clean claim id nobody can be answered: the reason names both fields."""
        out = _judge(_raw(claim_id="ZQ\x07"), key=b"ZQ\x1b")
        letter = CODEC.decode_dead_letter(out.value)
        assert letter["reason"] == "key: unprintable; claim_id: unprintable"

    def test_the_model_refuses_unclean_identifiers_whoever_builds_it(self):
        """Claim itself (not only the codec) refuses an unclean identifier, so no door can carry one in."""
        with pytest.raises(ValidationError) as info:
            Claim.model_validate(_raw(prescription_reference_number="1\u202e2"))
        assert [e["loc"] for e in info.value.errors()] == [("prescription_reference_number",)]


def _request_record(request_id: str, key: bytes | None) -> Rec:
    request = {
        "request_id": request_id,
        "requested_at": NOW,
        "patient": {
            "member_id": "SYN-M",
            "first_name": None,
            "last_name": "TEST",
            "date_of_birth": date(1970, 1, 1),
        },
        "prescriber": {"npi": NPIS[0], "taxonomy": "207RX0202X"},
        "consultant": None,
        "consultation_status": "UNKNOWN",
        "product": {"product_id": "70020-1910-01", "qualifier": "03"},
        "diagnoses": [{"code": "C50.911", "qualifier": "02"}, {"code": "C78.7", "qualifier": "02"}],
        "disease_status": "METASTATIC",
        "requested_start": date(2025, 3, 10),
    }
    return Rec(encode_pa_request(request), key=key, topic="pa.requests")


class TestPaRequests:
    """The request door: an unclean request id or key is a dead letter that names the field, not the value."""

    def _route(self, record: Rec):
        view = request_settings(
            load_settings(
                {
                    "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9",
                    "CLAIMS_PA_REQUESTS_TOPIC": "pa.requests",
                    "CLAIMS_PA_DECISIONS_TOPIC": "pa.decisions",
                    "CLAIMS_AUTHORIZATIONS_TOPIC": "pa.store",
                    "CLAIMS_MEMBER_PSEUDONYM_SECRET": "unit-test-secret-0123456789",
                }
            )
        )
        judgement = judge_request(
            record,
            codec=CODEC,
            seen=SeenEvents(10),
            decided_at=NOW,
            decider=Decider(POLICY, lookup_facts=lambda _claim: Facts(), dispensed=REQUESTS.dispensed),
        )
        return view, route_request(judgement, codec=CODEC, settings=view, at=NOW)

    @pytest.mark.parametrize("bad", NASTY)
    def test_unclean_request_id_is_a_dead_letter(self, bad):
        """A request id with unprintable text is never answered or put on file: a dead letter naming request_id."""
        view, out = self._route(_request_record(bad, b"k"))
        letter = CODEC.decode_dead_letter(out.value)
        assert out.topic == view.dead_letter_topic
        assert letter["reason"] == "invalid pa-request field(s): request_id (unprintable)"

    def test_unclean_request_key_is_a_dead_letter(self):
        """A clean request under an unclean record key is dead-lettered with the reason ``key: unprintable``."""
        view, out = self._route(_request_record("REQ-1", b"ZQ\x1b[2J"))
        assert out.topic == view.dead_letter_topic
        assert CODEC.decode_dead_letter(out.value)["reason"] == "key: unprintable"

    def test_clean_request_is_answered(self):
        """The same request with a clean id and key is answered on the PA-decisions topic."""
        view, out = self._route(_request_record("REQ-1", b"REQ-1"))
        assert out.topic == view.results_topic
        assert json.loads(out.value)["outcome"] == "APPROVED"
