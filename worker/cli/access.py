"""``claims-worker check-access``: tell whether the configured principal holds every right the worker needs.

It checks the rights of every role the settings configure: ``run`` always, and ``authorizations
serve-requests`` too when CLAIMS_PA_REQUESTS_TOPIC and CLAIMS_PA_DECISIONS_TOPIC are set (with the store).
Exit 0 when every right is there, 5 when one is missing (or the login is refused), 2 when a topic
does not exist. The rights are those of docs/security.md (``worker.kafka.access.role_needs``).
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from worker.cli.exits import exit_epilog
from worker.errors import ExitCode
from worker.ops.escaping import echo

if TYPE_CHECKING:
    from worker.config.settings import Settings
    from worker.kafka.access import Finding

__all__ = ["register"]

EXIT_OK = ExitCode.OK
EXIT_NO_TOPIC = ExitCode.BAD_SETTINGS
EXIT_NOT_AUTHORIZED = ExitCode.NOT_AUTHORIZED


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``check-access`` sub-command."""
    parser = sub.add_parser(
        "check-access",
        help="report, for each topic, group and transactional id the worker needs, whether it is granted",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=exit_epilog(
            (EXIT_OK, "every right granted (or some could not be established: the lines say UNKNOWN)"),
            (EXIT_NO_TOPIC, "a topic does not exist, or bad settings"),
            (ExitCode.UNREACHABLE, "no broker answer within CLAIMS_ADMIN_TIMEOUT_S"),
            (EXIT_NOT_AUTHORIZED, "a right is missing or the login is refused"),
        ),
    )
    parser.add_argument(
        "--no-transaction-probe",
        action="store_true",
        help="skip the InitProducerId probe of the transactional-id prefix",
    )
    parser.set_defaults(handler=check_access)


def check_access(args: argparse.Namespace, settings: Settings) -> int:
    """Print one line per needed right and return the exit code (0, 2 or 5)."""
    from worker.kafka.access import (  # noqa: PLC0415 - keeps --help fast
        Finding,
        Resource,
        Verdict,
        check_topics_and_group,
        list_own_acls,
        probe_transactional_id,
        role_needs,
    )

    roles = role_needs(settings)
    who = settings.kafka_username or (
        "<client certificate subject>" if settings.kafka_ssl_certfile else "ANONYMOUS"
    )
    listed = list_own_acls(settings)  # the first contact: no broker answering is exit 4 before any line
    login = "no login (PLAINTEXT)" if settings.kafka_security_protocol.value == "PLAINTEXT" else "login ok"
    echo(
        f"check-access as User:{who} at {settings.require_bootstrap()} "
        f"({settings.kafka_security_protocol.value}); {login}; roles: {', '.join(roles)}"
    )
    if listed is None:
        echo(
            "DescribeAcls: denied (it needs DESCRIBE on the cluster, which a worker should not hold); "
            "asking the broker's authorizer for this principal's operations and probing instead"
        )
    else:
        echo(
            f"DescribeAcls: {listed} ACL(s) name User:{who}; the verdicts below still come from the "
            "broker's authorizer (it applies DENY, prefix and wildcard rules)"
        )
    needs = list(dict.fromkeys(need for role in roles.values() for need in role))  # each right once
    findings: list[Finding] = check_topics_and_group(settings, needs)
    for need in needs:
        if need.resource is Resource.TRANSACTIONAL_ID:
            if args.no_transaction_probe:
                findings.append(Finding(need, Verdict.UNKNOWN, "not probed (--no-transaction-probe)"))
            else:
                findings.append(probe_transactional_id(settings, need))
    by_need = {finding.need: finding for finding in findings}
    width = max(len(need.describe()) for need in by_need)
    for role, role_rights in roles.items():
        echo(f"{role}:")
        for need in role_rights:
            finding = by_need[need]
            echo(
                f"  {finding.verdict.value:<8} {need.describe():<{width}}  to {need.why}  [{finding.method}]"
            )
    return _conclude(settings, list(by_need.values()))  # a right two roles share is counted once


def _conclude(settings: Settings, findings: list[Finding]) -> int:
    """Print what the findings add up to and return the exit code (0, 2 or 5)."""
    from worker.kafka.access import Verdict  # noqa: PLC0415 - keeps --help fast

    missing = [f for f in findings if f.verdict is Verdict.MISSING]
    absent = [f for f in findings if f.verdict is Verdict.NO_TOPIC]
    unknown = [f for f in findings if f.verdict is Verdict.UNKNOWN]
    if missing:
        echo(
            f"{len(missing)} right(s) missing (a topic this principal may not describe looks the same as "
            "one that does not exist): grant them as docs/security.md lists, then run this again"
        )
        return EXIT_NOT_AUTHORIZED
    if absent:
        echo(f"{len(absent)} topic(s) do not exist:")
        for topic in sorted({f.need.name for f in absent}):
            echo(f"  {topic}: {creating_command(settings, topic)}")
        return EXIT_NO_TOPIC
    if unknown:
        echo(f"{len(unknown)} right(s) could not be established; the others are granted")
        return EXIT_OK
    echo("every right the worker needs is granted")
    return EXIT_OK


def creating_command(settings: Settings, topic: str) -> str:
    """Return the command that creates ``topic``: each feature topic has its own, not ``create-topics``.

    ``create-topics`` makes only the claims, results and dead-letter topics; the authorization store is
    compacted (``authorizations create-topic``) and the directory's updates topic is created, compacted,
    by its first ``directory publish``.
    """
    if topic == settings.authorizations_topic:
        return "claims-worker authorizations create-topic"
    if topic == settings.directory_updates_topic:
        return "claims-worker directory publish NPPES_FILE (creates it, compacted)"
    return "claims-worker create-topics"
