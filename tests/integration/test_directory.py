"""The prescriber directory's updates topic on a real broker: publish, follow, restart and catch up."""

from __future__ import annotations

from datetime import date

import pytest

from deploy.demo.nppes_sample import SAMPLE_PATH, SampleRow, sample_rows, write_nppes
from worker.cli import main
from worker.config.settings import load_settings
from worker.directory import Directory, Entry
from worker.directory.updates import DirectoryUpdates, ensure_topic, publish
from worker.errors import ConfigError
from worker.policy.facts import ProviderStatus

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

ONCOLOGY = "207RX0202X"
DOS = date(2025, 3, 10)


def _poll_until(follower, predicate, passes=60):
    """Run the follower's poll (each waits up to 500 ms for records) until ``predicate()`` or give up."""
    for _ in range(passes):
        if predicate():
            return True
        follower.poll(max_records=500, timeout_ms=500)
    return predicate()


@pytest.fixture
def index(tmp_path, capsys):
    """The bundled sample built as release 2024-07-08."""
    out = tmp_path / "sample.idx"
    code = main(
        [
            "directory",
            "build",
            str(SAMPLE_PATH),
            "--out",
            str(out),
            "--release",
            "nppes-20240708",
            "--release-date",
            "2024-07-08",
        ]
    )
    assert code == 0
    capsys.readouterr()
    return out


def test_update_while_running_and_catch_up_after_restart(  # noqa: PLR0917 - pytest fixtures
    kafka_bootstrap, unique, index, tmp_path, monkeypatch, capsys
):
    """A diff published while a follower runs changes its facts; a restarted follower reads it back first."""
    topic = f"directory-{unique}"
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", kafka_bootstrap)
    settings = load_settings({"KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap})
    assert ensure_topic(settings, topic)
    assert not ensure_topic(settings, topic)

    directory = Directory.open(index)
    follower = DirectoryUpdates.connect(settings, directory, topic)
    assert follower.catch_up(timeout_s=60) == 0
    assert follower.ready
    assert directory.facts("1987654328", DOS).taxonomies == ("207Q00000X",)

    # A weekly release: the family physician adds oncology as a secondary taxonomy, 1555555550 is deactivated.
    rows = [
        SampleRow("1987654328", "1", (("207Q00000X", "Y"), (ONCOLOGY, "N")))
        if r.npi == "1987654328"
        else SampleRow("1555555550", "", deactivation="07/12/2024")
        if r.npi == "1555555550"
        else r
        for r in sample_rows()
    ]
    weekly = tmp_path / "npidata_pfile_20240708-20240714.csv"
    write_nppes(weekly, rows)
    code = main(["directory", "publish", str(weekly), "--since", str(index), "--topic", topic])
    assert code == 0
    assert "published 2 records (the diff, release nppes-20240714)" in capsys.readouterr().out

    assert _poll_until(follower, lambda: ONCOLOGY in directory.facts("1987654328", DOS).taxonomies)
    facts = directory.facts("1987654328", DOS)
    assert facts.primary_taxonomy == "207Q00000X"
    assert facts.directory_version == "nppes-20240714"
    assert _poll_until(
        follower, lambda: directory.facts("1555555550", DOS).status is ProviderStatus.DEACTIVATED
    )
    assert directory.facts("1234567893", DOS).directory_version == "nppes-20240708"

    # A correction, then a tombstone for the deactivation: the newest record per NPI is what compaction keeps.
    publish(settings, topic, [(1555555550, None)], release="fix", release_date=date(2024, 7, 20))
    assert _poll_until(follower, lambda: directory.facts("1555555550", DOS).status is ProviderStatus.ACTIVE)
    follower.close()
    directory.close()

    # Restart: a fresh process state reads the topic from the beginning before it is ready.
    restarted = Directory.open(index)
    again = DirectoryUpdates.connect(settings, restarted, topic)
    assert not again.ready
    # Three records were written; compaction may already have dropped the one the tombstone replaced.
    assert again.catch_up(timeout_s=60) in {2, 3}
    assert again.ready
    assert again.lag() == 0
    assert ONCOLOGY in restarted.facts("1987654328", DOS).taxonomies
    assert restarted.facts("1555555550", DOS).status is ProviderStatus.ACTIVE
    assert restarted.overlay_size == 1
    again.close()
    restarted.close()


def test_index_newer_than_the_topic_wins(kafka_bootstrap, unique, index, tmp_path):
    """Updates from a release older than the index are ignored on catch-up: the newer index answers."""
    topic = f"directory-{unique}"
    settings = load_settings({"KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap})
    ensure_topic(settings, topic)
    stale = Entry(entity_type=1, taxonomies=(ONCOLOGY,), primary=0)
    assert publish(settings, topic, [(1987654328, stale)], release="old", release_date=date(2024, 1, 1)) == 1
    with Directory.open(index) as directory:
        follower = DirectoryUpdates.connect(settings, directory, topic)
        assert follower.catch_up(timeout_s=60) == 1
        assert directory.facts("1987654328", DOS).taxonomies == ("207Q00000X",)
        assert directory.overlay_size == 0
        follower.close()


def test_follower_of_a_missing_topic_exits_with_a_settings_error(kafka_bootstrap, unique, index):
    """Following a topic that does not exist is a settings error naming the topic (exit code 2)."""
    settings = load_settings({"KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap})
    with Directory.open(index) as directory, pytest.raises(ConfigError, match=f"missing-{unique}"):
        DirectoryUpdates.connect(settings, directory, f"missing-{unique}")


def test_publish_every_npi_of_a_file(kafka_bootstrap, unique, index, monkeypatch, capsys):
    """`directory publish FILE` without --since writes one record per NPI, and a follower applies them all."""
    topic = f"directory-{unique}"
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", kafka_bootstrap)
    code = main(
        [
            "directory",
            "publish",
            str(SAMPLE_PATH),
            "--topic",
            topic,
            "--release",
            "full",
            "--release-date",
            "2024-08-01",
        ]
    )
    assert code == 0
    assert f"published 11 records (every NPI, release full) to {topic} (created)" in capsys.readouterr().out
    settings = load_settings({"KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap})
    with Directory.open(index) as directory:
        follower = DirectoryUpdates.connect(settings, directory, topic)
        assert follower.catch_up(timeout_s=60) == 11
        assert directory.overlay_size == 11
        assert directory.facts("1111111112", DOS).directory_version == "full"
        assert directory.facts("2222222228", DOS).status is ProviderStatus.ORGANISATION
        follower.close()


def test_publish_refuses_a_topic_that_is_not_compacted(
    kafka_bootstrap, unique, make_topics, monkeypatch, capsys
):
    """Publishing to an existing topic with cleanup.policy=delete exits 2 and says it must be compact."""
    topic = f"directory-{unique}"
    make_topics(topic)
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", kafka_bootstrap)
    assert main(["directory", "publish", str(SAMPLE_PATH), "--topic", topic]) == 2
    assert f"{topic} has cleanup.policy=delete: it must be compact" in capsys.readouterr().err
