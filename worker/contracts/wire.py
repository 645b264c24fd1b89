"""Wire constants shared by every door: record header names and the outcome sets, each defined once."""

from __future__ import annotations

from enum import StrEnum

from worker.contracts.codes import Outcome

__all__ = [
    "ERROR_CLASS_HEADER",
    "EVENT_ID_HEADER",
    "INHERITED_HEADER",
    "NOT_APPROVED",
    "REPLAY_AUTHORIZATIONS_HEADER",
    "REPLAY_DIRECTORY_HEADER",
    "REPLAY_ID_HEADER",
    "REPLAY_POLICY_HEADER",
    "WireFormat",
]

EVENT_ID_HEADER = "claims-worker.event-id"
"""On every result and answer: the event (or request) id it answers; the duplicate filter reads it back."""
ERROR_CLASS_HEADER = "claims-worker.error-class"
"""On every dead letter: its ``DeadLetterClass``."""
REPLAY_ID_HEADER = "claims-worker.replay-id"
REPLAY_POLICY_HEADER = "claims-worker.replay-policy"
REPLAY_DIRECTORY_HEADER = "claims-worker.replay-directory"
REPLAY_AUTHORIZATIONS_HEADER = "claims-worker.replay-authorizations"
INHERITED_HEADER = "claims-worker.replay-inherited"
"""Replay headers: which replay wrote a record, under which policy and reference data."""

NOT_APPROVED = (Outcome.DENIED, Outcome.PENDED, Outcome.REFERRED)
"""The outcomes that answer "not approved": their failing criteria's reason codes are counted."""


class WireFormat(StrEnum):
    """How ``Codec.encode_*`` frames Avro records on the wire; decoding accepts both."""

    SINGLE_OBJECT = "single-object"
    CONFLUENT = "confluent"
