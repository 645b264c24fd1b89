"""The docs and deploy files say what the code does: variables, defaults, ports, commands and make targets.

Each test reads README.md and docs/*.md (and, for ports, the deploy files) and checks what it finds
against the code: the settings model, the argparse tree of ``claims-worker`` and the Makefile. A test-only
variable (one read by tests/ or deploy/ but unknown to the settings) appears in none of them, nor in any
``--help``.
"""

from __future__ import annotations

import argparse
import ast
import re
from pathlib import Path

import yaml

from worker.cli import _parser
from worker.config.settings import Settings, known_env_names

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
DEPLOY_FILES = [
    ROOT / "deploy" / "k8s" / "statefulset.yaml",
    ROOT / "deploy" / "compose" / "docker-compose.yaml",
    ROOT / "deploy" / "compose" / "local-demo.yaml",
    ROOT / "deploy" / "prometheus" / "prometheus.yml",
    ROOT / "Dockerfile",
    ROOT / "Makefile",
]
_VARIABLE = re.compile(r"\b((?:CLAIMS|KAFKA)_[A-Z0-9_]*[A-Z0-9])(_?\*)?")
# Named in the docs on purpose though the worker does not read them, each with the reason.
NOT_SETTINGS = {
    "CLAIMS_DEDUPE_WINDOW": "README's example of a misspelt variable and the hint it gets",
}


def _field_env(name: str) -> str:
    return "KAFKA_BOOTSTRAP_SERVERS" if name == "bootstrap_servers" else f"CLAIMS_{name.upper()}"


def _code_spans(text: str) -> list[str]:
    """Inline code and fenced blocks: where the docs quote commands."""
    return re.findall(r"```[a-z]*\n(.*?)```", text, re.DOTALL) + re.findall(r"`([^`\n]+)`", text)


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _all_parsers(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    return [parser, *(p for sub in _subcommands(parser).values() for p in _all_parsers(sub))]


def test_every_variable_the_docs_name_is_one_the_worker_reads():
    """Each CLAIMS_*/KAFKA_* name (or `PREFIX_*` family) in README and docs/ is a setting, a secret file or the secrets folder."""
    known = known_env_names()
    unknown = set()
    for path in DOCS:
        for name, star in _VARIABLE.findall(path.read_text(encoding="utf-8")):
            ok = any(k.startswith(name) for k in known) if star else name in known
            if not ok and name not in NOT_SETTINGS:
                unknown.add(f"{path.relative_to(ROOT)}: {name}{star}")
    assert unknown == set()


def _default_rows(path: Path) -> list[tuple[list[str], list[str]]]:
    """(variables, defaults) of each row in a Markdown table whose header has a `default` column."""
    rows, column = [], None
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.startswith("|"):
            column = None
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if column is None:
            column = next((i for i, c in enumerate(cells) if c.lower() == "default"), -1)
            continue
        if column < 1 or set(cells[0]) <= set("-: "):
            continue
        names = [n for n in re.findall(r"`([A-Z0-9_]+)`", cells[0]) if n.startswith(("CLAIMS_", "KAFKA_"))]
        if names:
            rows.append((names, [d.strip().strip("`") for d in cells[column].split(",")]))
    return rows


def _same(documented: str, default: object) -> bool:
    value = getattr(default, "value", default)
    if documented in {"—", "-", ""}:
        return value in (None, "")
    if isinstance(value, bool):
        return documented.lower() == str(value).lower()
    if isinstance(value, int | float):
        try:
            return float(documented.replace("_", "").replace(",", "")) == float(value)
        except ValueError:
            return False
    return documented == str(value)


def test_documented_defaults_are_the_settings_defaults():
    """Every `default` column in README and docs/ states the settings model's default for its variables."""
    defaults = {_field_env(name): field.default for name, field in Settings.model_fields.items()}
    checked, wrong = 0, []
    for path in DOCS:
        for names, documented in _default_rows(path):
            values = documented * len(names) if len(documented) == 1 else documented
            if len(values) != len(names):
                wrong.append(f"{path.name}: {names} has {len(documented)} defaults")
                continue
            for name, value in zip(names, values, strict=True):
                if name in defaults:
                    checked += 1
                    if not _same(value, defaults[name]):
                        wrong.append(f"{path.name}: {name} documented {value!r}, code {defaults[name]!r}")
    assert checked >= 20, "the README settings table was not found"
    assert wrong == []


def test_the_metrics_port_is_one_number_everywhere():
    """The settings default, the StatefulSet, the compose worker, prometheus.yml, the Dockerfile and README agree."""
    port = Settings.model_fields["metrics_port"].default
    k8s = {d["kind"]: d for d in yaml.safe_load_all((ROOT / "deploy/k8s/statefulset.yaml").read_text()) if d}
    (container,) = k8s["StatefulSet"]["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    sts = k8s["StatefulSet"]["spec"]["template"]["metadata"]["annotations"]
    compose = yaml.safe_load((ROOT / "deploy/compose/docker-compose.yaml").read_text())["services"]["worker"]
    scrape = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())["scrape_configs"]
    (job,) = [j for j in scrape if j["job_name"] == "claims-worker"]
    targets = [t for group in job["static_configs"] for t in group["targets"]]
    found = {
        "StatefulSet CLAIMS_METRICS_PORT": int(env["CLAIMS_METRICS_PORT"]),
        "StatefulSet prometheus.io/port": int(sts["prometheus.io/port"]),
        "Service port": k8s["Service"]["spec"]["ports"][0]["port"],
        "compose CLAIMS_METRICS_PORT": int(compose["environment"]["CLAIMS_METRICS_PORT"]),
        "compose first published port": int(compose["ports"][0].split(":")[-1].split("-")[0]),
        "prometheus.yml target": int(targets[0].rsplit(":", 1)[1]),
        "Dockerfile EXPOSE": int(
            re.search(r"^EXPOSE (\d+)", (ROOT / "Dockerfile").read_text(), re.MULTILINE).group(1)
        ),
    }
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    found |= {
        f"README 'port N' #{i}": int(n) for i, n in enumerate(re.findall(r"\bport (\d{2,5})\b", readme))
    }
    assert {where: n for where, n in found.items() if n != port} == {}
    assert "prometheus.yml target" in found


_COMMAND_START = re.compile(r"\s*(\$\s*)?(sudo\s+)?([A-Z_][A-Z0-9_]*=\S*\s+)*")


def _starts_a_command(prefix: str) -> bool:
    """Tell whether text before ``claims-worker`` on a line leaves it in a command's place (a prompt, env, a pipe)."""
    return bool(_COMMAND_START.fullmatch(prefix)) or prefix.rstrip().endswith(
        ("|", "&&", ";", "$(", "`", "(")
    )


def test_every_command_the_docs_quote_exists_with_its_options():
    """`claims-worker <command> [<sub-command>] [--option ...]` in README and docs/ names real commands and options."""
    root = _parser()
    quoted = re.compile(r"(?<![\w:./-])claims-worker(?![\w.-])((?: +[a-z][a-z0-9-]*)*)")
    seen, wrong = set(), []
    for path in DOCS:
        for span in _code_spans(path.read_text(encoding="utf-8")):
            for line in span.splitlines():
                for match in quoted.finditer(line):
                    if not _starts_a_command(line[: match.start()]):
                        continue  # program output that names the group or client, not a command line
                    parser, words = root, []
                    for word in match.group(1).split():
                        choices = _subcommands(parser)
                        if not choices:
                            break
                        if word not in choices:
                            wrong.append(f"{path.name}: claims-worker {' '.join([*words, word])}")
                            break
                        parser, words = choices[word], [*words, word]
                    seen.add(" ".join(words))
                    rest = re.split(r"[|#;]|&&", line[match.end(1) :])[0]
                    options = {o for a in parser._actions for o in a.option_strings}
                    wrong += [
                        f"{path.name}: claims-worker {' '.join(words)} {o}"
                        for o in re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*)", rest)
                        if o not in options
                    ]
    assert {"run", "create-topics", "show-results", "feed", "replay"} <= seen
    assert wrong == []


def test_every_make_target_the_docs_name_exists():
    """`make <target>` in README and docs/ is a target of the Makefile."""
    makefile = (ROOT / "Makefile").read_text()
    targets = set(re.findall(r"^([a-zA-Z][\w-]*):", makefile, re.MULTILINE))
    named = set()
    for path in DOCS:
        for span in _code_spans(path.read_text(encoding="utf-8")):
            named |= set(re.findall(r"(?<![\w-])make ([a-z][\w-]*)", span))
    assert {"run", "test"} <= named
    assert named - targets == set()


def _test_only_variables() -> set[str]:
    """Names that code under tests/ or deploy/ reads from the environment but the worker does not know."""
    known = known_env_names()
    found: set[str] = set()
    for folder in ("tests", "deploy"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            constants = {
                target.id: node.value.value
                for node in ast.walk(tree)
                if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant)
                for target in node.targets
                if isinstance(target, ast.Name) and isinstance(node.value.value, str)
            }
            for node in ast.walk(tree):
                if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.args):
                    continue
                if node.func.attr not in {"get", "pop", "getenv", "setdefault"}:
                    continue
                arg = node.args[0]
                name = arg.value if isinstance(arg, ast.Constant) else constants.get(getattr(arg, "id", ""))
                if isinstance(name, str) and re.fullmatch(r"CLAIMS_[A-Z0-9_]+", name) and name not in known:
                    found.add(name)
    return found


def _help_texts() -> str:
    return "\n".join(p.format_help() for p in _all_parsers(_parser()))


def test_no_test_only_variable_is_listed_where_a_user_would_set_it():
    """The fault harness's variables are in no doc, deploy file or `--help` (they are set by the harness only)."""
    secret = _test_only_variables()
    assert "CLAIMS_FAULT_ABORT_RATE" in secret, "the scan no longer finds the fault harness's variable"
    places = {str(p.relative_to(ROOT)): p.read_text(encoding="utf-8") for p in [*DOCS, *DEPLOY_FILES]}
    places["claims-worker --help (every command)"] = _help_texts()
    listed = {f"{where}: {name}" for where, text in places.items() for name in secret if name in text}
    assert listed == set()


def test_the_help_lists_every_setting():
    """`claims-worker run --help` names every setting the worker reads, so the docs' variables can be looked up."""
    text = _parser().format_help()
    missing = [name for name in (_field_env(n) for n in Settings.model_fields) if name not in text]
    assert missing == []
