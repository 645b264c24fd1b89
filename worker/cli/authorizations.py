"""``claims-worker authorizations``: create the store topic, show or revoke an authorization, serve requests.

Exit codes: 0 done (a revoke of an already revoked number writes nothing and says so); 2 bad settings,
a missing store topic, an unknown PA number or a reason that is not one of the reason codes; 4 Kafka
unreachable. ``serve-requests`` runs the claims' pipeline with the request door and has the worker's
codes (0, 2, 3, 4, 5, 70). See docs/authorizations.md.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from worker.cli.exits import exit_epilog
from worker.errors import ExitCode
from worker.ops.escaping import echo, printable

if TYPE_CHECKING:
    import argparse

    from worker.config.settings import Settings

__all__ = ["register"]

_EPILOG = exit_epilog(
    (ExitCode.OK, "done"),
    (ExitCode.BAD_SETTINGS, "bad settings, no store topic, an unknown PA number or an unknown reason code"),
    (ExitCode.UNREACHABLE, "Kafka unreachable"),
    (ExitCode.NOT_AUTHORIZED, "not authorized (a refused login or a missing ACL)"),
    note="serve-requests (the claims' pipeline with the request door): 0 clean stop, 2 bad settings or a"
    " missing or too small topic, 3 fenced, 4 unreachable past the outage limit, 5 not authorized, 70"
    " internal error. See docs/authorizations.md.",
)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``authorizations`` and its sub-commands to the ``claims-worker`` parser."""
    parser = sub.add_parser(
        "authorizations", help="show or revoke prior authorizations on file", epilog=_EPILOG
    )
    commands = parser.add_subparsers(dest="authorizations_command", required=True)
    create = commands.add_parser(
        "create-topic", epilog=_EPILOG, help="create the compacted store topic if it is missing"
    )
    create.add_argument("--partitions", type=int, default=1, help="partitions when the topic is created")
    create.add_argument("--replication-factor", type=int, default=1, help="when the topic is created")
    create.set_defaults(handler=_create)
    show = commands.add_parser("show", epilog=_EPILOG, help="print one authorization on file (JSON; no PHI)")
    show.add_argument("number", help="the 11-digit PA number (498-PY)")
    show.set_defaults(handler=_show)
    revoke = commands.add_parser(
        "revoke", epilog=_EPILOG, help="revoke an authorization: an event in the store, once"
    )
    revoke.add_argument("number", help="the 11-digit PA number (498-PY)")
    revoke.add_argument(
        "--reason",
        required=True,
        help="why, as a reason code: " + ", ".join(_REASONS) + " (docs/authorizations.md)",
    )
    revoke.set_defaults(handler=_revoke)
    serve = commands.add_parser(
        "serve-requests",
        epilog=_EPILOG,
        help="decide PA requests (CLAIMS_PA_REQUESTS_TOPIC) and answer on CLAIMS_PA_DECISIONS_TOPIC",
    )
    serve.set_defaults(handler=_serve_requests)
    answers = commands.add_parser(
        "decisions", epilog=_EPILOG, help="print the answers on CLAIMS_PA_DECISIONS_TOPIC (JSON lines)"
    )
    answers.set_defaults(handler=_decisions)
    request = commands.add_parser(
        "seed-demo-request", epilog=_EPILOG, help="(demo) produce one approvable PA request"
    )
    request.set_defaults(handler=_seed_demo_request)
    fill = commands.add_parser(
        "seed-demo-fill",
        epilog=_EPILOG,
        help="(demo) produce a later fill, without clinical data, for sample approve-codes",
    )
    fill.set_defaults(handler=_seed_demo_fill)


# The codes of worker.state.authorization.RevocationReason, spelled here so `--help` imports no store code
# (a unit test keeps the two lists equal).
_REASONS = (
    "ENTERED_IN_ERROR",
    "CLINICAL_REVIEW",
    "PRESCRIBER_INVALID",
    "MEMBER_NOT_ELIGIBLE",
    "THERAPY_DISCONTINUED",
    "DUPLICATE",
    "PROGRAM_INTEGRITY",
)


def _error(message: str) -> int:
    echo(f"error: {message}", file=sys.stderr)
    return 2


def _topic(settings: Settings) -> str | None:
    return settings.authorizations_topic


def _read(settings: Settings, topic: str) -> object:
    from worker.kafka.clients import Role, new_consumer  # noqa: PLC0415 - keeps `--help` fast
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
    echo(f"{topic}: {'created (compacted)' if created else 'already exists (compacted)'}")
    plain = [t for t in (settings.pa_requests_topic, settings.pa_decisions_topic) if t is not None]
    if plain:
        _create_plain(settings, plain, args.partitions, args.replication_factor)
    return 0


def _create_plain(settings: Settings, topics: list[str], partitions: int, replication_factor: int) -> None:
    """Create the PA request and decision topics (not compacted) when they are missing."""
    from worker.kafka.clients import Role  # noqa: PLC0415
    from worker.kafka.topics import create_plain_topics  # noqa: PLC0415

    created = create_plain_topics(settings, topics, partitions, replication_factor, role=Role.AUTHORIZATIONS)
    for topic, made in created.items():
        echo(f"{topic}: {'created' if made else 'already exists'}")


def _as_json(auth: object) -> str:
    from dataclasses import asdict  # noqa: PLC0415

    body = asdict(auth)  # type: ignore[call-overload]
    body["member_pseudonym"] = body.pop("member")[:12] + "…"  # enough to compare, not to carry around
    return json.dumps(body, default=str, sort_keys=True)


def _show(args: argparse.Namespace, settings: Settings) -> int:
    from worker.state.authorization_table import AuthorizationTable  # noqa: PLC0415

    topic = _topic(settings)
    if topic is None:
        return _error("CLAIMS_AUTHORIZATIONS_TOPIC is not set")
    table = _read(settings, topic)
    assert isinstance(table, AuthorizationTable)  # noqa: S101 - narrows the lazily imported type
    auth = table.get(args.number)
    if auth is None:
        return _error(f"no authorization {args.number} on file in {topic}")
    echo(_as_json(auth))
    return 0


def _revoke(args: argparse.Namespace, settings: Settings) -> int:
    from worker.kafka.clients import Role, new_producer  # noqa: PLC0415
    from worker.state.authorization import RevocationReason, encode_authorization, revoked  # noqa: PLC0415
    from worker.state.authorization_table import AuthorizationTable  # noqa: PLC0415

    topic = _topic(settings)
    if topic is None:
        return _error("CLAIMS_AUTHORIZATIONS_TOPIC is not set")
    # A closed set: the store is PHI-free, so no free text goes into it (and none is echoed back here).
    reason = RevocationReason.parse(args.reason)
    if reason is None:
        return _error(f"--reason must be one of {', '.join(_REASONS)}")
    table = _read(settings, topic)
    assert isinstance(table, AuthorizationTable)  # noqa: S101 - narrows the lazily imported type
    auth = table.get(args.number)
    if auth is None:
        return _error(f"no authorization {args.number} on file in {topic}")
    if auth.revoked:
        # An old record's free-text reason is not printed: it may hold anything.
        was = (
            auth.revoked_reason if RevocationReason.parse(auth.revoked_reason or "") else "a free-text reason"
        )
        echo(f"{printable(args.number)}: already revoked at {auth.revoked_at} ({was}); nothing written")
        return 0
    key, value = encode_authorization(revoked(auth, datetime.now(UTC), reason))
    producer = new_producer(settings, Role.AUTHORIZATIONS, enable_idempotence=True, acks="all")
    try:
        partitions = sorted(producer.partitions_for(topic))
        partition = int(args.number) % len(partitions) if args.number.isdigit() else 0
        producer.send(topic, key=key, value=value, partition=partition).get(timeout=30)
        producer.flush()
    finally:
        producer.close()
    echo(f"{printable(args.number)}: revoked ({reason.value})")
    return 0


def _seed_demo_request(_args: argparse.Namespace, settings: Settings) -> int:
    """Produce one approvable PA request (synthetic member SYNTHREQ0001, starting today) to its topic."""
    from worker.contracts.pa_request import encode_pa_request  # noqa: PLC0415
    from worker.kafka.clients import Role, new_producer  # noqa: PLC0415
    from worker.samples import DEMO_REQUEST_ID, demo_request  # noqa: PLC0415

    if settings.pa_requests_topic is None:
        return _error("CLAIMS_PA_REQUESTS_TOPIC is not set")
    producer = new_producer(settings, Role.SEEDER, acks="all")
    try:
        value = encode_pa_request(demo_request())
        producer.send(settings.pa_requests_topic, key=DEMO_REQUEST_ID.encode(), value=value)
        producer.flush()
    finally:
        producer.close()
    echo(f"produced PA request {DEMO_REQUEST_ID} to {settings.pa_requests_topic}")
    return 0


def _decisions(_args: argparse.Namespace, settings: Settings) -> int:
    """Print every committed answer on CLAIMS_PA_DECISIONS_TOPIC, one JSON line each."""
    from worker.kafka.reads import read_topic  # noqa: PLC0415

    if settings.pa_decisions_topic is None:
        return _error("CLAIMS_PA_DECISIONS_TOPIC is not set")
    for record in read_topic(settings, settings.pa_decisions_topic, timeout_s=30):
        echo(printable(record.value.decode("utf-8", "replace")))  # one escaped line per answer
    return 0


def _seed_demo_fill(_args: argparse.Namespace, settings: Settings) -> int:
    """Produce fills, without diagnoses, served today (``samples.demo_fills``).

    One for the member of sample ``approve-codes``; with CLAIMS_PA_REQUESTS_TOPIC set, one for the demo
    request's member.
    """
    from worker.contracts.codec import Codec  # noqa: PLC0415
    from worker.kafka.clients import Role, new_producer  # noqa: PLC0415
    from worker.samples import demo_fills  # noqa: PLC0415

    fills = demo_fills(request_member=settings.pa_requests_topic is not None)
    codec = Codec()
    producer = new_producer(settings, Role.SEEDER, acks="all")
    try:
        for claim in fills:
            producer.send(settings.claims_topic, key=claim.claim_id.encode(), value=codec.encode_claim(claim))
        producer.flush()
    finally:
        producer.close()
    for claim in fills:
        echo(f"produced fill {claim.claim_id} (date of service {claim.date_of_service}, no diagnoses)")
    return 0


def _serve_requests(_args: argparse.Namespace, settings: Settings) -> int:
    """Serve PA requests until SIGTERM/SIGINT (or idle past CLAIMS_EXIT_WHEN_IDLE_S)."""
    import signal  # noqa: PLC0415
    import threading  # noqa: PLC0415

    from worker.kafka.access import request_needs, require_access  # noqa: PLC0415
    from worker.ops.logs import configure_logging, get_logger, log_startup_warnings  # noqa: PLC0415
    from worker.runtime.request_worker import serve_requests  # noqa: PLC0415

    # A missing right (READ on the requests or PA-decisions topic, WRITE on either output, the group):
    # exit 5 naming it, before a record is consumed, as `run` does (docs/security.md).
    require_access(settings, request_needs(settings))
    configure_logging(settings.log_format.value, settings.log_level)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    log = get_logger("claims_worker.pa_requests")
    log_startup_warnings(settings, log)
    return serve_requests(
        settings,
        stop,
        log,
        report=lambda line: echo(f"error: {line}", file=sys.stderr),
    )
