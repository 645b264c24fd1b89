"""The prescriber directory: lookups from an index built from the bundled synthetic NPPES sample."""

from __future__ import annotations

import io
from datetime import date

import pytest

from deploy.demo.nppes_sample import (
    SAMPLE_PATH,
    SAMPLE_RELEASE,
    SampleRow,
    build_sample_index,
    generated_rows,
    sample_rows,
    with_check_digit,
    write_nppes,
)
from worker.contracts.model import npi_is_valid
from worker.directory import Directory, DirectoryIndexError, Entry, build_index, read_nppes
from worker.directory.layout import FORMAT_VERSION, MAGIC
from worker.directory.nppes import open_text
from worker.policy.facts import ProviderStatus

ONCOLOGY = "207RX0202X"
DOS = date(2025, 3, 10)
RELEASE_DATE = date(2024, 7, 8)


def _build(tmp_path, rows, name="idx.bin", release="test-release"):
    buffer = io.StringIO()
    write_nppes(buffer, rows)
    buffer.seek(0)
    path = tmp_path / name
    build_index(read_nppes(buffer), path, release=release, release_date=RELEASE_DATE, source="test.csv")
    return path


@pytest.fixture
def directory(tmp_path):
    path = tmp_path / "sample.idx"
    build_index(
        read_nppes(open_text(str(SAMPLE_PATH), [0])),
        path,
        release="nppes-sample",
        release_date=RELEASE_DATE,
        source=SAMPLE_PATH.name,
    )
    with Directory.open(path, verify=True) as opened:
        yield opened


def test_bundled_sample_is_the_generator_output():
    """The bundled CSV is exactly what sample_rows() writes, so the file and the labelled cases agree."""
    buffer = io.StringIO(newline="")
    write_nppes(buffer, sample_rows())
    assert SAMPLE_PATH.read_bytes() == buffer.getvalue().encode()


def test_sample_npis_all_pass_the_check_digit():
    """Every NPI in the sample is 10 digits with a valid Luhn check digit (docs/policy.md §5)."""
    assert all(npi_is_valid(row.npi) for row in sample_rows())
    assert with_check_digit(123456789) == "1234567893"


def test_primary_taxonomy_is_found(directory):
    """An oncologist listing Medical Oncology as primary is ACTIVE with both taxonomies and the primary."""
    facts = directory.facts("1234567893", DOS)
    assert facts.status is ProviderStatus.ACTIVE
    assert facts.taxonomies == (ONCOLOGY, "207R00000X")
    assert facts.primary_taxonomy == ONCOLOGY
    assert facts.directory_version == "nppes-sample"


def test_oncology_only_as_a_secondary_taxonomy_is_kept(directory):
    """An NPI with internal medicine primary and oncology third keeps oncology among its taxonomies."""
    facts = directory.facts("1111111112", DOS)
    assert facts.status is ProviderStatus.ACTIVE
    assert facts.primary_taxonomy == "207R00000X"
    assert ONCOLOGY in facts.taxonomies
    assert facts.taxonomies.index(ONCOLOGY) == 2


def test_fifteen_taxonomies_keep_slot_order_and_primary(directory):
    """All fifteen slots survive in order, and the primary is the slot switched Y (the fourth)."""
    facts = directory.facts("1888888884", DOS)
    assert len(facts.taxonomies) == 15
    assert facts.primary_taxonomy == facts.taxonomies[3] == "207RH0003X"


def test_no_primary_switched_gives_no_primary(directory):
    """A row whose switches are X/N lists its taxonomies with no primary rather than guessing one."""
    facts = directory.facts("1333333338", DOS)
    assert facts.status is ProviderStatus.ACTIVE
    assert facts.primary_taxonomy is None
    assert facts.taxonomies == ("2085R0001X", "207R00000X")


def test_organisation_is_not_a_prescriber(directory):
    """Entity type 2 (an oncology clinic) is ORGANISATION even though its taxonomy says oncology."""
    facts = directory.facts("2222222228", DOS)
    assert facts.status is ProviderStatus.ORGANISATION
    assert facts.taxonomies == ("261QX0200X",)


def test_deactivated_on_the_date_of_service(directory):
    """An NPI deactivated on 2024-01-15 is DEACTIVATED on that day and after, ACTIVE the day before."""
    assert directory.facts("1444444446", date(2024, 1, 15)).status is ProviderStatus.DEACTIVATED
    assert directory.facts("1444444446", DOS).status is ProviderStatus.DEACTIVATED
    before = directory.facts("1444444446", date(2024, 1, 14))
    assert before.status is ProviderStatus.ACTIVE
    assert before.taxonomies == ()


def test_reactivated_npi(directory):
    """An NPI deactivated 2022-03-01 and reactivated 2022-06-01 is DEACTIVATED between, ACTIVE from then."""
    assert directory.facts("1777777776", date(2022, 4, 1)).status is ProviderStatus.DEACTIVATED
    assert directory.facts("1777777776", date(2022, 6, 1)).status is ProviderStatus.ACTIVE
    assert directory.facts("1777777776", DOS).taxonomies == (ONCOLOGY,)


@pytest.mark.parametrize("npi", ["1999999999", "1000000004", "2999999994", "abc", "123", "12345678901"])
def test_unknown_npi_is_not_found(directory, npi):
    """An NPI the index does not list (or that is not 10 digits) is NOT_FOUND with no taxonomy."""
    facts = directory.facts(npi, DOS)
    assert facts.status is ProviderStatus.NOT_FOUND
    assert facts.taxonomies == ()
    assert facts.npi == npi


def test_lowest_and_highest_npis_are_found(directory):
    """Binary search finds the first and the last NPI of the index (the edges of the sorted section)."""
    npis = sorted(int(row.npi) for row in sample_rows())
    assert directory.entry(npis[0]) is not None
    assert directory.entry(npis[-1]) is not None
    assert directory.entry(npis[0] - 1) is None
    assert directory.entry(npis[-1] + 1) is None


def test_header_carries_release_build_time_and_counts(directory):
    """The header names the release, its date, the build time, the format version and the counts."""
    assert directory.version == "nppes-sample"
    assert directory.release_date == RELEASE_DATE
    assert directory.header["format_version"] == FORMAT_VERSION
    assert directory.built_at.endswith("+00:00")
    assert directory.header["counts"] == {"individual": 8, "organisation": 2, "deactivated_row": 1}
    assert len(directory) == len(sample_rows())


def test_unsorted_input_is_sorted_and_every_npi_found(tmp_path):
    """Rows in any order give the same answers: the build sorts them."""
    rows = list(generated_rows(2000, seed=3))
    shuffled = rows[::-1]
    with Directory.open(_build(tmp_path, shuffled)) as directory:
        for row in rows:
            entry = directory.entry(int(row.npi))
            assert entry is not None
            assert entry.taxonomies == tuple(code for code, _ in row.taxonomies)


def test_duplicate_npi_is_rejected_with_both_lines(tmp_path):
    """The same NPI on two rows fails the build and names both lines."""
    rows = [
        SampleRow("1234567893", "1", ((ONCOLOGY, "Y"),)),
        SampleRow("1234567893", "1", ((ONCOLOGY, "Y"),)),
    ]
    with pytest.raises(DirectoryIndexError, match=r"line 3: NPI listed twice \(first at line 2\)"):
        _build(tmp_path, rows)


def test_open_rejects_a_file_that_is_not_an_index(tmp_path):
    """Opening a CSV (or any other file) as an index fails with a clear error, not a crash."""
    with pytest.raises(DirectoryIndexError, match="not a claims-worker directory index"):
        Directory.open(SAMPLE_PATH)
    with pytest.raises(DirectoryIndexError, match="no such directory index"):
        Directory.open(tmp_path / "missing.idx")


def test_open_rejects_another_format_version(tmp_path):
    """An index of another format version is refused with a hint to rebuild."""
    path = _build(tmp_path, sample_rows())
    data = path.read_bytes().replace(b'"format_version": 1', b'"format_version": 9', 1)
    path.write_bytes(data)
    with pytest.raises(DirectoryIndexError, match="rebuild"):
        Directory.open(path)


def test_verify_detects_a_damaged_section(tmp_path):
    """A flipped byte in a section fails verification against the header's SHA-256."""
    path = _build(tmp_path, sample_rows())
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(DirectoryIndexError, match="SHA-256"):
        Directory.open(path, verify=True)


def test_truncated_index_is_refused(tmp_path):
    """A truncated index is refused on open (its sections lie outside the file)."""
    path = _build(tmp_path, sample_rows())
    path.write_bytes(path.read_bytes()[:-40])
    with pytest.raises(DirectoryIndexError, match=r"outside the file|damaged"):
        Directory.open(path)


def test_rebuild_replaces_the_file_while_an_open_directory_keeps_its_release(tmp_path):
    """A new build renamed over the index leaves an open Directory answering from the old file."""
    path = _build(tmp_path, sample_rows(), release="old")
    with Directory.open(path) as old:
        _build(tmp_path, [SampleRow("1234567893", "1", (("207Q00000X", "Y"),))], release="new")
        assert old.facts("1234567893", DOS).primary_taxonomy == ONCOLOGY
        with Directory.open(path) as new:
            assert new.version == "new"
            assert new.facts("1234567893", DOS).primary_taxonomy == "207Q00000X"


def test_overlay_newer_update_wins_and_tombstone_restores(directory):
    """An update newer than the index overrides it; an older one is ignored; a tombstone restores the index."""
    npi = 1987654328
    newer = Entry(entity_type=1, taxonomies=(ONCOLOGY,), primary=0, version="weekly-2024-07-15")
    assert directory.apply(npi, newer, date(2024, 7, 15))
    facts = directory.facts("1987654328", DOS)
    assert facts.taxonomies == (ONCOLOGY,)
    assert facts.directory_version == "weekly-2024-07-15"
    directory.apply(npi, None, None)
    assert directory.facts("1987654328", DOS).taxonomies == ("207Q00000X",)
    older = Entry(entity_type=1, taxonomies=(ONCOLOGY,), primary=0, version="old")
    directory.apply(npi, older, date(2024, 1, 1))
    assert directory.facts("1987654328", DOS).taxonomies == ("207Q00000X",)
    assert directory.overlay_size == 0


def test_overlay_removed_and_deactivated(directory):
    """An update can remove an NPI (NOT_FOUND) or deactivate it (DEACTIVATED) without rebuilding."""
    directory.apply(1234567893, Entry(entity_type=1, removed=True, version="w"), date(2024, 8, 1))
    assert directory.facts("1234567893", DOS).status is ProviderStatus.NOT_FOUND
    deactivated = Entry(entity_type=1, taxonomies=(ONCOLOGY,), primary=0, deactivation=date(2024, 8, 1))
    directory.apply(1555000011, deactivated, date(2024, 8, 2))
    assert directory.facts("1555000011", DOS).status is ProviderStatus.DEACTIVATED
    assert directory.facts("1555000011", date(2024, 7, 31)).status is ProviderStatus.ACTIVE


def test_unknown_npi_can_be_added_by_an_update(directory):
    """An NPI enumerated after the index's release becomes ACTIVE once an update lists it."""
    npi = with_check_digit(199999999)
    assert directory.facts(npi, DOS).status is ProviderStatus.NOT_FOUND
    directory.apply(int(npi), Entry(entity_type=1, taxonomies=(ONCOLOGY,), primary=0), date(2024, 9, 1))
    assert directory.facts(npi, DOS).status is ProviderStatus.ACTIVE


def test_index_bytes_start_with_the_magic(tmp_path):
    """The file starts with the magic so `publish` can tell an index from a CSV."""
    assert _build(tmp_path, sample_rows()).read_bytes()[: len(MAGIC)] == MAGIC


def test_sample_index_for_demos(tmp_path):
    """build_sample_index writes the bundled sample as release nppes-sample-20240708, ready to open."""
    with Directory.open(build_sample_index(tmp_path / "demo.idx"), verify=True) as directory:
        assert directory.version == SAMPLE_RELEASE
        assert directory.facts("1234567893", DOS).primary_taxonomy == ONCOLOGY


@pytest.mark.parametrize(
    "payload",
    [b"", b"CWNPIDX1\x05\x00\x00\x00\x00\x00\x00\x00[1,2]", b"CWNPIDX1\xff\xff\x00\x00\x00\x00\x00\x00{"],
)
def test_garbage_files_are_refused_cleanly(tmp_path, payload):
    """An empty file, a header that is not an object, or a cut-off header all give DirectoryIndexError."""
    path = tmp_path / "bad.idx"
    path.write_bytes(payload)
    with pytest.raises(DirectoryIndexError):
        Directory.open(path)
