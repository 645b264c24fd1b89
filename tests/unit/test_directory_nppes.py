"""The NPPES reader: the real layout's conventions, and malformed rows rejected with their line number."""

from __future__ import annotations

import io
from datetime import date

import pytest
from hypothesis import given
from hypothesis import strategies as st

from deploy.demo.nppes_sample import SAMPLE_PATH, SampleRow, header, sample_rows, write_nppes
from worker.cli import main
from worker.contracts.model import npi_is_valid
from worker.directory import Directory, NppesFormatError, read_nppes
from worker.directory.nppes import npi_ok

ONCOLOGY = "207RX0202X"


def _csv(rows, pad_columns=0):
    buffer = io.StringIO()
    write_nppes(buffer, rows, pad_columns=pad_columns)
    buffer.seek(0)
    return buffer


def _read(rows, **kwargs):
    return list(read_nppes(_csv(rows), **kwargs))


def test_reads_only_the_needed_columns_of_a_wide_file():
    """A file with 300 extra columns reads the same records as the narrow one (columns found by name)."""
    narrow = list(read_nppes(_csv(sample_rows())))
    wide = list(read_nppes(_csv(sample_rows(), pad_columns=300)))
    assert [(r.npi, r.taxonomies, r.primary) for r in wide] == [
        (r.npi, r.taxonomies, r.primary) for r in narrow
    ]
    assert len(header(300)) == len(header()) + 300


def test_columns_in_another_order_are_read_by_name():
    """Reordering the columns (and reversing the rows) changes nothing: the header names the columns."""
    names = header()
    order = names[::-1]
    rows = sample_rows()
    lines = [",".join(f'"{n}"' for n in order)]
    lines += [",".join(f'"{v}"' for v in reversed(r.cells(names))) for r in rows]
    records = list(read_nppes(io.StringIO("\r\n".join(lines) + "\r\n")))
    assert [r.npi for r in records] == [int(r.npi) for r in rows]
    assert records[4].taxonomies == ("207R00000X", "207RH0000X", ONCOLOGY)


def test_deactivated_row_has_blank_entity_and_a_date():
    """A deactivated NPI's row (blank entity type, only the date) reads as entity 0 with its date."""
    (record,) = _read([SampleRow("1444444446", "", deactivation="01/15/2024")])
    assert record.entity_type == 0
    assert record.deactivation == date(2024, 1, 15)
    assert record.taxonomies == ()


def test_line_numbers_count_physical_lines():
    """A record's line is its physical line in the file (the header is line 1)."""
    records = _read(sample_rows())
    assert [r.line for r in records] == list(range(2, 2 + len(sample_rows())))


@pytest.mark.parametrize(
    ("row", "message"),
    [
        (SampleRow("1234567890", "1", ((ONCOLOGY, "Y"),)), "check digit"),
        (SampleRow("123456789", "1", ((ONCOLOGY, "Y"),)), "10 digits"),
        (SampleRow("1234567893", "3", ((ONCOLOGY, "Y"),)), "Entity Type Code"),
        (SampleRow("1234567893", "", ((ONCOLOGY, "Y"),)), "blank only on a deactivated NPI"),
        (SampleRow("1234567893", "1", ((ONCOLOGY, "Y"),), deactivation="2024-01-15"), "Deactivation Date"),
        (SampleRow("1234567893", "1", ((ONCOLOGY, "Y"),), deactivation="02/30/2024"), "Deactivation Date"),
        (SampleRow("1234567893", "1", ((ONCOLOGY, "Y"),), reactivation="02/01/2024"), "Reactivation Date"),
        (SampleRow("1234567893", "1", (("207RX0202", "Y"),)), "Taxonomy Code_1"),
        (SampleRow("1234567893", "1", ((ONCOLOGY, "Y"), ("ONCOLOGIST", "N"))), "Taxonomy Code_2"),
        (SampleRow("1234567893", "1", ((ONCOLOGY, "P"),)), "Primary Taxonomy Switch_1"),
    ],
    ids=[
        "bad-check-digit",
        "nine-digits",
        "entity-3",
        "blank-entity-active",
        "iso-date",
        "impossible-date",
        "reactivation-without-deactivation",
        "short-taxonomy",
        "name-not-code",
        "bad-switch",
    ],
)
def test_malformed_row_is_rejected_with_its_line(row, message):
    """A malformed third data row stops the read with an error naming line 4 and the rule it broke."""
    rows = [*sample_rows()[:2], row]
    with pytest.raises(NppesFormatError, match=message) as caught:
        _read(rows)
    assert caught.value.line == 4
    assert str(caught.value).startswith("line 4: ")


def test_wrong_field_count_is_rejected():
    """A row with fewer fields than the header is rejected with its line."""
    text = _csv(sample_rows()[:1]).getvalue() + '"1234567893","1"\r\n'
    with pytest.raises(NppesFormatError, match=r"line 3: 2 fields where the header has"):
        list(read_nppes(io.StringIO(text)))


def test_missing_columns_in_header_are_named():
    """A header without the taxonomy columns is rejected on line 1, naming a missing column."""
    with pytest.raises(NppesFormatError, match=r"line 1: header lacks 30 NPPES column\(s\): 'Healthcare"):
        list(
            read_nppes(
                io.StringIO('"NPI","Entity Type Code","NPI Deactivation Date","NPI Reactivation Date"\r\n')
            )
        )


def test_empty_file_is_rejected():
    """An empty file is an error on line 1, not an empty index."""
    with pytest.raises(NppesFormatError, match="line 1: the file is empty"):
        list(read_nppes(io.StringIO("")))


def test_max_errors_skips_that_many_rows_and_reports_each():
    """With max_errors=1 one bad row is skipped and reported; a second bad row still fails the read."""
    bad = SampleRow("1234567890", "1", ((ONCOLOGY, "Y"),))
    seen = []
    records = _read([*sample_rows()[:2], bad, sample_rows()[2]], max_errors=1, on_error=seen.append)
    assert len(records) == 3
    assert [e.line for e in seen] == [4]
    with pytest.raises(NppesFormatError, match="line 5"):
        _read([*sample_rows()[:2], bad, bad], max_errors=1)


def test_cli_build_and_show(tmp_path, capsys):
    """`directory build` writes an index from the sample and `directory show` answers from it (exit 0)."""
    out = tmp_path / "dir.idx"
    code = main(
        [
            "directory",
            "build",
            str(SAMPLE_PATH),
            "--out",
            str(out),
            "--release",
            "s1",
            "--release-date",
            "2024-07-08",
            "--verify",
        ]
    )
    assert code == 0
    assert "11 NPIs" in capsys.readouterr().out
    with Directory.open(out) as directory:
        assert directory.version == "s1"
    assert main(["directory", "show", "--index", str(out), "--date", "2025-03-10", "2222222228"]) == 0
    assert '"status": "ORGANISATION"' in capsys.readouterr().out


def test_cli_build_malformed_file_exits_2_with_the_line(tmp_path, capsys):
    """A malformed row makes `directory build` exit 2 with one line naming the file and the line number."""
    source = tmp_path / "npidata_pfile_20050523-20241110.csv"
    write_nppes(source, [*sample_rows()[:3], SampleRow("1234567890", "1", ((ONCOLOGY, "Y"),))])
    code = main(["directory", "build", str(source), "--out", str(tmp_path / "x.idx")])
    err = capsys.readouterr().err
    assert code == 2
    assert f"error: {source}: line 5: NPI is not 10 digits" in err
    assert not (tmp_path / "x.idx").exists()


def test_cli_release_comes_from_the_nppes_file_name(tmp_path, capsys):
    """An npidata_pfile_<start>-<end>.csv builds release nppes-<end> dated <end>."""
    source = tmp_path / "npidata_pfile_20050523-20241110.csv"
    write_nppes(source, sample_rows())
    assert main(["directory", "build", str(source), "--out", str(tmp_path / "x.idx")]) == 0
    with Directory.open(tmp_path / "x.idx") as directory:
        assert directory.version == "nppes-20241110"
        assert directory.release_date == date(2024, 11, 10)


def test_cli_build_without_an_output_exits_2(tmp_path, capsys, monkeypatch):
    """Without --out and without CLAIMS_DIRECTORY_PATH the build exits 2 and says what to set."""
    monkeypatch.delenv("CLAIMS_DIRECTORY_PATH", raising=False)
    assert main(["directory", "build", str(SAMPLE_PATH)]) == 2
    assert "CLAIMS_DIRECTORY_PATH" in capsys.readouterr().err


@given(st.integers(min_value=0, max_value=9_999_999_999))
def test_fast_npi_check_agrees_with_the_claim_rule(number):
    """The build's unrolled check digit rule accepts exactly the NPIs the claim model accepts."""
    npi = f"{number:010d}"
    assert npi_ok(npi) == npi_is_valid(npi)


def test_fast_npi_check_refuses_non_ascii_digits():
    """Full-width or other Unicode digits are not an NPI, even when str.isdigit() says digits."""
    assert not npi_ok("\uff11234567893")
    assert npi_ok("1234567893")
