"""``claims-worker authorizations``: create the store topic, show an authorization, revoke one.

Exit codes: 0 done (a revoke of an already revoked number writes nothing and says so); 2 bad settings,
a missing store topic, an unknown PA number or an empty reason; 4 Kafka unreachable. See
docs/authorizations.md.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import argparse

    from worker.config.settings import Settings

__all__ = ["register"]

_EPILOG = (
    "exit codes: 0 done; 2 bad settings, no store topic, an unknown PA number or an empty reason; "
    "4 Kafka unreachable. See docs/authorizations.md."
)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``authorizations`` and its sub-commands to the ``claims-worker`` parser."""
    parser = sub.add_parser(
        "authorizations", help="show or revoke prior authorizations on file", epilog=_EPILOG
    )
    commands = parser.add_subparsers(dest="authorizations_command", required=True)
    create = commands.add_parser("create-topic", help="create the compacted store topic if it is missing")
    create.add_argument("--partitions", type=int, default=1, help="partitions when the topic is created")
    create.add_argument("--replication-factor", type=int, default=1, help="when the topic is created")
    create.set_defaults(handler=_create)
    show = commands.add_parser("show", help="print one authorization on file (JSON; no PHI)")
    show.add_argument("number", help="the 11-digit PA number (498-PY)")
    show.set_defaults(handler=_show)
    revoke = commands.add_parser("revoke", help="revoke an authorization: an event in the store, once")
    revoke.add_argument("number", help="the 11-digit PA number (498-PY)")
    revoke.add_argument("--reason", required=True, help="why (kept in the store; write no PHI here)")
    revoke.set_defaults(handler=_revoke)
    serve = commands.add_parser(
        "serve-requests",
        help="decide PA requests (CLAIMS_PA_REQUESTS_TOPIC) and answer on CLAIMS_PA_DECISIONS_TOPIC",
    )
    serve.set_defaults(handler=_serve_requests)
    fill = commands.add_parser(
        "seed-demo-fill", help="(demo) produce a later fill, without clinical data, for sample approve-codes"
    )
    fill.set_defaults(handler=_seed_demo_fill)


def _error(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 2


def _topic(settings: Settings) -> str | None:
    return settings.authorizations_topic


def _read(settings: Settings, topic: str) -> object:
    from worker.runtime.clients import Role, new_consumer  # noqa: PLC0415 - keeps `--help` fast
    from worker.state.authorizations import read_table  # noqa: PLC0415

    consumer = new_consumer(
        settings,
        Role.AUTHORIZATIONS,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
    )
    try:
        return read_table(consumer, topic, settings.authorizations_catch_up_timeout_s).table
    finally:
        consumer.close()


def _create(args: argparse.Namespace, settings: Settings) -> int:
    from worker.directory.updates import ensure_topic  # noqa: PLC0415 - the same compacted-topic check

    topic = _topic(settings)
    if topic is None:
        return _error("CLAIMS_AUTHORIZATIONS_TOPIC is not set")
    created = ensure_topic(settings, topic, args.partitions, args.replication_factor)
    print(f"{topic}: {'created (compacted)' if created else 'already exists (compacted)'}")
    return 0


def _as_json(auth: object) -> str:
    from dataclasses import asdict  # noqa: PLC0415

    body = asdict(auth)  # type: ignore[call-overload]
    body["member_pseudonym"] = body.pop("member")[:12] + "…"  # enough to compare, not to carry around
    return json.dumps(body, default=str, sort_keys=True)


def _show(args: argparse.Namespace, settings: Settings) -> int:
    from worker.state.authorizations import AuthorizationTable  # noqa: PLC0415

    topic = _topic(settings)
    if topic is None:
        return _error("CLAIMS_AUTHORIZATIONS_TOPIC is not set")
    table = _read(settings, topic)
    assert isinstance(table, AuthorizationTable)  # noqa: S101 - narrows the lazily imported type
    auth = table.get(args.number)
    if auth is None:
        return _error(f"no authorization {args.number} on file in {topic}")
    print(_as_json(auth))
    return 0


def _revoke(args: argparse.Namespace, settings: Settings) -> int:
    from worker.runtime.clients import Role, new_producer  # noqa: PLC0415
    from worker.state.authorizations import (  # noqa: PLC0415
        AuthorizationTable,
        encode_authorization,
        revoked,
    )

    topic = _topic(settings)
    if topic is None:
        return _error("CLAIMS_AUTHORIZATIONS_TOPIC is not set")
    reason = " ".join(args.reason.split())
    if not reason:
        return _error("--reason must say why")
    table = _read(settings, topic)
    assert isinstance(table, AuthorizationTable)  # noqa: S101 - narrows the lazily imported type
    auth = table.get(args.number)
    if auth is None:
        return _error(f"no authorization {args.number} on file in {topic}")
    if auth.revoked:
        print(f"{args.number}: already revoked at {auth.revoked_at} ({auth.revoked_reason}); nothing written")
        return 0
    key, value = encode_authorization(revoked(auth, datetime.now(UTC), reason[:200]))
    producer = new_producer(settings, Role.AUTHORIZATIONS, enable_idempotence=True, acks="all")
    try:
        partitions = sorted(producer.partitions_for(topic))
        partition = int(args.number) % len(partitions) if args.number.isdigit() else 0
        producer.send(topic, key=key, value=value, partition=partition).get(timeout=30)
        producer.flush()
    finally:
        producer.close()
    print(f"{args.number}: revoked ({reason[:200]})")
    return 0


def _seed_demo_fill(_args: argparse.Namespace, settings: Settings) -> int:
    """Produce a fill three weeks after sample ``approve-codes`` for the same member, with no diagnoses."""
    from datetime import timedelta  # noqa: PLC0415

    from worker.contracts.codec import Codec  # noqa: PLC0415
    from worker.devtools.samples import sample_claims  # noqa: PLC0415
    from worker.runtime.clients import Role, new_producer  # noqa: PLC0415

    first = next(s.claim for s in sample_claims() if s.label == "approve-codes")
    fill = first.model_copy(
        update={
            "event_id": f"{first.event_id}-FILL2",
            "claim_id": f"{first.claim_id}-FILL2",
            "fill_number": first.fill_number + 1,
            "date_of_service": first.date_of_service + timedelta(days=21),
            "diagnoses": (),
            "attestation": None,
        }
    )
    producer = new_producer(settings, Role.SEEDER, acks="all")
    try:
        producer.send(settings.claims_topic, key=fill.claim_id.encode(), value=Codec().encode_claim(fill))
        producer.flush()
    finally:
        producer.close()
    print(f"produced fill {fill.claim_id} (date of service {fill.date_of_service}, no diagnoses)")
    return 0


def _serve_requests(_args: argparse.Namespace, settings: Settings) -> int:
    """Serve PA requests until SIGTERM/SIGINT (or idle past CLAIMS_EXIT_WHEN_IDLE_S)."""
    import signal  # noqa: PLC0415
    import threading  # noqa: PLC0415

    from worker.ops.logs import configure_logging, get_logger  # noqa: PLC0415
    from worker.runtime.requests import serve_requests  # noqa: PLC0415

    configure_logging(settings.log_format.value, settings.log_level)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    return serve_requests(settings, stop, get_logger("claims_worker.pa_requests"))
