"""The process exit codes: what each one means, and the ``--help`` epilog that lists a command's own.

Every sub-command's epilog is built by ``exit_epilog``, so each one reads ``exit codes: 0 ...; 2 ...``
and ends with the closed-pipe code, which ``main`` gives every command but ``run`` (docs/operations.md,
"Exit codes by command"; ``tests/unit/test_exit_codes.py`` checks the two agree).
"""

from __future__ import annotations

from worker.errors import ExitCode

__all__ = ["EXIT_CODES", "exit_epilog"]

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
        (
            "Kafka or the schema registry unreachable past CLAIMS_STARTUP_RETRIES / CLAIMS_OUTAGE_LIMIT_S"
            " (an operator command: no broker answer within CLAIMS_ADMIN_TIMEOUT_S)"
        ),
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
    (
        ExitCode.INTERRUPTED,
        "replay stopped by SIGINT/SIGTERM before its end; it prints the command that resumes it",
    ),
    (ExitCode.PIPE_CLOSED, "stdout was closed before the output ended (`| head`); nothing else went wrong"),
)

_PIPE = (ExitCode.PIPE_CLOSED, "stdout closed early (| head)")


def exit_epilog(*codes: tuple[int, str], note: str = "", pipe: bool = True) -> str:
    """Return a sub-command's epilog: ``exit codes: 0 done; 2 ...; 141 stdout closed early``, then ``note``.

    ``codes`` are the command's own ``(code, meaning)`` pairs in order; the closed-pipe code is added
    unless ``pipe`` is false (``run``: it logs to stderr and ends through ``os._exit`` with its own code).
    """
    listed = "; ".join(f"{int(code)} {meaning}" for code, meaning in (*codes, *([_PIPE] if pipe else [])))
    return f"exit codes: {listed}." + (f" {note}" if note else "")
