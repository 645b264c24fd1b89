"""Tests of the synthetic samples: they are valid, obviously fake, cover the policy paths, and decode."""

from __future__ import annotations

import pytest

from worker.contracts.codec import Codec
from worker.contracts.model import Claim, TransactionCode, npi_is_valid
from worker.contracts.registry import load_schemas
from worker.devtools.samples import Sample, poison_records, sample_claims, sample_records
from worker.errors import BadRecord, DeadLetterClass, DecodeError, MalformedClaim


@pytest.fixture(scope="module")
def codec():
    """One codec for the module."""
    return Codec()


def test_labels_are_unique_and_cover_a_dozen_paths():
    """There are at least twelve samples, each with a distinct label, one of them written with claim v1."""
    samples = sample_claims()
    labels = [sample.label for sample in samples]
    assert len(labels) >= 12
    assert len(set(labels)) == len(labels)
    assert all(isinstance(sample, Sample) for sample in samples)
    assert [s.label for s in samples if s.schema_version == 1] == ["approve-v1-writer"]


def test_samples_are_obviously_synthetic():
    """Every patient is a TEST/SYNTH person and every NPI passes the check digit."""
    for _, claim, _ in sample_claims():
        assert isinstance(claim, Claim)
        assert claim.patient.last_name == "TEST"
        assert claim.patient.member_id.startswith("SYNTH")
        assert claim.claim_id.startswith("SYNTH")
        assert npi_is_valid(claim.prescriber.npi)


def test_samples_cover_the_required_cases():
    """The samples include both Ixempra NDCs, capecitabine, C79.81, no diagnosis, B2 and B3."""
    claims = [sample.claim for sample in sample_claims()]
    products = {claim.product.product_id for claim in claims}
    assert {"70020191001", "70020-1911-01", "00093747489"} <= products
    codes = {dx.code for claim in claims for dx in claim.diagnoses}
    assert {"C50.911", "C50.912", "C78.7", "C79.81"} <= codes
    assert any(not claim.diagnoses for claim in claims)
    transactions = {claim.transaction_code for claim in claims}
    assert transactions == set(TransactionCode)


def test_sample_records_decode(codec):
    """Every encoded sample decodes to its claim and carries its schema version's fingerprint."""
    fingerprints = {(v.family, v.version): v.fingerprint for v in load_schemas()}
    samples = {sample.label: sample for sample in sample_claims()}
    for label, key, value in sample_records(codec):
        sample = samples[label]
        assert codec.decode_claim(value) == sample.claim
        assert key == sample.claim.claim_id.encode()
        assert value[2:10] == fingerprints[("claim", sample.schema_version or 2)]


def test_poison_records_are_rejected(codec):
    """Every poison record raises BadRecord: undecodable ones (dead letters) and malformed ones (REJECTED results)."""
    classes = []
    kinds = set()
    for _, value in poison_records(codec):
        with pytest.raises(BadRecord) as info:
            codec.decode_claim(value)
        classes.append(info.value.error_class)
        kinds.add(type(info.value))
    assert kinds == {DecodeError, MalformedClaim}
    assert {DeadLetterClass.NOT_AVRO, DeadLetterClass.TRUNCATED, DeadLetterClass.UNKNOWN_SCHEMA} <= set(
        classes
    )
    assert DeadLetterClass.INVALID_FIELD in classes
