"""The `claims-worker directory` commands' answers and exit codes that need no broker."""

from __future__ import annotations

import json

from deploy.demo.nppes_sample import SAMPLE_PATH
from worker.cli import main


def test_build_is_quiet_on_stderr_when_not_a_tty(tmp_path, capsys):
    """Without a terminal the build prints no progress bar: stderr stays empty and stdout has one summary line."""
    code = main(["directory", "build", str(SAMPLE_PATH), "--out", str(tmp_path / "d.idx"), "--release", "r"])
    out, err = capsys.readouterr()
    assert code == 0
    assert err == ""
    assert out.count("\n") == 1
    assert out.startswith(f"built {tmp_path / 'd.idx'}: release r, 11 NPIs")


def test_info_prints_the_header_and_verifies(tmp_path, capsys):
    """`directory info --verify` prints the release, row count and code count of a sound index."""
    index = tmp_path / "d.idx"
    assert main(["directory", "build", str(SAMPLE_PATH), "--out", str(index), "--release", "r"]) == 0
    capsys.readouterr()
    assert main(["directory", "info", str(index), "--verify"]) == 0
    header = json.loads(capsys.readouterr().out)
    assert header["release"] == "r"
    assert header["rows"] == 11
    assert header["codes"] == 17
    assert header["size_bytes"] == index.stat().st_size


def test_info_on_a_csv_exits_2(capsys):
    """Pointing `directory info` at a CSV (not an index) exits 2 with one error line."""
    assert main(["directory", "info", str(SAMPLE_PATH)]) == 2
    assert capsys.readouterr().err.startswith("error: ")


def test_publish_without_a_topic_exits_2(monkeypatch, capsys):
    """`directory publish` with no --topic and no CLAIMS_DIRECTORY_UPDATES_TOPIC exits 2 naming the setting."""
    monkeypatch.delenv("CLAIMS_DIRECTORY_UPDATES_TOPIC", raising=False)
    assert main(["directory", "publish", str(SAMPLE_PATH)]) == 2
    assert "CLAIMS_DIRECTORY_UPDATES_TOPIC" in capsys.readouterr().err


def test_publish_of_a_missing_file_exits_2(tmp_path, capsys):
    """`directory publish` of a file that does not exist exits 2 before touching Kafka."""
    assert main(["directory", "publish", str(tmp_path / "nope.csv"), "--topic", "t"]) == 2
    assert "no such file" in capsys.readouterr().err


def test_show_unknown_and_deactivated(tmp_path, capsys):
    """`directory show` prints one JSON line per NPI with its status on the given date."""
    index = tmp_path / "d.idx"
    assert main(["directory", "build", str(SAMPLE_PATH), "--out", str(index)]) == 0
    capsys.readouterr()
    assert (
        main(["directory", "show", "--index", str(index), "--date", "2025-03-10", "1444444446", "1999999999"])
        == 0
    )
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["status"] for line in lines] == ["DEACTIVATED", "NOT_FOUND"]
