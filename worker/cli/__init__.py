"""Command line: wires settings, logs, metrics, Kafka clients and the pipeline.

It also maps failures to the process exit codes listed in ``--help``.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from worker import __version__
from worker.config.settings import Settings, load_settings
from worker.errors import ConfigError, ExitCode, NotAuthorized
from worker.kafka.failures import AccessRefused, ClientError, TransactionalIdRefused
from worker.ops.escaping import echo

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from worker.cli.run import FaultHook

__all__ = ["main"]

# The process exit codes, fixed for every command; `--help` prints them.
EXIT_CODES: tuple[tuple[ExitCode, str], ...] = (
    (ExitCode.OK, "stopped cleanly (SIGTERM/SIGINT, or idle past CLAIMS_EXIT_WHEN_IDLE_S)"),
    (
        ExitCode.BAD_SETTINGS,
        (
            "bad settings or arguments, a missing or mis-sized topic (at start, or deleted or recreated"
            " smaller while running), the brokers now another cluster, the metrics port in use"
        ),
    ),
    (
        ExitCode.FENCED,
        "fenced: another live instance owns the transactional id or the static member id (noticed idle too)",
    ),
    (
        ExitCode.UNREACHABLE,
        "Kafka or the schema registry unreachable past CLAIMS_STARTUP_RETRIES / CLAIMS_OUTAGE_LIMIT_S",
    ),
    (
        ExitCode.NOT_AUTHORIZED,
        "not authorized: authentication failed or an ACL is missing (the topic, group or id is named)",
    ),
    (ExitCode.UNSUPPORTED_VERSION, "unsupported broker version"),
    (
        ExitCode.INTERNAL,
        "unexpected internal error, a bug (one log line with its type and the record's coordinates)",
    ),
)


def _settings_help() -> str:
    lines = ["settings (environment variables):"]
    for name, field in Settings.model_fields.items():
        env = "KAFKA_BOOTSTRAP_SERVERS" if name == "bootstrap_servers" else f"CLAIMS_{name.upper()}"
        default = "" if field.default in (None, "") else f" [default: {field.default}]"
        lines.append(f"  {env:<36} {field.description}{default}")
    lines += ["", "exit codes:", *(f"  {code.value:<3} {meaning}" for code, meaning in EXIT_CODES)]
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="claims-worker",
        description="Adjudicate pharmacy claims from Kafka against the Ixempra prior-authorization policy.",
        epilog=_settings_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"claims-worker {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser(
        "run",
        help="run the worker until SIGTERM/SIGINT",
        epilog=_settings_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    for register in _feature_commands():
        register(sub)
    return parser


def _feature_commands() -> list[Callable[[argparse._SubParsersAction[argparse.ArgumentParser]], None]]:
    """Return each feature's ``register(subparsers)``; a feature's parser sets ``handler=fn(args, settings)``.

    A feature (directory, replay, authorizations, access checks...) lives in its own ``worker/cli/<name>.py``
    and adds one line here, so features do not edit each other's commands.
    """
    from worker.cli import (  # noqa: PLC0415 - each feature's module
        access,
        admin,
        authorizations,
        directory,
        feed,
        processes,
        replay,
    )

    return [
        admin.register,
        directory.register,
        access.register,
        processes.register,
        replay.register,
        authorizations.register,
        feed.register,
    ]


def _schema_resolver(settings: Settings) -> object:
    """Return the schema registry resolver for ``settings`` (see ``worker.cli.run``)."""
    from worker.cli.run import _schema_resolver as resolver  # noqa: PLC0415 - keeps `--help` fast

    return resolver(settings)


def _run(settings: Settings, fault_hook: FaultHook | None = None) -> int:
    """Run the worker until SIGTERM/SIGINT (see ``worker.cli.run``)."""
    from worker.cli.run import run  # noqa: PLC0415 - keeps `--help` and print-settings fast

    return run(settings, fault_hook=fault_hook)


def _command(args: argparse.Namespace, settings: Settings, fault_hook: FaultHook | None = None) -> int:
    """Run the sub-command named in ``args`` and return its exit code."""
    if args.command != "print-settings":
        from worker.kafka.clients import check_login  # noqa: PLC0415

        check_login(settings)  # a refused login or untrusted certificate: NotAuthorized, exit 5
    if args.command == "run":
        from worker.kafka.access import require_worker_access  # noqa: PLC0415

        require_worker_access(settings)  # a missing topic or group ACL: exit 5 before consuming
    if args.command == "run" and not getattr(args, "processes", 0):
        return _run(settings, fault_hook)  # one worker in this process (`--processes N` supervises N)
    handler = getattr(args, "handler", None)
    if handler is not None:
        return int(handler(args, settings))
    return _run(settings, fault_hook)


def main(argv: Sequence[str] | None = None, *, fault_hook: FaultHook | None = None) -> int:
    """Entry point of the ``claims-worker`` console script; returns the process exit code.

    ``fault_hook`` is for the fault harness's own entry point only (``tests/chaos/faulty_worker.py``):
    the console script never passes one, so production never reads a fault setting.
    """
    args = _parser().parse_args(argv)
    try:
        return _command(args, load_settings(), fault_hook)
    except ConfigError as exc:
        echo(f"error: {exc}", file=sys.stderr)
        return ExitCode.BAD_SETTINGS
    except NotAuthorized as exc:
        echo(f"error: {exc}", file=sys.stderr)
        return ExitCode.NOT_AUTHORIZED
    except TransactionalIdRefused:
        echo(
            "error: not authorized: WRITE on the transactional id (prefix CLAIMS_TRANSACTIONAL_ID_PREFIX-) "
            "is missing; `claims-worker check-access` lists every right",
            file=sys.stderr,
        )
        return ExitCode.NOT_AUTHORIZED
    except AccessRefused as exc:
        echo(
            f"error: not authorized ({type(exc).__name__}); `claims-worker check-access` names the right",
            file=sys.stderr,
        )
        return ExitCode.NOT_AUTHORIZED
    except ClientError as exc:
        echo(
            f"error: Kafka failed: {type(exc).__name__} (is KAFKA_BOOTSTRAP_SERVERS right?)", file=sys.stderr
        )
        return ExitCode.UNREACHABLE


if __name__ == "__main__":
    raise SystemExit(main())
