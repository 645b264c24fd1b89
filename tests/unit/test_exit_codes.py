"""Honest exits: every command documents its codes, a wrong address fails fast, a closed pipe is quiet."""

from __future__ import annotations

import argparse
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from worker.cli import _parser
from worker.cli.access import creating_command
from worker.cli.exits import exit_epilog
from worker.config.settings import load_settings
from worker.errors import ExitCode
from worker.kafka.clients import OPERATOR_ROLES, Role, client_config

ROOT = Path(__file__).resolve().parents[2]
_CODE = re.compile(r"(?:exit codes: |; )(\d+) ")
_ROW = re.compile(r"^\| `([a-z-]+)` \| ([0-9, ]+)", re.MULTILINE)


def _commands(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()):
    """Yield ``(command path, parser)`` for every sub-command and nested sub-command of ``parser``."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield (*path, name), child
                yield from _commands(child, (*path, name))


def _codes(epilog: str) -> list[int]:
    """The codes an ``exit_epilog`` lists, in order."""
    listed = epilog[epilog.index("exit codes: ") :].split(".", 1)[0]
    return [int(code) for code in _CODE.findall(listed)]


def _docs_table() -> dict[str, list[int]]:
    text = (ROOT / "docs" / "operations.md").read_text(encoding="utf-8")
    section = text[text.index("## Exit codes by command") :]
    section = section[: section.index("\n## ", 3)]
    return {
        name: [int(c) for c in codes.replace(" ", "").strip(",").split(",")]
        for name, codes in _ROW.findall(section)
    }


class TestDocumentedCodes:
    def test_every_command_and_sub_command_lists_its_exit_codes(self):
        """Each command's --help (nested ones too) ends with `exit codes: ...`, 0 first, 141 last (not run)."""
        commands = list(_commands(_parser()))
        assert len(commands) > 10
        for path, parser in commands:
            epilog = parser.epilog or ""
            assert "exit codes: " in epilog, path
            codes = _codes(epilog)
            assert codes[0] == ExitCode.OK, path
            assert (codes[-1] == ExitCode.PIPE_CLOSED) is (path != ("run",)), path  # run logs to stderr
            assert codes == sorted(codes), path

    def test_the_docs_table_lists_every_command_with_its_help_codes(self):
        """docs/operations.md "Exit codes by command" has one row per command, with the codes of its --help."""
        table = _docs_table()
        top = {path[0]: parser for path, parser in _commands(_parser()) if len(path) == 1}
        assert set(table) == set(top)
        for name, parser in top.items():
            assert table[name] == _codes(parser.epilog or ""), name

    def test_the_epilog_names_each_code_once_and_ends_with_the_closed_pipe(self):
        """exit_epilog writes `code meaning` pairs in order, then 141, then the note."""
        text = exit_epilog((0, "done"), (2, "bad"), note="See docs.")
        assert text == "exit codes: 0 done; 2 bad; 141 stdout closed early (| head). See docs."


class TestAdminTimeout:
    def test_operator_clients_give_up_a_first_contact_after_the_admin_timeout(self):
        """Operator roles get bootstrap_timeout_ms from CLAIMS_ADMIN_TIMEOUT_S; the live worker's keep the library's."""
        settings = load_settings({"KAFKA_BOOTSTRAP_SERVERS": "b:9092", "CLAIMS_ADMIN_TIMEOUT_S": "2.5"})
        for role in OPERATOR_ROLES:
            assert client_config(settings, role)["bootstrap_timeout_ms"] == 2500
        for role in (Role.CONSUMER, Role.PRODUCER, Role.READBACK):
            assert "bootstrap_timeout_ms" not in client_config(settings, role)
        assert load_settings({}).admin_timeout_s == 5.0

    @pytest.mark.parametrize("value", ["0", "-1", "soon"])
    def test_a_bad_admin_timeout_is_a_bad_setting(self, value):
        """CLAIMS_ADMIN_TIMEOUT_S must be a positive number of seconds (exit 2 otherwise)."""
        from worker.errors import ConfigError  # noqa: PLC0415

        with pytest.raises(ConfigError, match="CLAIMS_ADMIN_TIMEOUT_S"):
            load_settings({"CLAIMS_ADMIN_TIMEOUT_S": value})


def _closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize(
    "argv",
    [
        pytest.param(
            ["create-topics", "--replication-factor", "1", "--min-insync-replicas", "1"], id="create-topics"
        ),
        pytest.param(["show-results"], id="show-results"),
        pytest.param(["check-access"], id="check-access"),
        pytest.param(["seed-samples"], id="seed-samples"),
        pytest.param(["replay", "--from", "2026-11-30T08:00"], id="replay"),
    ],
)
def test_an_operator_command_at_a_closed_port_exits_4_naming_the_address(argv):
    """With nothing listening at the address, an operator command exits 4 with one line naming it."""
    address = f"127.0.0.1:{_closed_port()}"
    env = {"KAFKA_BOOTSTRAP_SERVERS": address, "CLAIMS_ADMIN_TIMEOUT_S": "1", "PATH": "/usr/bin:/bin"}
    proc = subprocess.run(
        [sys.executable, "-m", "worker", *argv],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == ExitCode.UNREACHABLE, proc.stderr
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, proc.stderr
    assert address in errors[0]
    assert "CLAIMS_ADMIN_TIMEOUT_S" in errors[0]
    assert proc.stdout == ""  # check-access prints its header only once a broker answered


def test_a_closed_stdout_exits_141_without_a_traceback():
    """`print-settings` into a pipe whose reader is gone ends with 141 and nothing on stderr."""
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before the command writes anything (`| head` that exited)
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "worker", "print-settings"],
            env={"PATH": "/usr/bin:/bin"},
            cwd=ROOT,
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        os.close(write_end)
    assert proc.returncode == ExitCode.PIPE_CLOSED
    assert proc.stderr == ""


def test_check_access_names_the_command_that_creates_each_topic():
    """The worker topics come from create-topics; the store and the directory's updates topic have their own."""
    settings = load_settings(
        {
            "CLAIMS_AUTHORIZATIONS_TOPIC": "store",
            "CLAIMS_MEMBER_PSEUDONYM_SECRET": "unit-test-secret-0123456789",
            "CLAIMS_DIRECTORY_UPDATES_TOPIC": "npi-updates",
        }
    )
    assert creating_command(settings, settings.claims_topic) == "claims-worker create-topics"
    assert creating_command(settings, settings.results_topic) == "claims-worker create-topics"
    assert creating_command(settings, "store") == "claims-worker authorizations create-topic"
    assert creating_command(settings, "npi-updates").startswith("claims-worker directory publish ")
    commands = {path[0] for path, _ in _commands(_parser())}
    nested = {path for path, _ in _commands(_parser())}
    assert "create-topics" in commands
    assert ("authorizations", "create-topic") in nested
    assert ("directory", "publish") in nested
