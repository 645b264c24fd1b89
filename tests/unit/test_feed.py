"""The feed command's line-by-line validation and its all-or-nothing send (worker/cli/feed.py), with fakes."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING

import pytest

from worker.cli import feed, main
from worker.contracts.codec import CONFLUENT_MAGIC, SINGLE_OBJECT_MARKER, Codec
from worker.contracts.pa_request import decode_pa_request
from worker.kafka import topics
from worker.samples import demo_request

if TYPE_CHECKING:
    from pathlib import Path

PHI_MEMBER = "PHIMEMBER8675309"
PHI_NAME = "ZZPHILASTNAME"


def _claim(n: int, **overrides: object) -> dict:
    """A valid Ixempra billing claim as a feed line's JSON object (dates as ISO strings)."""
    data: dict[str, object] = {
        "event_id": f"evt-{n}",
        "event_time": "2025-03-01T10:00:00Z",
        "transaction_code": "B1",
        "claim_id": f"clm-{n}",
        "service_provider_id": "1999999976",
        "prescription_reference_number": str(n),
        "fill_number": 0,
        "date_of_service": "2025-03-01",
        "patient": {"member_id": PHI_MEMBER, "last_name": PHI_NAME, "date_of_birth": "1960-01-01"},
        "product": {"product_id": "70020191001", "qualifier": "03"},
        "quantity": 1,
        "days_supply": 21,
        "diagnoses": [{"code": "C50.911", "qualifier": "02"}],
        "prescriber": {"npi": "1234567893", "taxonomy": "207RX0202X"},
    }
    data.update(overrides)
    return data


def _request(**overrides: object) -> dict:
    """The bundled demo PA request as a feed line's JSON object."""
    data = json.loads(
        json.dumps(
            demo_request(), default=lambda v: v.isoformat() if isinstance(v, date | datetime) else None
        )
    )
    data.update(overrides)
    return data


def _jsonl(*objects: object) -> str:
    return "\n".join(o if isinstance(o, str) else json.dumps(o) for o in objects) + "\n"


class TestReadClaims:
    """Each line is validated with the worker's model and codec, and a bad one is named without its value."""

    def test_good_lines_are_keyed_by_claim_id_and_decode_back(self):
        """A good line becomes a record keyed by its claim id whose bytes the worker's codec reads as that claim."""
        codec = Codec()
        out = feed.read_claims(_jsonl(_claim(1), _claim(2)), codec)
        assert out.bad == []
        assert [(line.number, line.key) for line in out.good] == [(1, b"clm-1"), (2, b"clm-2")]
        claim = codec.decode_claim(out.good[0].value, out.good[0].key)
        assert claim.event_time == datetime(2025, 3, 1, 10, tzinfo=UTC)
        assert claim.patient.date_of_birth == date(1960, 1, 1)
        assert out.good[0].value.startswith(SINGLE_OBJECT_MARKER)

    def test_confluent_framing(self):
        """With Confluent framing the values start with the magic byte and still decode."""
        codec = Codec(wire_format="confluent")
        out = feed.read_claims(_jsonl(_claim(1)), codec)
        assert out.good[0].value.startswith(CONFLUENT_MAGIC)
        assert codec.decode_claim(out.good[0].value).claim_id == "clm-1"

    @pytest.mark.parametrize(
        ("line", "reason"),
        [
            pytest.param(
                _claim(
                    2, patient={"member_id": PHI_MEMBER, "last_name": PHI_NAME, "date_of_birth": "1960-13-01"}
                ),
                "patient.date_of_birth: date_from_datetime_parsing",
                id="bad-date-of-birth",
            ),
            pytest.param(
                _claim(2, prescriber={"npi": "1234567890"}), "prescriber.npi: npi_check_digit", id="npi"
            ),
            pytest.param(
                {k: v for k, v in _claim(2).items() if k != "claim_id"},
                "claim_id: missing",
                id="missing-field",
            ),
            pytest.param(
                _claim(2, transaction_code="B2"), "original_claim_id_required", id="reversal-without-original"
            ),
            pytest.param(_claim(2, claim_id="clm\u001b[2J"), "claim_id: unprintable", id="unclean-key"),
            pytest.param('{"event_id": ', "claim: json_invalid", id="not-json"),
        ],
    )
    def test_bad_line_named_by_number_and_field(self, line, reason):
        """A bad line is reported by its line number and field path, and holds no PHI value."""
        out = feed.read_claims(_jsonl(_claim(1), "", line), Codec())
        assert [n for n, _ in out.bad] == [3]
        text = out.bad[0][1]
        assert reason in text
        assert PHI_MEMBER not in text
        assert PHI_NAME not in text
        assert "1960-13-01" not in text


class TestReadRequests:
    """PA-request lines are checked against the pa-request schema and the request worker's field rules."""

    def test_good_request_is_keyed_by_request_id(self):
        """A good request is keyed by its request id and single-object encoded as the request worker reads it."""
        out = feed.read_requests(_jsonl(_request()))
        assert out.bad == []
        (line,) = out.good
        assert line.key == b"SYNTH-REQ-0001"
        assert decode_pa_request(line.value)["request_id"] == "SYNTH-REQ-0001"

    @pytest.mark.parametrize(
        ("overrides", "reason"),
        [
            pytest.param({"requested_start": "tomorrow"}, "requested_start: date_parsing", id="bad-date"),
            pytest.param({"prescriber": {"npi": "1234567890"}}, "prescriber.npi", id="npi"),
            pytest.param({"surprise": 1}, "surprise: extra_forbidden", id="unknown-field"),
            pytest.param({"consultation_status": "MAYBE"}, "consultation", id="bad-enum"),
        ],
    )
    def test_bad_request_named(self, overrides, reason):
        """A bad request line is named by number and field, never by a patient's value."""
        out = feed.read_requests(_jsonl(_request(**overrides)))
        assert [n for n, _ in out.bad] == [1]
        assert reason in out.bad[0][1]
        assert "SYNTHREQ0001" not in out.bad[0][1]

    def test_missing_fields(self):
        """A request without its required fields names each one."""
        out = feed.read_requests(_jsonl({"request_id": "r-1"}))
        assert "patient: missing" in out.bad[0][1]
        assert "requested_start: missing" in out.bad[0][1]


class _Sender:
    """Stands in for the Kafka side of the feed: records what would be sent."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, list[feed.FeedLine]]] = []

    def require_topic(self, _settings: object, _topic: str, _role: object) -> None:
        """The topic exists."""

    def send(self, _settings: object, topic: str, lines: list[feed.FeedLine]):
        """Send every line to partition 0."""
        self.sent.append((topic, lines))
        return Counter({0: len(lines)}), 0, None


@pytest.fixture
def sender(monkeypatch: pytest.MonkeyPatch) -> _Sender:
    """Replace the feed's Kafka calls with a recorder, and give it a broker address that is never dialled."""
    fake = _Sender()
    monkeypatch.setattr(topics, "require_topic", fake.require_topic)
    monkeypatch.setattr(feed, "send_lines", fake.send)
    for name in ("CLAIMS_WIRE_FORMAT", "CLAIMS_PA_REQUESTS_TOPIC", "CLAIMS_CLAIMS_TOPIC"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9")
    return fake


class TestFeedCommand:
    """The command sends all lines or none, and its exit code says which."""

    def test_one_bad_line_sends_nothing(self, sender, tmp_path: Path, capsys):
        """One bad line among good ones: exit 2, the line named on stderr, nothing sent."""
        path = tmp_path / "claims.jsonl"
        path.write_text(_jsonl(_claim(1), _claim(2, fill_number=-1), _claim(3)))
        assert main(["feed", str(path)]) == 2
        assert sender.sent == []
        err = capsys.readouterr().err
        assert f"{path}:2: fill_number: greater_than_equal" in err
        assert "nothing sent" in err

    def test_skip_bad_sends_the_good_lines(self, sender, tmp_path: Path, capsys):
        """With --skip-bad the good lines are sent and the summary counts the skipped ones."""
        path = tmp_path / "claims.jsonl"
        path.write_text(_jsonl(_claim(1), _claim(2, fill_number=-1), _claim(3)))
        assert main(["feed", str(path), "--skip-bad"]) == 0
        ((topic, lines),) = sender.sent
        assert (topic, [line.key for line in lines]) == ("pharmacy.claims", [b"clm-1", b"clm-3"])
        assert (
            "sent 2 claims to pharmacy.claims (single-object framing), 1 bad lines skipped; per partition 0: 2"
            in capsys.readouterr().out
        )

    def test_check_sends_nothing(self, sender, tmp_path: Path):
        """--check validates a good file and sends nothing."""
        path = tmp_path / "claims.jsonl"
        path.write_text(_jsonl(_claim(1)))
        assert main(["feed", str(path), "--check"]) == 0
        assert sender.sent == []

    def test_requests_need_their_topic(self, sender, tmp_path: Path, capsys):
        """--requests without CLAIMS_PA_REQUESTS_TOPIC is a settings error (exit 2)."""
        path = tmp_path / "requests.jsonl"
        path.write_text(_jsonl(_request()))
        assert main(["feed", str(path), "--requests"]) == 2
        assert "CLAIMS_PA_REQUESTS_TOPIC" in capsys.readouterr().err
        assert sender.sent == []

    def test_requests_go_to_the_request_topic(self, sender, tmp_path: Path, monkeypatch):
        """--requests sends to CLAIMS_PA_REQUESTS_TOPIC keyed by request id."""
        monkeypatch.setenv("CLAIMS_PA_REQUESTS_TOPIC", "pa.requests")
        path = tmp_path / "requests.jsonl"
        path.write_text(_jsonl(_request()))
        assert main(["feed", str(path), "--requests"]) == 0
        assert [(t, [line.key for line in lines]) for t, lines in sender.sent] == [
            ("pa.requests", [b"SYNTH-REQ-0001"])
        ]

    @pytest.mark.parametrize("content", [None, "", "\n\n"], ids=["missing-file", "empty", "blank-lines"])
    def test_no_file_or_no_lines(self, sender, tmp_path: Path, content):
        """A missing or empty file is exit 2 and sends nothing."""
        path = tmp_path / "claims.jsonl"
        if content is not None:
            path.write_text(content)
        assert main(["feed", str(path)]) == 2
        assert sender.sent == []
