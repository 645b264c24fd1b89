"""The inputs of the bad-input campaign (``make chaos-input``): malformed records of every probed kind among valid claims.

Every input carries a unique marker header (``MARKER_HEADER``: its index in the plan), so an answer read back
by its source coordinates maps to the input it answers, and through it to the kind and the answer expected:

* ``RESULT``: a judged claim (any outcome but REJECTED);
* ``REJECTED``: a REJECTED result with NCPDP reject codes (the claim id is readable, a field is not);
* ``DEAD``: a dead letter that keeps the original key, value and headers byte for byte;
* ``ANSWER``: either a result or a dead letter (a bit flip may still decode; a record near the size
  limit may come back as a TOO_LARGE dead letter without its bytes, which route.too_large documents).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from enum import StrEnum
from io import BytesIO
from typing import TYPE_CHECKING

from fastavro import parse_schema, schemaless_writer

from tests.integration import streams
from tests.integration.malformed import malformed
from worker.contracts.codec import Codec

if TYPE_CHECKING:
    import random

__all__ = ["MARKER_HEADER", "Expect", "Input", "make_inputs"]

MARKER_HEADER = "campaign-seq"
OTHER_DRUG = {"product_id": streams.CAPECITABINE, "qualifier": "03"}
# Values this long still fit one 1 MiB request (kafka-python's max_request_size, the broker's max.message.bytes);
# the longest ones' dead letters (the value plus ~200 bytes) do not: a TOO_LARGE dead letter without the bytes.
NEAR_LIMIT = (1_046_000, 1_048_400)
CONTROL = ["\x00", "\x07", "\x1b[31m", "\r\n", "\u202e", "\u2066", "\u200b", "\ufeff", "\x7f", "\u0085"]
SCHEMA = streams.ROOT / "worker" / "contracts" / "schemas" / "claim.v2.avsc"


class Expect(StrEnum):
    """The answer an input must get."""

    RESULT = "result"
    REJECTED = "rejected"
    DEAD = "dead letter"
    ANSWER = "result or dead letter"


@dataclass
class Input:
    """One record of the campaign and the answer it must get (``claim_id``: the result's, when known)."""

    kind: str
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]
    expect: Expect
    claim_id: str | None = None


# The eight kinds of tests/integration/malformed.py and what each must get.
_MALFORMED_EXPECT = {
    "random": Expect.DEAD,
    "random-marker": Expect.DEAD,
    "wrong-fingerprint": Expect.DEAD,
    "truncated": Expect.DEAD,
    "confluent-unknown-id": Expect.DEAD,
    "bit-flip": Expect.ANSWER,
    "invalid-field": Expect.REJECTED,
    "empty": Expect.DEAD,
    "tombstone": Expect.DEAD,
}


def _wrong_types_writer() -> dict:
    """The claim schema with some fields' types changed: bodies that do not match the fingerprint they carry."""
    schema = json.loads(SCHEMA.read_text())
    for field in schema["fields"]:
        if field["name"] in {"days_supply", "fill_number"}:
            field["type"] = "string"
        elif field["name"] == "quantity":
            field["type"] = "long"
        elif field["name"] == "diagnoses":
            field["type"] = "string"
            field.pop("default", None)
    return parse_schema(schema)


def _size(rng: random.Random, low: int, high: int) -> int:
    """A length between ``low`` and ``high``, log-uniform: every order of magnitude as often."""
    return int(math.exp(rng.uniform(math.log(low), math.log(high))))


def _claim_record(n: int, **overrides: object) -> dict:
    record = streams.claim(n, product=OTHER_DRUG).model_dump()
    record.update(overrides)
    return record


def _extra(i: int, n: int, codec: Codec, rng: random.Random, wrong: dict) -> Input:  # noqa: PLR0911, PLR0912
    """Malformed input ``i`` (claim number ``n``) of the kinds malformed() does not make."""
    record = _claim_record(n)
    cid = str(record["claim_id"])
    header = codec.encode_claim(record)[:10]
    kind = i % 12
    if kind == 0:  # control characters and bidi overrides in the claim id: unreadable, a dead letter
        bad = _claim_record(n, claim_id=f"c{rng.choice(CONTROL)}{n}")
        return Input("control-in-claim-id", cid.encode(), codec.encode_claim(bad), [], Expect.DEAD)
    if kind == 1:  # ... in the event id: the claim id is readable, so REJECTED
        bad = _claim_record(n, event_id=f"e{rng.choice(CONTROL)}{n}")
        return Input("control-in-event-id", cid.encode(), codec.encode_claim(bad), [], Expect.REJECTED, cid)
    if kind == 2:  # ... in free-text fields (names): no pattern there, the claim is judged
        patient = record["patient"] | {
            "first_name": f"A{rng.choice(CONTROL)}B",
            "last_name": f"{rng.choice(CONTROL)}Z",
        }
        bad = _claim_record(n, patient=patient)
        return Input("control-in-text", cid.encode(), codec.encode_claim(bad), [], Expect.RESULT, cid)
    if kind == 3:  # an oversized claim id: unreadable, a dead letter
        bad = _claim_record(n, claim_id="C" * _size(rng, 65, 200_000))
        return Input("oversized-claim-id", cid.encode(), codec.encode_claim(bad), [], Expect.DEAD)
    if kind == 4:  # an oversized text field: REJECTED
        patient = record["patient"] | {"last_name": "L" * _size(rng, 36, 300_000)}
        bad = _claim_record(n, patient=patient)
        return Input("oversized-field", cid.encode(), codec.encode_claim(bad), [], Expect.REJECTED, cid)
    if kind == 5:  # an oversized array: bounded by the codec or the model, either way answered
        diagnoses = [{"code": "C50.911", "qualifier": "02"}] * _size(rng, 100, 20_000)
        bad = _claim_record(n, diagnoses=diagnoses)
        return Input("oversized-array", cid.encode(), codec.encode_claim(bad), [], Expect.ANSWER)
    if kind == 6:  # nulls where required: a reversal without its original claim id, empty required text
        if rng.random() < 0.5:
            bad = _claim_record(n, transaction_code="B2", original_claim_id=None)
        else:
            bad = _claim_record(n, patient=record["patient"] | {"member_id": ""})
        return Input("null-required", cid.encode(), codec.encode_claim(bad), [], Expect.REJECTED, cid)
    if kind == 7:  # wrong types: a body written with other field types behind the claim's fingerprint
        body = BytesIO()
        typed = record | {
            "days_supply": "21",
            "fill_number": "x" * rng.randint(0, 40),
            "quantity": rng.randrange(1 << 40),
            "diagnoses": "C50.911",
        }
        schemaless_writer(body, wrong, typed)
        return Input("wrong-types", cid.encode(), header + body.getvalue(), [], Expect.ANSWER)
    if kind == 8:  # huge headers, many: on a truncated claim (the dead letter must keep them all)
        headers = [(f"h{j}", rng.randbytes(rng.randint(0, 64))) for j in range(rng.randint(200, 2_000))]
        value = codec.encode_claim(record)
        return Input(
            "many-headers", cid.encode(), value[: rng.randint(11, len(value) - 1)], headers, Expect.DEAD
        )
    if kind == 9:  # huge headers, large: on a valid claim (judged; the headers are not the claim)
        headers = [(f"big{j}", rng.randbytes(_size(rng, 10_000, 100_000))) for j in range(rng.randint(1, 5))]
        return Input("large-headers", cid.encode(), codec.encode_claim(record), headers, Expect.RESULT, cid)
    if kind == 10:  # a non-UTF-8 key on a valid claim: REJECTED (key, 85); on random bytes: a dead letter
        key = b"\xff\xfe" + rng.randbytes(rng.randint(0, 30))
        if rng.random() < 0.5:
            return Input("non-utf8-key", key, codec.encode_claim(record), [], Expect.REJECTED, cid)
        return Input("non-utf8-key-junk", key, rng.randbytes(rng.randint(1, 200)), [], Expect.DEAD)
    # 11: near the size limit, once in a while (each is a megabyte on every topic)
    if i % 240 == 11:
        return Input(
            "near-size-limit", cid.encode(), rng.randbytes(rng.randint(*NEAR_LIMIT)), [], Expect.ANSWER
        )
    bad = _claim_record(n, claim_id=f"{cid}\u202e{rng.choice(CONTROL)}")
    return Input("bidi-in-claim-id", cid.encode(), codec.encode_claim(bad), [], Expect.DEAD)


def make_inputs(n_malformed: int, n_valid: int, rng: random.Random) -> list[Input]:
    """``n_malformed`` malformed inputs (half of malformed()'s kinds, half of ``_extra``'s) among ``n_valid``
    valid claims, shuffled; each with its marker header."""
    codec = Codec()
    wrong = _wrong_types_writer()
    half = n_malformed // 2
    inputs = []
    for i, (kind, value) in enumerate(malformed(half, codec, rng)):
        claim_id = f"bad-{i:06d}" if kind == "invalid-field" else None
        inputs.append(Input(kind, f"bad-{kind}-{i}".encode(), value, [], _MALFORMED_EXPECT[kind], claim_id))
    inputs += [_extra(i, 700_000 + i, codec, rng, wrong) for i in range(n_malformed - half)]
    for i in range(n_valid):
        claim = streams.claim(i) if i % 50 == 0 else streams.claim(i, product=OTHER_DRUG)
        key = None if i % 97 == 0 else claim.claim_id.encode()  # an absent key is a clean key
        inputs.append(Input("valid", key, codec.encode_claim(claim), [], Expect.RESULT, claim.claim_id))
    rng.shuffle(inputs)
    for seq, item in enumerate(inputs):
        item.headers.append((MARKER_HEADER, str(seq).encode()))
    return inputs
