"""Benchmark of worker.policy.decide: decisions per second on one core, median over several rounds.

Run: ``.venv/bin/python tests/bench/bench_policy.py [--claims N] [--rounds R]``. Claims are built and
validated once, before timing; each round decides every claim once. "warm" reuses one policy, whose
per-rule memos fill in the warm-up pass; "cold" loads a fresh policy (empty memos) for every round.
Rates are per second of this process's CPU time (``time.process_time``), so other load on a shared
machine does not count; compare the "best" figures of two runs.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from importlib import resources
from typing import TYPE_CHECKING, Any

from worker.contracts.model import Claim
from worker.policy import Facts, ProviderFacts, ProviderStatus, decide, default_policy, load_policy

if TYPE_CHECKING:
    from worker.policy import Policy

__all__: list[str] = []

_NPIS = ("1234567893", "1987654328", "1111111112", "2222222228", "1555555550", "1333333338")
_ONCOLOGY = ("207RX0202X", "207RH0003X", "2086X0206X", "2085R0001X", "207VX0201X", "2080P0207X")
_OTHER_TAXONOMY = ("207Q00000X", "207R00000X", "207RH0000X", "163WX0200X", "1835X0200X")
_BREAST = tuple(f"C50.{site}{sex}{side}" for site in "012345689" for sex in "12" for side in "129")
_DISTANT = ("C78.01", "C78.02", "C78.7", "C79.31", "C79.51", "C79.52", "C79.9", "C80.0", "C787", "C7951")
_NODES = ("C77.3", "C77.2", "C77.9")
_OTHER_PRIMARY = ("C34.90", "C18.9", "C61", "C80.1")
_IXEMPRA = ("70020191001", "70020-1910-01", "70020-1910-1", "70020191101", "70020-1911-01", "7002019101")
_LOOK_ALIKE = ("00093-7474-89", "31722-775-12", "68817-134-50", "0409-0365-01", "68083-592-01", "63020039002")


def _dx(*codes: str) -> list[dict[str, str]]:
    return [{"code": code, "qualifier": "02"} for code in codes]


def _scenario(rng: random.Random) -> dict[str, Any]:
    """Return the fields that vary between claims, drawn from a plausible production mix."""
    roll = rng.random()
    fields: dict[str, Any] = {"ndc": rng.choice(_IXEMPRA), "taxonomy": rng.choice(_ONCOLOGY)}
    if roll < 0.35:  # metastatic by codes, oncologist: approved
        codes = [rng.choice(_BREAST), rng.choice(_DISTANT)]
        rng.shuffle(codes)
        fields["diagnoses"] = _dx(*codes, *(["Z17.0"] if rng.random() < 0.3 else []))
    elif roll < 0.45:  # breast code, attested status
        fields["diagnoses"] = _dx(rng.choice(_BREAST))
        fields["status"] = rng.choice(("METASTATIC", "RECURRENT", "EARLY", "LOCALLY_ADVANCED"))
    elif roll < 0.55:  # breast code alone or with nodes: pended for disease status
        fields["diagnoses"] = _dx(rng.choice(_BREAST), *([rng.choice(_NODES)] if rng.random() < 0.5 else []))
    elif roll < 0.60:  # history + new primary: inferred recurrence
        fields["diagnoses"] = _dx("Z85.3", rng.choice(_BREAST + _NODES))
    elif roll < 0.65:  # other cancer: denied
        fields["diagnoses"] = _dx(rng.choice(_OTHER_PRIMARY), rng.choice(_DISTANT))
    elif roll < 0.72:  # metastatic, non-oncologist, consultation attested one way or another
        fields["diagnoses"] = _dx(rng.choice(_BREAST), rng.choice(_DISTANT))
        fields["taxonomy"] = rng.choice((*_OTHER_TAXONOMY, None))
        fields["consultation"] = rng.choice(
            (
                {"status": "YES", "consultant_taxonomy": rng.choice(_ONCOLOGY)},
                {"status": "YES", "consultant_npi": rng.choice(_NPIS)},
                {"status": "NO"},
                {"status": "UNKNOWN"},
            )
        )
    elif roll < 0.76:  # no diagnosis code at all
        fields["diagnoses"] = []
    elif roll < 0.88:  # another drug
        fields["ndc"] = rng.choice(_LOOK_ALIKE)
        fields["diagnoses"] = _dx(rng.choice(_BREAST))
    elif roll < 0.94:  # reversal
        fields["transaction_code"] = "B2"
        fields["diagnoses"] = []
    else:  # rebill, decided afresh
        fields["transaction_code"] = "B3"
        fields["diagnoses"] = _dx(rng.choice(_BREAST), rng.choice(_DISTANT))
    return fields


def build_claims(count: int, seed: int = 20200908) -> list[Claim]:
    """Build and validate ``count`` synthetic claims (obviously fake PHI) from a fixed seed."""
    rng = random.Random(seed)
    claims: list[Claim] = []
    start = date(2024, 1, 1)
    for i in range(count):
        fields = _scenario(rng)
        transaction_code = fields.get("transaction_code", "B1")
        attestation = None
        if "status" in fields or "consultation" in fields:
            attestation = {
                "disease_status": fields.get("status", "UNKNOWN"),
                "consultation": fields.get("consultation", {}),
            }
        service = start + timedelta(days=rng.randrange(1000))
        raw = {
            "event_id": f"evt-{i}",
            "event_time": f"{service.isoformat()}T12:00:00Z",  # submitted on the day: passes the edits
            "transaction_code": transaction_code,
            "claim_id": f"clm-{i}",
            "original_claim_id": None if transaction_code == "B1" else f"clm-{i}-orig",
            "service_provider_id": "1234567893",
            "prescription_reference_number": f"{i % 10**12}",
            "fill_number": 0,
            "date_of_service": service.isoformat(),
            "patient": {"member_id": f"SYN{i}", "last_name": "SYNTHETIC", "date_of_birth": "1970-01-01"},
            "product": {"product_id": fields["ndc"], "qualifier": "03"},
            "quantity": 1,
            "days_supply": 21,
            "diagnoses": fields["diagnoses"],
            "prescriber": {"npi": rng.choice(_NPIS), "taxonomy": fields["taxonomy"]},
            "attestation": attestation,
        }
        claims.append(Claim.model_validate(raw))
    return claims


_NO_DIRECTORY = Facts()


def directory_facts(claims: list[Claim]) -> list[Facts]:
    """Return per-claim directory facts as the pipeline would hand them over (a taxonomy-less claim mix)."""
    facts = []
    for i, claim in enumerate(claims):
        npi = claim.prescriber.npi
        taxonomies = ("207R00000X", "207RX0202X") if i % 3 else ("207Q00000X",)
        status = ProviderStatus.NOT_FOUND if i % 50 == 0 else ProviderStatus.ACTIVE
        facts.append(
            Facts(
                prescriber=ProviderFacts(npi, status, taxonomies, taxonomies[0], "bench-directory"),
                directory_version="bench-directory",
            )
        )
    return facts


def _round(
    claims: list[Claim], decided_at: datetime, policy: Policy, facts: list[Facts] | None = None
) -> float:
    """Decide every claim once (with its directory facts, if given) and return decisions per second."""
    started = time.process_time()
    if facts is None:
        for claim in claims:
            decide(claim, _NO_DIRECTORY, policy, decided_at)
    else:
        for claim, found in zip(claims, facts, strict=True):
            decide(claim, found, policy, decided_at)
    return len(claims) / (time.process_time() - started)


def _report(label: str, rates: list[float]) -> None:
    print(
        f"{label}: median {statistics.median(rates):,.0f} decisions/s, best {max(rates):,.0f} "
        f"(min {min(rates):,.0f}, max {max(rates):,.0f}; rounds: {', '.join(f'{r:,.0f}' for r in rates)})"
    )


def main() -> None:
    """Build the claims, run warm and cold rounds, print the median rates and the outcome mix."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--claims", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()

    claims = build_claims(args.claims)
    decided_at = datetime(2025, 3, 10, 12, 0, tzinfo=UTC)
    policy = default_policy()
    outcomes = Counter(decide(claim, _NO_DIRECTORY, policy, decided_at).outcome.value for claim in claims)
    mix = ", ".join(f"{outcome} {count / len(claims):.0%}" for outcome, count in sorted(outcomes.items()))
    print(f"policy {policy.ref}; claims: {len(claims)}; rounds: {args.rounds}; outcome mix: {mix}")

    _report("warm", [_round(claims, decided_at, policy) for _ in range(args.rounds)])
    with resources.as_file(
        resources.files("worker.policies") / policy.policy_id / f"{policy.version}.json"
    ) as path:
        fresh = [load_policy(path) for _ in range(args.rounds)]
    _report("cold", [_round(claims, decided_at, fresh_policy) for fresh_policy in fresh])
    # Criterion B through the directory: the claim taxonomy removed, the facts carry it instead.
    bare = [
        claim.model_copy(update={"prescriber": claim.prescriber.model_copy(update={"taxonomy": None})})
        for claim in claims
    ]
    facts = directory_facts(bare)
    _round(bare, decided_at, policy, facts)  # warm-up
    _report(
        "warm, B from directory facts", [_round(bare, decided_at, policy, facts) for _ in range(args.rounds)]
    )


if __name__ == "__main__":
    main()
