"""The packed authorization table: its size per entry, exact round trips, and the same answers as the dict table."""

from __future__ import annotations

import gc
import hashlib
import random
import tracemalloc
from datetime import UTC, date, datetime, timedelta, timezone

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from tests.unit.claims import NPIS, make_claim
from tests.unit.reference_authorization_table import ReferenceTable
from tests.unit.test_authorizations import NOW, POLICY, SECRET
from worker.contracts.codes import Outcome
from worker.policy import decide
from worker.policy.decision import authorization_number
from worker.policy.facts import Facts, ProviderFacts, ProviderStatus
from worker.state.authorization import (
    Authorization,
    RevocationReason,
    decode_authorization,
    encode_authorization,
    member_pseudonym,
    revoked,
)
from worker.state.authorization_table import AuthorizationMetrics, AuthorizationTable
from worker.state.authorizations import Authorizations

PHARMACY = "1234567893"  # make_claim's service provider


def _auth(n: int, **fields: object) -> Authorization:
    """The n-th authorization as the worker writes it: a random-looking pseudonym, a claim id as source."""
    effective = date(2025, 1, 1) + timedelta(days=n % 365)
    values: dict[str, object] = {
        "number": f"{n:011d}",
        "member": hashlib.sha256(f"member-{n}".encode()).hexdigest(),
        "policy_id": POLICY.policy_id,
        "policy_version": POLICY.version,
        "product": "70020191001",
        "effective": effective,
        "expiration": effective + timedelta(days=364),
        "source_kind": "claim",
        "source_id": f"CLM-2025-{n:09d}",
        "decided_at": datetime(2025, 1, 1, 9, 30, tzinfo=UTC) + timedelta(seconds=n, microseconds=n % 997),
    }
    values.update(fields)
    return Authorization(**values)  # type: ignore[arg-type]


class TestSize:
    ENTRIES = 100_000
    LIMIT = 300  # bytes per authorization (issue 29 item 3)

    def test_an_authorization_costs_at_most_300_bytes(self):
        """Tracemalloc over 100,000 worker-shaped authorizations: every byte the table allocates, per entry, is at most 300."""
        auths = [_auth(n) for n in range(self.ENTRIES)]  # built before tracing: the input is not the table
        gc.collect()
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            table = AuthorizationTable()
            for auth in auths:
                table.apply(auth)
            del auth
            gc.collect()
            used = tracemalloc.get_traced_memory()[0] - before
        finally:
            tracemalloc.stop()
        assert len(table) == self.ENTRIES
        assert table.nbytes() <= used, "the columns and indexes are part of what was measured"
        assert used / self.ENTRIES <= self.LIMIT, f"{used / self.ENTRIES:.0f} bytes per authorization"


ODD = {
    "not a pseudonym": {"member": "m" * 64},
    "upper-case pseudonym": {"member": "AB" * 32},
    "short member": {"member": "m1"},
    "naive decided_at": {"decided_at": datetime(2025, 1, 1, 9, 30)},  # noqa: DTZ001 - the odd value itself
    "offset decided_at": {"decided_at": datetime(2025, 1, 1, 9, 30, tzinfo=timezone(timedelta(hours=-5)))},
    "revoked at an offset, free text": {
        "revoked_at": datetime(2025, 2, 1, tzinfo=timezone(timedelta(hours=1))),
        "revoked_reason": "entered before the codes",
    },
    "short number": {"number": "123"},
    "number with a letter": {"number": "1234567890X"},
    "surrogate in the source id": {"source_id": "clm-\ud800"},
    "source id of 64 KiB": {"source_id": "x" * 65_536},
    "empty source id": {"source_id": ""},
    "non-text reason": {"revoked_at": NOW, "revoked_reason": ["a", "list"]},
}


class TestRoundTrip:
    def test_the_workers_records_come_back_equal_and_in_utc(self):
        """A store record decoded, filed and read back is equal to the decoded one, down to its repr (tz, microseconds)."""
        table = AuthorizationTable()
        auths = [decode_authorization(*encode_authorization(_auth(n))) for n in range(50)]
        auths.append(revoked(_auth(50), NOW, RevocationReason.CLINICAL_REVIEW))
        for auth in auths:
            table.apply(auth)
        for auth in auths:
            held = table.get(auth.number)
            assert held == auth
            assert repr(held) == repr(auth)
            assert table.of_member(auth.member, auth.policy_id) == [auth]

    @pytest.mark.parametrize("fields", ODD.values(), ids=ODD.keys())
    def test_a_value_with_no_fixed_width_form_is_kept_exactly(self, fields):
        """An authorization the columns cannot hold exactly (odd member, time, number or text) is found and returned unchanged."""
        table = AuthorizationTable()
        table.apply(_auth(1))
        odd = _auth(2, **fields)
        table.apply(odd)
        table.apply(_auth(3))
        held = table.get(odd.number)
        assert held == odd
        assert repr(held) == repr(odd)
        assert table.of_member(odd.member, odd.policy_id) == [odd]
        assert table.get(_auth(3).number) == _auth(3)
        assert table.get("00000000009") is None
        assert table.get("999") is None
        assert table.of_member("m" * 63, POLICY.policy_id) == []

    def test_a_later_record_rewrites_the_row_or_refiles_it(self):
        """A revocation rewrites its row (odd time and back); a record naming another member is filed under that member only."""
        table = AuthorizationTable()
        first = _auth(1)
        table.apply(first)
        odd = revoked(first, NOW, RevocationReason.DUPLICATE)
        odd = Authorization(**{**_fields(odd), "revoked_at": NOW.astimezone(timezone(timedelta(hours=2)))})
        table.apply(odd)
        assert repr(table.get(first.number)) == repr(odd)
        table.apply(first)  # an older copy read late: ignored
        assert table.get(first.number) == odd
        moved = _auth(2, member=_auth(9).member)
        table.apply(_auth(2))
        table.apply(moved)
        assert table.of_member(_auth(2).member, POLICY.policy_id) == []
        assert table.of_member(moved.member, POLICY.policy_id) == [moved]
        assert len(table) == 2
        assert table.counts(date(2025, 6, 1)) == {"active": 1, "inactive": 0, "revoked": 1}


def _fields(auth: Authorization) -> dict[str, object]:
    return {name: getattr(auth, name) for name in Authorization.__dataclass_fields__}


def _store(table: AuthorizationTable | ReferenceTable) -> tuple[Authorizations, CollectorRegistry]:
    registry = CollectorRegistry()
    store = Authorizations(SECRET, "pharmacy.authorizations", metrics=AuthorizationMetrics(registry))
    store.table = table  # type: ignore[assignment]
    return store, registry


def _samples(registry: CollectorRegistry) -> list[str]:
    """The registry's samples, without the counters' creation times."""
    return [line for line in generate_latest(registry).decode().splitlines() if "_created" not in line]


def _patients(count: int) -> list[dict[str, str]]:
    return [
        {
            "member_id": f"SYN{n:05d}",
            "last_name": "SYNTHETIC",
            "date_of_birth": f"19{50 + n % 40}-02-0{1 + n % 9}",
        }
        for n in range(count)
    ]


def _seed(rng: random.Random, patients: list[dict[str, str]]) -> list[Authorization]:
    """Records for the patients' pseudonyms: windows around 2025, other policies, revocations, rewrites, odd ones."""
    members = [member_pseudonym(SECRET, make_claim(patient=p).patient) for p in patients]
    records = []
    for n in range(600):
        effective = date(2024, 6, 1) + timedelta(days=rng.randrange(540))
        auth = Authorization(
            number=authorization_number(POLICY.policy_id, PHARMACY, f"seed-{n}"),
            member=rng.choice(members) if n % 50 else "m" * 64,
            policy_id=POLICY.policy_id if rng.random() < 0.85 else "OTHER-PA",
            policy_version=rng.choice((POLICY.version, "2019.01-1")),
            product="70020191001",
            effective=effective,
            expiration=effective + timedelta(days=rng.choice((29, 180, 364))),
            source_kind=rng.choice(("claim", "request")),
            source_id=f"seed-{n}",
            decided_at=datetime(2024, 6, 1, tzinfo=UTC) + timedelta(seconds=rng.randrange(10**7)),
        )
        records.append(auth)
        if rng.random() < 0.2:
            records.append(revoked(auth, NOW, rng.choice(list(RevocationReason))))
            if rng.random() < 0.5:
                records.append(auth)  # an older copy read late
        elif rng.random() < 0.1:
            longer = auth.expiration + timedelta(days=90)
            records.append(Authorization(**{**_fields(auth), "expiration": longer}))
    # Numbers the claims below would be issued, held by someone else: the approvals are renumbered.
    for k in range(0, 300, 7):
        number = authorization_number(POLICY.policy_id, PHARMACY, f"claim-{k}")
        records.append(Authorization(**{**_fields(records[k]), "number": number, "member": members[-1]}))
    return records


def _claims(rng: random.Random, patients: list[dict[str, str]], records: list[Authorization]) -> list[tuple]:
    """Fills and first approvals for the patients: dates through 2024-2026, quoted numbers own, foreign and bad."""
    deactivated = Facts(prescriber=ProviderFacts(npi=NPIS[0], status=ProviderStatus.DEACTIVATED))
    numbers = sorted({a.number for a in records})
    claims = []
    for k in range(300):
        patient = rng.choice(patients)
        member = member_pseudonym(SECRET, make_claim(patient=patient).patient)
        own = [a for a in records if a.member == member] or records
        held = rng.choice(own)
        dos = held.effective + timedelta(days=rng.randrange(-60, 420))
        quoted = rng.choice((None, None, held.number, rng.choice(numbers), "12345678903", "NOT-A-PA", " "))
        fields = {} if quoted is None else {"prior_authorization_number": quoted}
        dx = () if rng.random() < 0.6 else ("C50.911", "C78.7")
        claim = make_claim(claim_id=f"claim-{k}", event_id=f"e{k}", patient=patient, dos=dos, dx=dx, **fields)
        claims.append((claim, deactivated if rng.random() < 0.1 else Facts()))
    return claims


class TestSameAnswersAsTheDictTable:
    def test_seeded_records_and_claims_decide_identically(self):
        """600 seeded records and 300 claims: every lookup, count, decision, store record and metric equals the dict table's."""
        rng = random.Random(2029)
        patients = _patients(60)
        records = _seed(rng, patients)
        packed, packed_metrics = _store(AuthorizationTable())
        plain, plain_metrics = _store(ReferenceTable())
        for auth in records:
            packed.table.apply(auth)
            plain.table.apply(auth)
        numbers = sorted({a.number for a in records})
        issued = 0
        for k, (claim, facts) in enumerate(_claims(rng, patients, records)):
            decisions = [
                store.decide(claim, facts, POLICY, NOW, lambda c=claim, f=facts: decide(c, f, POLICY, NOW))
                for store in (packed, plain)
            ]
            assert decisions[0] == decisions[1], claim.claim_id
            sent = [
                store.issue(claim, decision)
                for store, decision in zip((packed, plain), decisions, strict=True)
            ]
            assert sent[0] == sent[1]
            issued += sent[0] is not None
            if k % 10 == 9:
                for store in (packed, plain):
                    store.abort() if k % 40 == 39 else store.commit()
        assert issued > 20, "the claims approved afresh, as well as on file"
        assert _samples(packed_metrics) == _samples(plain_metrics)
        assert len(packed.table) == len(plain.table)
        for number in [*numbers, "12345678903", "123"]:
            assert packed.table.get(number) == plain.table.get(number)
        members = {a.member for a in records} | {"f" * 64}
        for member in members:
            for policy_id in (POLICY.policy_id, "OTHER-PA", "NEVER-ISSUED"):
                assert packed.table.of_member(member, policy_id) == plain.table.of_member(member, policy_id)
                for day in (date(2024, 7, 1), date(2025, 3, 10), date(2026, 1, 1)):
                    held = packed.table.of_member(member, policy_id, day)
                    assert held == plain.table.of_member(member, policy_id, day)
        for day in (date(2024, 1, 1), date(2025, 3, 10), date(2026, 6, 1)):
            assert packed.table.counts(day) == plain.table.counts(day)

    def test_the_seeded_claims_cover_every_path(self):
        """The seeded set reaches on-file approvals by member and by number, quoted numbers not honoured, and renumbering."""
        rng = random.Random(2029)
        patients = _patients(60)
        records = _seed(rng, patients)
        store, registry = _store(AuthorizationTable())
        for auth in records:
            store.table.apply(auth)
        outcomes = set()
        for claim, facts in _claims(rng, patients, records):
            decision = store.decide(
                claim, facts, POLICY, NOW, lambda c=claim, f=facts: decide(c, f, POLICY, NOW)
            )
            outcomes.add((decision.outcome, decision.decision_source))
            store.issue(claim, decision)
            store.commit()
        text = generate_latest(registry).decode()
        for sample in (
            'claims_worker_on_file_approvals_total{via="member_product"}',
            'claims_worker_on_file_approvals_total{via="quoted_number"}',
            'claims_worker_quoted_pa_not_honoured_total{why="unknown"}',
            'claims_worker_quoted_pa_not_honoured_total{why="malformed"}',
            'claims_worker_quoted_pa_not_honoured_total{why="other_member"}',
            "claims_worker_authorization_number_collisions_total",
            'claims_worker_on_file_not_used_total{prescriber="DEACTIVATED"}',
        ):
            line = next(line for line in text.splitlines() if line.startswith(sample + " "))
            assert float(line.split()[-1]) > 0, sample
        assert any(outcome is Outcome.APPROVED for outcome, _ in outcomes)
        assert any(outcome is not Outcome.APPROVED for outcome, _ in outcomes)
