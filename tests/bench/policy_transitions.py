"""Decide one seeded mix of claims under two checkouts and show how every outcome moved between them.

Run: ``.venv/bin/python tests/bench/policy_transitions.py --baseline /path/to/old/checkout``
(``git worktree add /tmp/base <commit>`` makes one). Each checkout decides the same raw claims with its
own default policy, without and with the bundled sample directory; the script prints the outcome
transition table and every claim that is APPROVED now but was not before, and exits 1 if there is one:
a change that only asks more, refers or rejects never makes an approval weaker.

The claim mix is built here from plain dicts, so both checkouts read the very same input.
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

__all__: list[str] = []

_ONCOLOGY = ("207RX0202X", "207RH0003X")
_OTHER = ("207Q00000X", "207R00000X", "207RH0000X", "163WX0200X")
# Sample-directory NPIs (deploy/demo/nppes_sample.py): oncologist, internal medicine with oncology
# secondary, family physician, hem-onc consultant, organisation, deactivated, reactivated, unlisted.
_NPIS = (
    "1234567893",
    "1111111112",
    "1987654328",
    "1555000011",
    "2222222228",
    "1444444446",
    "1777777776",
    "1999999992",
)
_BREAST = ("C50.911", "C50.912", "C50919", "C50.A1", "C50.9")
_DISTANT = ("C78.7", "C79.51", "C79.9", "C80.0", "C77.2")
_NODES = ("C77.3", "C77.9", "C77")
_OTHER_PRIMARY = ("C34.90", "C18.9", "C80.1", "C80")
_BAD_CODES = ("C5O.911", "C50.99", "C79.99")
_PRODUCTS = (
    ("70020191001", "03"),
    ("70020-1910-1", "03"),
    ("J9207", "09"),
    ("J9999", "09"),
    ("70020191101", "00"),
    ("00093-7474-89", "03"),
    ("ABC", "07"),
)


def _claim(i: int, rng: random.Random) -> dict[str, Any]:
    submitted = datetime(2025, 6, 1, 9, tzinfo=UTC) + timedelta(days=rng.randrange(300))
    dos = submitted.date() - timedelta(days=rng.choice((0, 0, 0, 3, 30, 400, -5)))
    diagnoses = rng.choice(
        (
            [rng.choice(_BREAST), rng.choice(_DISTANT)],
            [rng.choice(_BREAST)],
            [rng.choice(_BREAST), rng.choice(_NODES)],
            ["Z85.3", rng.choice(_BREAST + _NODES + _DISTANT)],
            [rng.choice(_OTHER_PRIMARY), rng.choice(_DISTANT)],
            [rng.choice(_OTHER_PRIMARY)],
            [rng.choice(_BREAST), rng.choice(_DISTANT), rng.choice(_OTHER_PRIMARY)],
            ["D05.11"],
            [rng.choice(_BAD_CODES)],
            [],
        )
    )
    product_id, qualifier = rng.choice(_PRODUCTS)
    consultation = rng.choice(
        (
            None,
            {"status": "YES", "consultant_npi": rng.choice(_NPIS), "consultant_taxonomy": None},
            {"status": "YES", "consultant_npi": None, "consultant_taxonomy": rng.choice(_ONCOLOGY)},
            {
                "status": "YES",
                "consultant_npi": rng.choice(_NPIS),
                "consultant_taxonomy": rng.choice(_ONCOLOGY),
            },
            {"status": "NO", "consultant_npi": rng.choice(_NPIS), "consultant_taxonomy": None},
        )
    )
    status = rng.choice((None, "METASTATIC", "RECURRENT", "EARLY"))
    attestation = None
    if consultation is not None or status is not None:
        attestation = {"disease_status": status or "UNKNOWN", "consultation": consultation or {}}
    tx = rng.choice(("B1", "B1", "B1", "B3", "B2"))
    return {
        "event_id": f"evt-{i}",
        "event_time": submitted.isoformat(),
        "transaction_code": tx,
        "claim_id": f"clm-{i}",
        "original_claim_id": None if tx == "B1" else f"clm-{i}-orig",
        "service_provider_id": "1234567893",
        "prescription_reference_number": f"{i:06d}",
        "fill_number": 0,
        "date_of_service": dos.isoformat(),
        "patient": {"member_id": f"SYN{i}", "last_name": "SYNTHETIC", "date_of_birth": "1960-01-01"},
        "product": {"product_id": product_id, "qualifier": qualifier},
        "quantity": rng.choice((1, 1, 1, 0)),
        "days_supply": rng.choice((21, 21, 28, 0)),
        "diagnoses": [{"code": code, "qualifier": "02"} for code in diagnoses],
        "prescriber": {"npi": rng.choice(_NPIS), "taxonomy": rng.choice((None, *_ONCOLOGY, *_OTHER))},
        "attestation": attestation,
    }


def _without_taxonomies(raw: dict[str, Any]) -> dict[str, Any]:
    """Return ``raw`` with neither the prescriber's nor the consultant's taxonomy."""
    bare = {**raw, "prescriber": {**raw["prescriber"], "taxonomy": None}}
    attestation = raw["attestation"]
    if attestation is not None and attestation.get("consultation"):
        consultation = {**attestation["consultation"], "consultant_taxonomy": None}
        bare["attestation"] = {**attestation, "consultation": consultation}
    return bare


def _emit(count: int, seed: int) -> None:
    """Decide the mix with the ``worker`` package on sys.path; print one JSON line per claim and case."""
    from pydantic import ValidationError  # noqa: PLC0415 - only in the emitting child

    try:  # the sample moved out of the package with the developer tools (issue 24)
        from deploy.demo.nppes_sample import build_sample_index  # noqa: PLC0415
    except ImportError:  # a checkout from before the move
        from worker.devtools.nppes_sample import build_sample_index  # noqa: PLC0415
    from worker.contracts.model import Claim  # noqa: PLC0415
    from worker.directory import Directory  # noqa: PLC0415
    from worker.policy import Facts, decide, default_policy  # noqa: PLC0415
    from worker.runtime.reference import lookup  # noqa: PLC0415

    policy = default_policy()
    rng = random.Random(seed)
    with tempfile.TemporaryDirectory() as folder:
        directory = Directory.open(build_sample_index(Path(folder) / "sample.idx"))
        for i in range(count):
            raw = _claim(i, rng)
            try:
                claim = Claim.model_validate(raw)
            except ValidationError:
                for case in ("none", "directory", "bare"):
                    print(json.dumps({"id": raw["claim_id"], "case": case, "outcome": "REJECTED(field)"}))
                continue
            # "bare": the same claim without the taxonomies it sends, decided with the directory: what
            # the directory's evidence alone gave (the old worker looked a person up only then).
            bare = _without_taxonomies(raw)
            bare_claim = Claim.model_validate(bare)
            cases = (
                ("none", claim, Facts()),
                ("directory", claim, lookup(directory, claim)),
                ("bare", bare_claim, lookup(directory, bare_claim)),
            )
            for case, decided, facts in cases:
                decision = decide(decided, facts, policy, datetime(2026, 1, 1, tzinfo=UTC))
                print(json.dumps({"id": claim.claim_id, "case": case, "outcome": decision.outcome.value}))
        directory.close()
    print(json.dumps({"policy": policy.ref}), file=sys.stderr)


def _run(tree: Path, count: int, seed: int) -> tuple[dict[tuple[str, str], str], str]:
    done = subprocess.run(
        [sys.executable, __file__, "--emit", "--claims", str(count), "--seed", str(seed)],
        cwd=tree,
        env={"PYTHONPATH": str(tree), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        msg = f"deciding the mix in {tree} failed:\n{done.stderr[-3000:]}"
        raise SystemExit(msg)
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    policy = json.loads(done.stderr.strip().splitlines()[-1])["policy"]
    return {(row["id"], row["case"]): row["outcome"] for row in rows}, policy


def main() -> int:
    """Compare this checkout with ``--baseline``; 1 when a claim not approved before is approved now."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", type=Path, help="the older checkout (a git worktree)")
    parser.add_argument("--claims", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=23)
    parser.add_argument("--emit", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.emit:
        _emit(args.claims, args.seed)
        return 0
    if args.baseline is None:
        parser.error("--baseline is required")
    here = Path(__file__).resolve().parents[2]
    before, old_policy = _run(args.baseline.resolve(), args.claims, args.seed)
    after, new_policy = _run(here, args.claims, args.seed)
    print(f"{args.claims} claims x (no directory, sample directory); baseline {old_policy}, now {new_policy}")
    cases = [key for key in before if key[1] != "bare"]
    moves = Counter((before[key], after[key]) for key in cases)
    print(f"{'before':>18} -> {'after':<18} {'count':>7}")
    for (old, new), n in sorted(moves.items(), key=lambda item: -item[1]):
        print(f"{old:>18} -> {new:<18} {n:>7}{'' if old != new else '  (same)'}")
    gained = sorted(key for key in cases if after[key] == "APPROVED" and before[key] != "APPROVED")
    # An approval gained where the baseline approved the same claim sent without taxonomies rests on
    # the directory evidence the baseline approved on; any other gained approval is unexplained.
    same_evidence = [key for key in gained if key[1] == "directory" and before[key[0], "bare"] == "APPROVED"]
    weaker = [key for key in gained if key not in same_evidence]
    print(f"approved now, not before: {len(gained)}")
    print(
        f"  of which the baseline approved on the same directory evidence (the claim sent without its "
        f"taxonomies): {len(same_evidence)}"
    )
    print(f"  unexplained (an approval on weaker evidence): {len(weaker)}")
    for claim_id, case in weaker[:20]:
        print(f"    {claim_id} ({case}): {before[claim_id, case]} -> APPROVED")
    return 1 if weaker else 0


if __name__ == "__main__":
    sys.exit(main())
