"""Command line: wires settings, logs, metrics, Kafka clients and the pipeline.

It also maps failures to the process exit codes listed in ``--help``.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import TYPE_CHECKING

from worker import __version__
from worker.cli.exits import EXIT_CODES, exit_epilog
from worker.config.settings import Settings, load_settings
from worker.errors import ConfigError, ExitCode, NotAuthorized
from worker.kafka.failures import AccessRefused, BrokerUnreachable, ClientError, TransactionalIdRefused
from worker.ops.escaping import echo

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from worker.cli.run import FaultHook

__all__ = ["EXIT_CODES", "main"]

_RUN_EXITS = exit_epilog(
    (ExitCode.OK, "stopped cleanly (SIGTERM/SIGINT, or idle past CLAIMS_EXIT_WHEN_IDLE_S)"),
    (
        ExitCode.BAD_SETTINGS,
        (
            "bad settings, a missing or mis-sized topic (at start, or deleted or recreated smaller while"
            " running), the brokers now another cluster, the metrics port in use"
        ),
    ),
    (ExitCode.FENCED, "fenced (another live instance owns the slot; noticed when idle too)"),
    (ExitCode.UNREACHABLE, "Kafka or the schema registry unreachable past the limits"),
    (ExitCode.NOT_AUTHORIZED, "not authorized"),
    (ExitCode.UNSUPPORTED_VERSION, "unsupported broker version"),
    (ExitCode.INTERNAL, "internal error (a bug; operator faults have their own codes)"),
    note="--processes N: the worst child's code.",
    pipe=False,
)


def _settings_help(exits: str | None = None) -> str:
    """Return the settings table, then ``exits`` or (``None``) the table of every exit code."""
    lines = ["settings (environment variables):"]
    for name, field in Settings.model_fields.items():
        env = "KAFKA_BOOTSTRAP_SERVERS" if name == "bootstrap_servers" else f"CLAIMS_{name.upper()}"
        default = "" if field.default in (None, "") else f" [default: {field.default}]"
        lines.append(f"  {env:<36} {field.description}{default}")
    if exits is not None:
        return "\n".join([*lines, "", exits])
    lines += ["", "exit codes:", *(f"  {code.value:<3} {meaning}" for code, meaning in EXIT_CODES)]
    lines.append("  each command's own: claims-worker COMMAND --help")
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
        epilog=_settings_help(_RUN_EXITS),
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
        explain,
        feed,
        lag,
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
        explain.register,
        lag.register,
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


def _transactional_hint(args: argparse.Namespace, settings: Settings | None) -> str:
    """Name the transactional-id right the refused command needs, with its real prefix."""
    from worker.kafka.failures import transactional_id_refused  # noqa: PLC0415

    if settings is None:
        return "WRITE on the transactional-id prefix is missing; `claims-worker check-access` checks it"
    if getattr(args, "authorizations_command", None) == "serve-requests":
        from worker.config.roles import request_settings  # noqa: PLC0415

        settings = request_settings(settings)
    return transactional_id_refused(settings)


def main(argv: Sequence[str] | None = None, *, fault_hook: FaultHook | None = None) -> int:  # noqa: PLR0911 - one return per documented failure
    """Entry point of the ``claims-worker`` console script; returns the process exit code.

    ``fault_hook`` is for the fault harness's own entry point only (``tests/chaos/faulty_worker.py``):
    the console script never passes one, so production never reads a fault setting.
    """
    args = _parser().parse_args(argv)
    settings: Settings | None = None
    try:
        settings = load_settings()
        code = _command(args, settings, fault_hook)
        sys.stdout.flush()  # a closed pipe is met here, not in the interpreter's own flush at exit
    except BrokenPipeError:
        return _pipe_closed()
    except ConfigError as exc:
        echo(f"error: {exc}", file=sys.stderr)
        return ExitCode.BAD_SETTINGS
    except NotAuthorized as exc:
        echo(f"error: {exc}", file=sys.stderr)
        return ExitCode.NOT_AUTHORIZED
    except TransactionalIdRefused:
        echo(f"error: not authorized: {_transactional_hint(args, settings)}", file=sys.stderr)
        return ExitCode.NOT_AUTHORIZED
    except AccessRefused as exc:
        echo(
            f"error: not authorized ({type(exc).__name__}); `claims-worker check-access` names the right",
            file=sys.stderr,
        )
        return ExitCode.NOT_AUTHORIZED
    except BrokerUnreachable as exc:
        echo(f"error: {exc}", file=sys.stderr)
        return ExitCode.UNREACHABLE
    except ClientError as exc:
        echo(
            f"error: Kafka failed: {type(exc).__name__} (is KAFKA_BOOTSTRAP_SERVERS right?)", file=sys.stderr
        )
        return ExitCode.UNREACHABLE
    return code


def _pipe_closed() -> int:
    """Stdout's reader went away (``| head``): end quietly with 141, as a writer killed by SIGPIPE does.

    The Python docs' "Note on SIGPIPE": stdout is pointed at /dev/null so the interpreter's flush at
    exit cannot raise a second BrokenPipeError (and print "Exception ignored ...").
    """
    try:
        fileno = sys.stdout.fileno()
    except (OSError, ValueError):  # not a real file (a test's capture): nothing left to flush
        return ExitCode.PIPE_CLOSED
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, fileno)
    os.close(devnull)
    return ExitCode.PIPE_CLOSED


if __name__ == "__main__":
    raise SystemExit(main())
