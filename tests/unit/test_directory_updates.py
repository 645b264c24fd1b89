"""Directory update records (the compacted topic's JSON), release diffs and the follower's apply step."""

from __future__ import annotations

import json
from datetime import date
from types import SimpleNamespace

import pytest

from deploy.demo.nppes_sample import SampleRow, sample_rows, write_nppes
from worker.cli.directory import release_of
from worker.directory import Directory, Entry, build_index, read_nppes
from worker.directory.updates import BadUpdate, DirectoryUpdates, decode_update, diff, encode_update
from worker.errors import ConfigError
from worker.policy.facts import ProviderStatus

ONCOLOGY = "207RX0202X"
DOS = date(2025, 3, 10)


def _index(tmp_path, rows, name, release_date=date(2024, 7, 8)):
    source = tmp_path / f"{name}.csv"
    write_nppes(source, rows)
    path = tmp_path / f"{name}.idx"
    with source.open(newline="") as lines:
        build_index(read_nppes(lines), path, release=name, release_date=release_date, source=source.name)
    return Directory.open(path)


def test_update_round_trip_keeps_every_field():
    """Encoding then decoding an entry gives it back with the release as its version."""
    entry = Entry(
        entity_type=1,
        taxonomies=("207R00000X", ONCOLOGY),
        primary=0,
        deactivation=date(2022, 3, 1),
        reactivation=date(2022, 6, 1),
    )
    key, value = encode_update(1234567893, entry, "nppes-20241117", date(2024, 11, 17))
    assert key == b"1234567893"
    npi, decoded, released = decode_update(key, value)
    assert npi == 1234567893
    assert released == date(2024, 11, 17)
    assert decoded == Entry(
        entity_type=1,
        taxonomies=("207R00000X", ONCOLOGY),
        primary=0,
        deactivation=date(2022, 3, 1),
        reactivation=date(2022, 6, 1),
        version="nppes-20241117",
    )


def test_tombstone_decodes_to_none():
    """A null value is a tombstone: the NPI goes back to the index."""
    assert encode_update(1234567893, None, "r", date(2024, 1, 1)) == (b"1234567893", None)
    assert decode_update(b"1234567893", None) == (1234567893, None, None)


@pytest.mark.parametrize(
    ("key", "value", "reason"),
    [
        (None, b"{}", "key"),
        (b"12345", b"{}", "key"),
        (b"1234567893", b"not json", "unreadable"),
        (b"1234567893", b'{"format": 2}', "format"),
        (b"1234567893", b'{"format": 1, "npi": "1987654328"}', "differs"),
        (b"1234567893", b'{"format": 1, "npi": "1234567893", "entity_type": 7}', "entity"),
        (b"1234567893", b'{"format": 1, "npi": "1234567893", "entity_type": 1}', "unreadable"),
    ],
    ids=["no-key", "short-key", "not-json", "format-2", "npi-mismatch", "entity-7", "no-release"],
)
def test_bad_update_is_refused(key, value, reason):
    """An unreadable update raises BadUpdate naming the rule (the follower skips and counts it)."""
    with pytest.raises(BadUpdate, match=reason):
        decode_update(key, value)


def test_update_value_is_the_documented_json():
    """The value carries format 1, the NPI, each taxonomy with its primary flag, dates and the release."""
    _, value = encode_update(1111111112, Entry(1, ("207R00000X", ONCOLOGY), 0), "r1", date(2024, 11, 17))
    body = json.loads(value)
    assert body == {
        "format": 1,
        "npi": "1111111112",
        "entity_type": 1,
        "taxonomies": [{"code": "207R00000X", "primary": True}, {"code": ONCOLOGY, "primary": False}],
        "deactivation_date": None,
        "reactivation_date": None,
        "removed": False,
        "release": "r1",
        "release_date": "2024-11-17",
    }


def test_diff_of_two_releases(tmp_path):
    """The diff holds changed, added and removed NPIs only, in NPI order."""
    rows = sample_rows()
    changed = SampleRow("1987654328", "1", (("207Q00000X", "Y"), (ONCOLOGY, "N")))
    added = SampleRow("1999999992", "1", ((ONCOLOGY, "Y"),))
    new_rows = [changed if r.npi == "1987654328" else r for r in rows if r.npi != "1555555550"] + [added]
    with _index(tmp_path, rows, "old") as old, _index(tmp_path, new_rows, "new") as new:
        out = list(diff(old, new))
    assert [npi for npi, _ in out] == [1555555550, 1987654328, 1999999992]
    assert out[0][1].removed
    assert out[1][1].taxonomies == ("207Q00000X", ONCOLOGY)
    assert out[2][1].primary == 0


def test_diff_of_a_release_with_itself_is_empty(tmp_path):
    """Two builds of the same rows differ in nothing."""
    with _index(tmp_path, sample_rows(), "a") as a, _index(tmp_path, sample_rows(), "b") as b:
        assert list(diff(a, b)) == []


class _FakeConsumer:
    """Just enough of KafkaConsumer for the follower's apply step (the broker test covers the rest)."""

    def __init__(self, records):
        self.records = records
        self.closed = False

    def partitions_for_topic(self, _topic):
        return {0}

    def assign(self, partitions):
        self.assigned = partitions

    def seek_to_beginning(self, *partitions):
        self.sought = partitions

    def poll(self, timeout_ms, max_records):  # noqa: ARG002 - KafkaConsumer's signature
        batch, self.records = self.records[:max_records], self.records[max_records:]
        return {"tp": batch} if batch else {}

    def close(self):
        self.closed = True


def _record(offset, key, value):
    return SimpleNamespace(topic="t", partition=0, offset=offset, key=key, value=value)


def test_follower_applies_updates_and_skips_bad_ones(tmp_path):
    """poll() applies good records over the index, counts a bad one as rejected, and obeys tombstones."""
    key, value = encode_update(1987654328, Entry(1, (ONCOLOGY,), 0), "weekly", date(2024, 7, 15))
    records = [_record(0, key, value), _record(1, b"1234567893", b"garbage"), _record(2, b"1555555550", None)]
    with _index(tmp_path, sample_rows(), "base") as directory:
        follower = DirectoryUpdates(directory, _FakeConsumer(records), "t")
        assert follower.poll(max_records=10) == 2
        assert follower.rejected == 1
        facts = directory.facts("1987654328", DOS)
        assert facts.taxonomies == (ONCOLOGY,)
        assert facts.directory_version == "weekly"
        assert directory.facts("1234567893", DOS).status is ProviderStatus.ACTIVE
        follower.close()


def test_follower_refuses_a_missing_topic(tmp_path):
    """A follower of a topic that does not exist fails with a settings error (exit 2), naming the topic."""
    consumer = _FakeConsumer([])
    consumer.partitions_for_topic = lambda _topic: None
    with _index(tmp_path, sample_rows(), "base") as directory, pytest.raises(ConfigError, match="t-missing"):
        DirectoryUpdates(directory, consumer, "t-missing")
    assert consumer.closed


def test_release_from_file_name_or_arguments(tmp_path):
    """A release id comes from --release, else from npidata_pfile_<start>-<end>, else the file's name and mtime."""
    weekly = tmp_path / "npidata_pfile_20241104-20241110.csv"
    weekly.write_text("")
    assert release_of(weekly, None, None) == ("nppes-20241110", date(2024, 11, 10))
    assert release_of(weekly, "x", date(2024, 1, 2)) == ("x", date(2024, 1, 2))
    other = tmp_path / "custom.csv"
    other.write_text("")
    release, when = release_of(other, None, date(2024, 5, 6))
    assert release == "custom-20240506"
    assert when == date(2024, 5, 6)
