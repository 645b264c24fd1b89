"""Continuity of care: members on therapy keep older terms, on file or as a new version declares."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tests.unit.claims import make_claim
from tests.unit.dated_catalogs import CHANGE_DAY, NEW, OLD, write_catalog, write_two_versions
from tests.unit.fakes import FakeCluster
from tests.unit.worker_runs import results_of
from worker.contracts.codec import Codec
from worker.errors import ConfigError
from worker.policy import PolicyChoice, load_catalog_dir
from worker.state.authorizations import Authorizations

DAY = timedelta(days=1)
SECRET = b"unit-test-secret-0123456789"
STORE = "pharmacy.authorizations"
# Z85.3 + C50 without an attested status: the old terms approve it, the new ones pend it.
SPLIT_DX = ("Z85.3", "C50.912")
OTHER_MEMBER = {"member_id": "OTHERMEMBER1", "last_name": "SYNTHETIC", "date_of_birth": "1960-02-02"}


def _noon(day) -> datetime:
    return datetime.combine(day, datetime.min.time(), UTC) + timedelta(hours=12)


def _run(choice, first, later, *, at):
    """Decide ``first`` (partition 0) then ``later`` (partition 1) in one worker run with a store."""
    codec = Codec()
    cluster = FakeCluster(partitions=2)
    cluster.append(0, codec.encode_claim(first))
    for claim in later:
        cluster.append(1, codec.encode_claim(claim))
    return results_of(at=at, cluster=cluster, policies=choice, authorizations=Authorizations(SECRET, STORE))


def _declaring_catalog(tmp_path, *, days: int = 60, until=None):
    """OLD (2020.09-1's terms) from 2024-01-01; NEW (2020.09-3's) from CHANGE_DAY, keeping OLD for members on therapy."""
    continuity = {
        "prior_version": OLD,
        "on_therapy_days": days,
        "until": (until or CHANGE_DAY + 90 * DAY).isoformat(),
    }
    return write_catalog(
        tmp_path / "catalog",
        [
            (
                "2020.09-1",
                OLD,
                {"effective_from": "2024-01-01", "effective_until": (CHANGE_DAY - DAY).isoformat()},
            ),
            ("2020.09-3", NEW, {"effective_from": CHANGE_DAY.isoformat(), "continuity": continuity}),
        ],
    )


class TestOnFile:
    """An authorization issued under the old version keeps paying after the new one takes over."""

    def test_a_fill_after_the_change_day_pays_on_file_under_the_issuing_version(self, tmp_path):
        """Approved under OLD the day before; a fill ten days into NEW pays on file, CONTINUITY, OLD named."""
        choice = load_catalog_dir(write_two_versions(tmp_path / "catalog"))
        codec = Codec()
        cluster = FakeCluster(partitions=2)
        served = CHANGE_DAY - DAY
        cluster.append(0, codec.encode_claim(make_claim(claim_id="c-approve", event_id="e1", dos=served)))
        fill = make_claim(claim_id="c-fill", event_id="e2", dos=CHANGE_DAY + 10 * DAY, dx=())
        cluster.append(1, codec.encode_claim(fill))
        store = Authorizations(b"unit-test-secret-0123456789", "pharmacy.authorizations")
        results = results_of(
            at=datetime.combine(CHANGE_DAY + 10 * DAY, datetime.min.time(), UTC) + timedelta(hours=12),
            cluster=cluster,
            policies=choice,
            authorizations=store,
        )
        approved, paid = results["c-approve"], results["c-fill"]
        assert (approved["policy_version"], approved["policy_selection"]) == (OLD, "IN_EFFECT")
        assert (paid["outcome"], paid["decision_source"]) == ("APPROVED", "ON_FILE")
        assert paid["authorization_number"] == approved["authorization_number"]
        assert (paid["policy_version"], paid["policy_selection"]) == (OLD, "CONTINUITY")
        assert f"Continuity of care: issued under {OLD}, not {NEW}" in paid["summary"]

    def test_without_an_authorization_the_same_fill_is_decided_under_the_new_version(self, tmp_path):
        """The control: no store, the fill is decided afresh under NEW (it carries no diagnosis: pended)."""
        choice = load_catalog_dir(write_two_versions(tmp_path / "catalog"))
        fill = make_claim(claim_id="c-fill", event_id="e2", dos=CHANGE_DAY + 10 * DAY, dx=())
        results = results_of(
            [fill],
            at=datetime.combine(CHANGE_DAY + 10 * DAY, datetime.min.time(), UTC) + timedelta(hours=12),
            policies=choice,
        )
        assert (results["c-fill"]["policy_version"], results["c-fill"]["policy_selection"]) == (
            NEW,
            "IN_EFFECT",
        )
        assert results["c-fill"]["outcome"] == "PENDED"


class TestDeclared:
    """A new version declares, as data, that members already on therapy keep the prior terms until a date."""

    def _expired_approval(self):
        # Approved a year and a week before the change day: its one-year window ended days before it.
        return make_claim(claim_id="c-approve", event_id="e1", dos=CHANGE_DAY - 372 * DAY)

    def test_a_member_on_therapy_is_decided_under_the_prior_terms_and_the_result_names_it(self, tmp_path):
        """The member's authorization ended within 60 days: OLD's terms approve, CONTINUITY, summary names NEW's declaration."""
        choice = load_catalog_dir(_declaring_catalog(tmp_path))
        served = CHANGE_DAY + 10 * DAY
        renewal = make_claim(claim_id="c-renew", event_id="e2", dos=served, dx=SPLIT_DX)
        newcomer = make_claim(claim_id="c-new", event_id="e3", dos=served, dx=SPLIT_DX, patient=OTHER_MEMBER)
        results = _run(choice, self._expired_approval(), [renewal, newcomer], at=_noon(served))
        assert (results["c-approve"]["policy_version"], results["c-approve"]["policy_selection"]) == (
            OLD,
            "IN_EFFECT",
        )
        kept, fresh = results["c-renew"], results["c-new"]
        assert (kept["policy_version"], kept["outcome"], kept["policy_selection"]) == (
            OLD,
            "APPROVED",
            "CONTINUITY",
        )
        assert kept["decision_source"] == "AUTOMATED_RULE"  # decided afresh under the old terms, not on file
        assert f"Continuity of care declared by IXEMPRA-PA/{NEW}" in kept["summary"]
        assert (CHANGE_DAY + 90 * DAY).isoformat() in kept["summary"]
        assert (fresh["policy_version"], fresh["outcome"], fresh["policy_selection"]) == (
            NEW,
            "PENDED",
            "IN_EFFECT",
        )

    @pytest.mark.parametrize(
        ("days", "until_offset", "served_offset"),
        [
            pytest.param(3, 90, 10, id="authorization-ended-before-the-look-back"),
            pytest.param(60, 5, 10, id="served-after-the-declared-date"),
        ],
    )
    def test_outside_the_declared_terms_the_new_version_decides(
        self, tmp_path, days, until_offset, served_offset
    ):
        """Off therapy by the declared days, or served after the declared date: NEW, IN_EFFECT."""
        choice = load_catalog_dir(
            _declaring_catalog(tmp_path, days=days, until=CHANGE_DAY + until_offset * DAY)
        )
        served = CHANGE_DAY + served_offset * DAY
        renewal = make_claim(claim_id="c-renew", event_id="e2", dos=served, dx=SPLIT_DX)
        results = _run(choice, self._expired_approval(), [renewal], at=_noon(served))
        got = results["c-renew"]
        assert (got["policy_version"], got["outcome"], got["policy_selection"]) == (
            NEW,
            "PENDED",
            "IN_EFFECT",
        )

    def test_a_continuity_naming_no_earlier_version_is_refused(self, tmp_path):
        """The prior version must be an earlier version of the same chain (ConfigError naming both)."""
        folder = write_catalog(
            tmp_path / "catalog",
            [
                (
                    "2020.09-1",
                    OLD,
                    {"effective_from": "2024-01-01", "effective_until": (CHANGE_DAY - DAY).isoformat()},
                ),
                (
                    "2020.09-3",
                    NEW,
                    {
                        "effective_from": CHANGE_DAY.isoformat(),
                        "continuity": {
                            "prior_version": "nope-1",
                            "on_therapy_days": 30,
                            "until": "2026-01-01",
                        },
                    },
                ),
            ],
        )
        with pytest.raises(ConfigError, match=f"IXEMPRA-PA/{NEW} declares continuity under nope-1"):
            load_catalog_dir(folder)

    def test_a_pin_ignores_continuity(self, tmp_path):
        """A pinned version decides every claim under its own terms (PINNED), on therapy or not."""
        choice = load_catalog_dir(_declaring_catalog(tmp_path))
        pinned = PolicyChoice.pin(choice.versions[1])
        served = CHANGE_DAY + 10 * DAY
        renewal = make_claim(claim_id="c-renew", event_id="e2", dos=served, dx=SPLIT_DX)
        results = _run(pinned, self._expired_approval(), [renewal], at=_noon(served))
        assert (results["c-renew"]["policy_version"], results["c-renew"]["policy_selection"]) == (
            NEW,
            "PINNED",
        )
