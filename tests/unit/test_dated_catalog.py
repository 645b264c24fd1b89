"""The effective-dated catalog: each claim is decided under the version in effect on its date of service."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from types import SimpleNamespace

import pytest

from tests.unit.claims import make_claim
from tests.unit.dated_catalogs import CHANGE_DAY, NEW, OLD, write_catalog, write_two_versions
from tests.unit.worker_runs import results_of
from worker.config.settings import load_settings
from worker.contracts.codec import Codec
from worker.contracts.codes import Outcome, PolicySelection
from worker.errors import ConfigError
from worker.policy import PolicyChoice, catalog_choice, catalog_policy, load_catalog_dir
from worker.runtime.judge import Decider, judged
from worker.runtime.replay import _Pass as Pass
from worker.runtime.replay_job import ReplayJob, ReplaySummary

DAY = timedelta(days=1)
# Z85.3 + C50 without an attested status: the old terms approve it, the new ones pend it.
SPLIT_DX = ("Z85.3", "C50.912")


def _claims_either_side() -> list:
    before, on = CHANGE_DAY - DAY, CHANGE_DAY
    return [
        make_claim(claim_id="c-before", event_id="e-before", dos=before, dx=SPLIT_DX),
        make_claim(claim_id="c-on", event_id="e-on", dos=on, dx=SPLIT_DX),
    ]


def _decided_at() -> datetime:
    return datetime.combine(CHANGE_DAY, datetime.min.time(), UTC) + timedelta(hours=12)


class TestPackagedChain:
    """The packaged IXEMPRA-PA versions form one chain; CLAIMS_POLICY=<id> selects by date, <id>/<v> pins."""

    @pytest.mark.parametrize(
        ("served", "version", "selection"),
        [
            (date(2019, 12, 31), "2020.09-1", PolicySelection.EARLIEST_VERSION),
            (date(2020, 9, 1), "2020.09-1", PolicySelection.IN_EFFECT),
            (date(2021, 8, 31), "2020.09-1", PolicySelection.IN_EFFECT),
            (date(2021, 9, 1), "2020.09-2", PolicySelection.IN_EFFECT),
            (date(2022, 8, 31), "2020.09-2", PolicySelection.IN_EFFECT),
            (date(2022, 9, 1), "2020.09-3", PolicySelection.IN_EFFECT),
            (date(2030, 1, 1), "2020.09-3", PolicySelection.IN_EFFECT),
        ],
        ids=str,
    )
    def test_the_version_in_effect_on_the_date_of_service(self, served, version, selection):
        """Each date picks the version whose range holds it; a date before the first picks the earliest."""
        policy, why = catalog_choice("IXEMPRA-PA").select(served)
        assert (policy.version, why) == (version, selection)

    def test_a_pin_decides_every_date(self):
        """CLAIMS_POLICY=<id>/<version> is an override: that version, PINNED, whatever the date."""
        choice = catalog_choice("IXEMPRA-PA/2020.09-1")
        assert choice.pinned
        assert choice.ref == "IXEMPRA-PA/2020.09-1"
        for served in (date(2019, 1, 1), date(2026, 11, 29)):
            assert choice.select(served) == (catalog_policy("IXEMPRA-PA/2020.09-1"), PolicySelection.PINNED)

    def test_the_default_setting_is_dated_and_labels_its_union(self):
        """The CLAIMS_POLICY default names the policy id; the metric label sets cover every version."""
        choice = catalog_choice(load_settings({}).policy)
        assert not choice.pinned
        assert choice.ref == "IXEMPRA-PA"
        assert choice.version_label == "dated"
        assert [p.version for p in choice.versions] == ["2020.09-1", "2020.09-2", "2020.09-3"]
        for policy in choice.versions:
            assert set(policy.reason_codes) <= set(choice.reason_codes)

    @pytest.mark.parametrize("ref", ["NOPE-PA", "ixempra", "IXEMPRA-PA/1999.01-1"])
    def test_an_unknown_or_malformed_reference_is_refused(self, ref):
        """One clear ConfigError line (the CLI's exit 2)."""
        with pytest.raises(ConfigError, match="policy"):
            catalog_choice(ref)

    def test_the_setting_accepts_both_forms_and_nothing_else(self):
        """CLAIMS_POLICY is <ID> or <ID>/<version>."""
        assert load_settings({"CLAIMS_POLICY": "IXEMPRA-PA/2020.09-2"}).policy == "IXEMPRA-PA/2020.09-2"
        with pytest.raises(ConfigError):
            load_settings({"CLAIMS_POLICY": "IXEMPRA-PA/"})


class TestRefusals:
    """The catalog refuses at load a chain with overlapping or gapped ranges, naming the versions."""

    def _load(self, tmp_path, *entries):
        return load_catalog_dir(write_catalog(tmp_path / "catalog", list(entries)))

    def test_two_dated_versions_load(self, tmp_path):
        """Contiguous ranges, newest open-ended: a dated choice, ordered by date."""
        choice = load_catalog_dir(write_two_versions(tmp_path / "catalog"))
        assert [p.version for p in choice.versions] == [OLD, NEW]
        assert choice.versions[1].change_summary == "New terms."

    def test_an_overlap_names_both_versions(self, tmp_path):
        """The old one ends on or after the new one starts."""
        with pytest.raises(
            ConfigError, match=r"IXEMPRA-PA/A \(2025-01-01 to 2025-07-01\) overlaps IXEMPRA-PA/B"
        ):
            self._load(
                tmp_path,
                ("2020.09-1", "A", {"effective_from": "2025-01-01", "effective_until": "2025-07-01"}),
                ("2020.09-3", "B", {"effective_from": "2025-07-01"}),
            )

    def test_the_same_start_is_an_overlap(self, tmp_path):
        """Two open versions starting the same day cannot both be in effect."""
        with pytest.raises(ConfigError, match="overlaps"):
            self._load(
                tmp_path,
                ("2020.09-1", "A", {"effective_from": "2025-01-01"}),
                ("2020.09-3", "B", {"effective_from": "2025-01-01"}),
            )

    def test_a_gap_names_the_days_and_the_versions(self, tmp_path):
        """A day between the old one's end and the new one's start has no version."""
        with pytest.raises(
            ConfigError, match=r"no version is in effect from 2025-06-30 to 2025-06-30, between IXEMPRA-PA/A"
        ):
            self._load(
                tmp_path,
                ("2020.09-1", "A", {"effective_from": "2025-01-01", "effective_until": "2025-06-29"}),
                ("2020.09-3", "B", {"effective_from": "2025-07-01"}),
            )

    def test_the_newest_version_must_stay_open(self, tmp_path):
        """An end on the newest version would leave later claims without a version."""
        with pytest.raises(ConfigError, match="newest version IXEMPRA-PA/B"):
            self._load(
                tmp_path,
                ("2020.09-1", "A", {"effective_from": "2025-01-01"}),
                ("2020.09-3", "B", {"effective_from": "2025-07-01", "effective_until": "2026-01-01"}),
            )

    def test_an_end_before_the_start_and_a_missing_start_are_invalid_files(self, tmp_path):
        """A version's own dates are checked when its file is read."""
        with pytest.raises(ConfigError, match="effective_until 2024-01-01 is before effective_from"):
            self._load(
                tmp_path,
                ("2020.09-3", "A", {"effective_from": "2025-01-01", "effective_until": "2024-01-01"}),
            )
        with pytest.raises(ConfigError, match="effective_from"):
            self._load(tmp_path / "x", ("2020.09-3", "A", {}))

    def test_one_policy_id_per_chain_and_no_empty_folder(self, tmp_path):
        """Mixed ids are not one chain; a folder without policies is refused."""
        first = catalog_policy("IXEMPRA-PA/2020.09-1")
        other = SimpleNamespace(**{name: getattr(first, name) for name in ("version", "effective_from")})
        other.policy_id, other.effective_until = "OTHER-PA", None
        with pytest.raises(ConfigError, match="one policy id, got IXEMPRA-PA, OTHER-PA"):
            PolicyChoice.dated([first, other])  # type: ignore[list-item]
        with pytest.raises(ConfigError, match=r"holds no \.json policy"):
            load_catalog_dir(tmp_path)


class TestDecisions:
    """Claims either side of the change day are decided under the right version, live and in replay."""

    def test_the_decider_picks_by_date_of_service(self, tmp_path):
        """The day before: the old terms approve, IN_EFFECT; on the day: the new terms pend, IN_EFFECT."""
        choice = load_catalog_dir(write_two_versions(tmp_path / "catalog"))
        decider = Decider(choice.named, policies=choice)
        record = SimpleNamespace(topic="claims", partition=0, offset=0)
        seen = [
            judged(record, claim, decider=decider, decided_at=_decided_at())
            for claim in _claims_either_side()
        ]
        assert [(j.decision.policy_version, j.decision.outcome, j.selection) for j in seen] == [
            (OLD, Outcome.APPROVED, PolicySelection.IN_EFFECT),
            (NEW, Outcome.PENDED, PolicySelection.IN_EFFECT),
        ]
        assert f"under IXEMPRA-PA {NEW}" in seen[1].decision.summary

    def test_a_pinned_decider_ignores_the_date(self, tmp_path):
        """Without a choice the Decider pins its policy: every claim PINNED under it."""
        choice = load_catalog_dir(write_two_versions(tmp_path / "catalog"))
        decider = Decider(choice.versions[0])
        record = SimpleNamespace(topic="claims", partition=0, offset=0)
        seen = [
            judged(record, claim, decider=decider, decided_at=_decided_at())
            for claim in _claims_either_side()
        ]
        assert {(j.decision.policy_version, j.selection) for j in seen} == {(OLD, PolicySelection.PINNED)}

    def test_the_live_worker_results_name_the_version_and_why(self, tmp_path):
        """One run of the worker loop (pipeline fakes): each result names its version and IN_EFFECT."""
        choice = load_catalog_dir(write_two_versions(tmp_path / "catalog"))
        results = results_of(_claims_either_side(), at=_decided_at(), policies=choice)
        got = {cid: (r["policy_version"], r["outcome"], r["policy_selection"]) for cid, r in results.items()}
        assert got == {
            "c-before": (OLD, "APPROVED", "IN_EFFECT"),
            "c-on": (NEW, "PENDED", "IN_EFFECT"),
        }

    def test_the_live_worker_with_a_pin_says_pinned(self):
        """CLAIMS_POLICY's pin (here build_worker's policy) is named PINNED in every result."""
        results = results_of(
            _claims_either_side(), at=_decided_at(), policy=catalog_policy("IXEMPRA-PA/2020.09-1")
        )
        assert {(r["policy_version"], r["policy_selection"]) for r in results.values()} == {
            ("2020.09-1", "PINNED")
        }

    def test_a_replay_decides_each_side_under_its_version(self, tmp_path):
        """A replay (not a diff) with the dated choice writes what the live worker writes; its header names the id."""
        choice = load_catalog_dir(write_two_versions(tmp_path / "catalog"))
        codec = Codec()
        settings = load_settings({"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9"})
        job = ReplayJob(
            settings=settings,
            codec=codec,
            policy=choice.named,
            policies=choice,
            replay_id="r-dated",
            start=_decided_at(),
            output_topic="replay-out",
        )
        run = Pass(job, None, None, {}, {}, {}, {}, set(), ReplaySummary("r-dated"), None)
        outputs: list = []
        for offset, claim in enumerate(_claims_either_side()):
            record = SimpleNamespace(
                topic="claims",
                partition=0,
                offset=offset,
                key=None,
                value=codec.encode_claim(claim),
                headers=[],
            )
            run.one(record, _decided_at(), outputs)
        decoded = [codec.decode_result(out.value) for out in outputs]
        assert [(r["policy_version"], r["outcome"], r["policy_selection"]) for r in decoded] == [
            (OLD, "APPROVED", "IN_EFFECT"),
            (NEW, "PENDED", "IN_EFFECT"),
        ]
        assert ("claims-worker.replay-policy", b"IXEMPRA-PA") in outputs[0].headers
