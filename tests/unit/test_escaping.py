"""Terminal output (issue 23, rule 8): nothing a sender writes reaches an operator's terminal unescaped."""

from __future__ import annotations

import ast
import json
import re
import types
from collections import Counter
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from tests.unit.claims import make_claim
from tests.unit.sources import python_sources
from worker.cli import authorizations as auth_cli
from worker.cli.replay import diff_report, replay_report
from worker.config.settings import load_settings
from worker.contracts.codec import Codec
from worker.contracts.results import SourceCoordinates, build_dead_letter, build_result
from worker.errors import BadRecord, DeadLetterClass
from worker.ops import report
from worker.ops.escaping import echo, printable, printable_lines
from worker.policy import Facts, decide, default_policy
from worker.runtime.replay_job import ReplaySummary
from worker.state.authorization import Authorization
from worker.state.authorization_table import AuthorizationTable

NOW = datetime(2025, 3, 10, 12, 0, tzinfo=UTC)
CODEC = Codec()
WORKER = Path(__file__).resolve().parents[2] / "worker"

# What a sender may write to move a cursor, clear a row, retitle a terminal or reorder what is shown.
ATTACKS = {
    "csi-clear-screen": "\x1b[2J\x1b[H",
    "csi-erase-line": "\x1b[2K",
    "osc-title-bel": "\x1b]0;owned\x07",
    "osc-title-st": "\x1b]2;owned\x1b\\",
    "c1-csi": "\x9b2J",
    "carriage-return": "ok\rFAKE",
    "bell": "\x07",
    "backspace": "abc\x08\x08\x08",
    "bidi-override": "\u202edecnyd",
    "bidi-isolate": "\u2067x\u2069",
    "newline": "one\ntwo",
    "line-separator": "one\u2028two",
    "tag-character": "\U000e0041",
}
# The characters a terminal acts on or hides, as they would arrive.
RAW = ("\x1b", "\x07", "\r", "\x08", "\x9b", "\u202e", "\u2067", "\u2028", "\U000e0041")


def _shown(text: str) -> None:
    """Assert that ``text`` holds nothing but printable characters and the line breaks between lines."""
    assert all(line.isprintable() for line in text.split("\n")), repr(text)
    assert not any(raw in text for raw in RAW)


class TestPrintable:
    """The one escaping function."""

    @pytest.mark.parametrize("attack", ATTACKS.values(), ids=ATTACKS.keys())
    def test_every_attack_comes_out_as_visible_escapes(self, attack):
        """Each control or format character is written as a \\uXXXX escape, on one line."""
        out = printable(f"SYNTH-{attack}-1")
        _shown(out)
        assert "\n" not in out
        assert out.startswith("SYNTH-")

    def test_known_escapes(self):
        """ESC, BEL, CR, a bidi override and a tag character have fixed, readable escapes."""
        assert (
            printable("a\x1b]0;t\x07\r\u202e\U000e0041") == "a\\u001b]0;t\\u0007\\u000d\\u202e\\udb40\\udc41"
        )

    def test_printable_text_is_unchanged(self):
        """Printable text, including spaces, backslashes and other scripts, is returned as it is."""
        for text in ("SYNTH-CLM-0001", "a b", "C:\\x1b", "Müller 処方"):
            assert printable(text) == text

    @pytest.mark.parametrize("attack", ATTACKS.values(), ids=ATTACKS.keys())
    def test_json_stays_json_with_the_same_value(self, attack):
        """JSON printed through it (even written with ensure_ascii=False) decodes to the same value."""
        value = {"claim_id": attack, "n": 1}
        out = printable(json.dumps(value, ensure_ascii=False))
        _shown(out)
        assert json.loads(out) == value

    def test_lines_keep_their_own_breaks_only(self):
        """printable_lines keeps the newlines between lines and escapes the rest."""
        assert printable_lines("a\x1b\nb\rc") == "a\\u001b\nb\\u000dc"

    def test_echo_prints_escaped_lines(self, capsys):
        """echo is print through printable_lines, to stdout or the given file."""
        echo("x\x1b[2J\ny")
        assert capsys.readouterr().out == "x\\u001b[2J\ny\n"


def _result_record(offset: int, claim_id: str, summary: str) -> types.SimpleNamespace:
    claim = make_claim(claim_id=f"clm-{offset}")
    result = build_result(
        claim,
        decide(claim, Facts(), default_policy(), NOW),
        source=SourceCoordinates("claims", 0, offset),
        worker_version="t",
    )
    result["claim_id"], result["summary"], result["criteria"] = claim_id, summary, []
    return types.SimpleNamespace(value=CODEC.encode_result(result), partition=0, offset=offset, timestamp=0)


def _letter_record(offset: int, key: bytes, reason: str) -> types.SimpleNamespace:
    letter = build_dead_letter(
        key=key,
        value=b"x",
        headers=[],
        source=SourceCoordinates("claims", 0, offset),
        error=BadRecord(DeadLetterClass.NOT_AVRO, reason),
        worker_version="t",
        dead_lettered_at=NOW,
    )
    return types.SimpleNamespace(
        value=CODEC.encode_dead_letter(letter), partition=0, offset=offset, timestamp=0
    )


class TestPrinters:
    """Every printer of record content goes through the escaping function."""

    def test_show_results_escapes_every_cell_and_keeps_one_row_per_record(self, monkeypatch, capsys):
        """Claim ids, summaries, dead-letter keys and reasons with ESC, OSC, CR, BEL, bidi and newlines stay one escaped row each."""
        results = [_result_record(i, f"clm-{a}", f"why {a}") for i, a in enumerate(ATTACKS.values())]
        letters = [_letter_record(100 + i, a.encode(), f"r {a}") for i, a in enumerate(ATTACKS.values())]
        settings = load_settings({"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9"})

        def read_to_ends(_settings, topic, _progress=None):
            return iter(results if topic == settings.results_topic else letters)

        monkeypatch.setattr(report, "read_to_ends", read_to_ends)
        assert report.print_results(settings) == 0
        out = capsys.readouterr().out
        _shown(out)
        rows = [line for line in out.split("\n") if re.match(r"\d+:\d+ ", line)]
        assert len(rows) == len(results) + len(letters)
        assert "clm-\\u001b]0;owned\\u0007" in out

    def test_authorizations_show_and_revoke_escape_the_store(self, monkeypatch, capsys):
        """``authorizations show`` and a repeated revoke print the store's text (reason, source id) escaped."""
        table = AuthorizationTable()
        table.apply(
            Authorization(
                number="12345678903",
                member="m" * 64,
                policy_id="P",
                policy_version="1",
                product="70020191001",
                effective=date(2025, 3, 10),
                expiration=date(2026, 3, 9),
                source_kind="claim",
                source_id="clm\x1b]0;owned\x07",
                decided_at=NOW,
                revoked_at=NOW,
                revoked_reason="gone\x1b[2J\rFAKE\u202e",
            )
        )
        monkeypatch.setattr(auth_cli, "_read", lambda _settings, _topic: table)
        settings = load_settings(
            {
                "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9",
                "CLAIMS_AUTHORIZATIONS_TOPIC": "store",
                "CLAIMS_MEMBER_PSEUDONYM_SECRET": "unit-test-secret-0123456789",
            }
        )
        args = types.SimpleNamespace(number="12345678903", reason="DUPLICATE")
        assert auth_cli._show(args, settings) == 0
        assert auth_cli._revoke(args, settings) == 0
        out = capsys.readouterr().out
        _shown(out)
        assert "gone\\u001b[2J" in out  # show: the store's text, escaped
        assert "(a free-text reason)" in out  # revoke: an old free-text reason is not printed at all

    def test_authorizations_decisions_escape_each_answer(self, monkeypatch, capsys):
        """``authorizations decisions`` prints each answer as one escaped line, even one another producer wrote."""
        answers = [b'{"request_id": "R\x1b]0;t\x07"}', b"not json\r\x1b[2K", "\u202e".encode()]
        monkeypatch.setattr(
            "worker.kafka.reads.read_topic",
            lambda *_a, **_k: iter(types.SimpleNamespace(value=v) for v in answers),
        )
        settings = load_settings(
            {
                "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9",
                "CLAIMS_PA_DECISIONS_TOPIC": "decisions",
            }
        )
        assert auth_cli._decisions(types.SimpleNamespace(), settings) == 0
        out = capsys.readouterr().out
        _shown(out)
        assert out.count("\n") == len(answers)

    def test_replay_reports_escape_what_they_read(self, tmp_path):
        """A replay's outcomes, transitions and reasons (read back from topics) are printed escaped."""
        bad = "OK\x1b[2K\rAPPROVED"
        summary = ReplaySummary(
            "r1",
            outcomes=Counter({bad: 1}),
            transitions=Counter({(bad, "PENDED"): 1}),
            reasons=Counter({(bad, "PENDED", "x\u202ey\nz"): 1}),
        )
        text = (
            diff_report(summary, "P/1", tmp_path / "c.jsonl") + "\n" + replay_report(summary, "P/1", "o", "d")
        )
        _shown(text)
        assert "x\\u202ey\\u000az" in text


def test_no_command_line_module_prints_without_escaping():
    """No module of worker/cli nor worker/ops/report.py or explain.py calls print(): every line goes through echo."""
    modules = [*python_sources(WORKER / "cli"), WORKER / "ops" / "report.py", WORKER / "ops" / "explain.py"]
    offenders = [
        f"{path.relative_to(WORKER)}:{node.lineno}"
        for path in modules
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "print"
    ]
    assert offenders == []
