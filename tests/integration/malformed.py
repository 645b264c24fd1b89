"""Malformed claim values of the kinds the bad-input probes used, shared by the flood test and ``make chaos-input``.

Each generator returns ``(kind, value)`` pairs; ``kind`` names how the value was made, so a checker can say
which answer it expects (tests/integration/test_bad_input.py, tests/chaos/bad_input_campaign.py).
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING

from tests.integration import streams
from worker.contracts.codec import CONFLUENT_MAGIC, SINGLE_OBJECT_MARKER, Codec

if TYPE_CHECKING:
    import random

__all__ = ["invalid_fields", "malformed"]


def invalid_fields(record: dict, rng: random.Random) -> dict:
    """A claim dict that still fits the Avro schema but breaks one validation rule."""
    bad = dict(record)
    choice = rng.randrange(5)
    if choice == 0:
        bad["prescriber"] = record["prescriber"] | {"npi": "1234567890"}  # wrong check digit
    elif choice == 1:
        bad["days_supply"] = rng.choice([-1, 1000, 10**6])
    elif choice == 2:
        bad["fill_number"] = rng.choice([-3, 100])
    elif choice == 3:
        bad["quantity"] = rng.choice([-1.0, float("nan"), float("inf")])
    else:
        bad["diagnoses"] = [{"code": "", "qualifier": "02"}] * rng.randint(1, 3)
    return bad


def malformed(n: int, codec: Codec, rng: random.Random) -> list[tuple[str, bytes | None]]:
    """``n`` malformed values in eight kinds, each tagged with how it was made.

    The invalid-field kind carries the claim id ``bad-<i:06d>`` (``i`` its index here): it is answered with
    a REJECTED result; bit flips may still decode to a valid claim; every other kind is a dead letter.
    """
    template = streams.claim(0).model_dump()
    out: list[tuple[str, bytes | None]] = []
    for i in range(n):
        good = codec.encode_claim(streams.claim(500_000 + i))
        kind = i % 8
        if kind == 0:
            out.append(("random", rng.randbytes(rng.randint(0, 300))))
        elif kind == 1:
            out.append(("random-marker", SINGLE_OBJECT_MARKER + rng.randbytes(rng.randint(0, 300))))
        elif kind == 2:
            out.append(("wrong-fingerprint", SINGLE_OBJECT_MARKER + rng.randbytes(8) + good[10:]))
        elif kind == 3:
            out.append(("truncated", good[: rng.randint(0, len(good) - 1)]))
        elif kind == 4:
            # Above the local id map's ids (schemas/registry-ids.json), so never a known one.
            schema_id = struct.pack(">I", rng.randrange(1 << 20, 1 << 32))
            out.append(("confluent-unknown-id", CONFLUENT_MAGIC + schema_id + good[10:]))
        elif kind == 5:
            flipped = bytearray(good)
            for _ in range(rng.randint(1, 4)):
                flipped[rng.randrange(10, len(flipped))] ^= 1 << rng.randrange(8)
            out.append(("bit-flip", bytes(flipped)))
        elif kind == 6:
            record = template | {"event_id": f"bad-{i:06d}", "claim_id": f"bad-{i:06d}"}
            out.append(("invalid-field", codec.encode_claim(invalid_fields(record, rng))))
        else:
            out.append(("empty" if i % 16 == 7 else "tombstone", b"" if i % 16 == 7 else None))
    return out
