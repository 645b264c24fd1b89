"""Policy data file tests: the packaged file, bad files as ConfigError, data-only changes, and import hygiene."""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from datetime import UTC, date, datetime
from importlib import resources
from pathlib import Path

import pytest

import worker.policy
from tests.unit.claims import make_claim
from tests.unit.sources import module_name, python_sources
from worker.contracts.codes import Outcome
from worker.errors import ConfigError
from worker.policy import (
    DEFAULT_POLICY_REF,
    Facts,
    Policy,
    catalog_policy,
    catalog_refs,
    decide,
    default_policy,
    load_policy,
)
from worker.policy import decide as _decide_with

DECIDED_AT = datetime(2025, 3, 11, 8, 15, tzinfo=UTC)
PACKAGED = resources.files("worker.policies") / "IXEMPRA-PA" / "2020.09-3.json"
POLICY_PACKAGE = Path(worker.policy.__file__).parent


def _decide(claim, policy=None):
    return _decide_with(claim, Facts(), policy or default_policy(), DECIDED_AT)


def _document() -> dict:
    return json.loads(PACKAGED.read_text(encoding="utf-8"))


def _write(tmp_path: Path, document: dict | str) -> Path:
    path = tmp_path / "policy.json"
    path.write_text(document if isinstance(document, str) else json.dumps(document), encoding="utf-8")
    return path


def test_packaged_policy_identity_and_match_set():
    """The default catalog policy is IXEMPRA-PA 2020.09-3, one year, matching the two R-Pharm products and J9207."""
    policy = default_policy()
    assert isinstance(policy, Policy)
    assert (policy.policy_id, policy.version) == ("IXEMPRA-PA", "2020.09-3")
    assert policy.ref == DEFAULT_POLICY_REF
    assert dict(policy.hcpcs_codes).keys() == {"J9207"}
    assert (policy.reject_in_review, policy.reject_denied, policy.reject_prescriber_not_matched) == (
        "3W",
        "3Y",
        "56",
    )
    assert policy.source_document == "000_da38be68fa2ba257.txt"
    assert policy.approval_duration_years == 1
    assert set(policy.ndc_products) == {"700201910", "700201911"}
    assert (policy.reject_not_approved, policy.reject_missing_diagnosis) == ("75", "39")
    assert [c.criterion_id for c in policy.criteria] == ["A", "B"]
    assert policy.criterion_ids == ("A", "B")
    assert len(policy.reason_codes) == len(set(policy.reason_codes)) == 30
    assert {"METASTATIC_BY_CODES", "RECURRENCE_INFERRED_FROM_HISTORY", "PRESCRIBER_IS_SPECIALIST"} <= set(
        policy.reason_codes
    )


def test_packaged_file_documents_excluded_bms_ndcs():
    """The data file says why the unverified BMS-era NDCs are absent."""
    notes = " ".join(_document()["product"]["notes"])
    assert "00015-1910-12" in notes
    assert "unverified" in notes or "no source confirms" in notes


def test_default_policy_is_loaded_once():
    """The default policy is cached: every call returns the same object."""
    assert default_policy() is default_policy()


def test_load_policy_reads_the_packaged_file(tmp_path):
    """load_policy on a copy of the packaged file gives the same policy as the default."""
    loaded = load_policy(_write(tmp_path, _document()))
    default = default_policy()
    assert (loaded.policy_id, loaded.version, dict(loaded.ndc_products)) == (
        default.policy_id,
        default.version,
        dict(default.ndc_products),
    )
    assert _decide(make_claim(), loaded) == _decide(make_claim(), default)


def test_new_version_is_a_new_data_file(tmp_path):
    """A new version (longer approval, extra NDC) needs only a data file, and decisions name that version."""
    document = _document()
    document["version"] = "2026.01-1"
    document["approval_duration_years"] = 2
    document["product"]["ndc_products"]["70020-1999"] = "hypothetical new kit"
    policy = load_policy(_write(tmp_path, document))
    decision = _decide(make_claim(ndc="70020-1999-01", dos=date(2024, 2, 29)), policy)
    assert decision.outcome is Outcome.APPROVED
    assert decision.policy_version == "2026.01-1"
    assert decision.authorization_expiration == date(2026, 2, 28)
    assert _decide(make_claim(ndc="70020-1999-01")).outcome is Outcome.NOT_APPLICABLE


def test_specialist_name_comes_from_data(tmp_path):
    """Explanations use the data file's specialist and condition words, with the right article."""
    document = _document()
    document["criteria"][1]["specialist"] = "breast oncologist"
    policy = load_policy(_write(tmp_path, document))
    b = _decide(make_claim(taxonomy="207Q00000X"), policy).criteria[1]
    assert "consultation with a breast oncologist" in b.explanation


def _drop(path: tuple) -> object:
    def mutate(document: dict) -> None:
        target = document
        for key in path[:-1]:
            target = target[key]
        del target[path[-1]]

    return mutate


def _set(path: tuple, *, value: object) -> object:
    def mutate(document: dict) -> None:
        target = document
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value

    return mutate


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        pytest.param(_drop(("version",)), "version: Field required", id="missing-version"),
        pytest.param(_set(("policy_id",), value="ixempra pa"), "policy_id", id="policy-id-not-upper-snake"),
        pytest.param(
            _set(("product", "ndc_products"), value={"70020-19101": "x"}), "ndc_products", id="ndc-not-5-4"
        ),
        pytest.param(_set(("product", "ndc_products"), value={}), "ndc_products", id="no-ndcs"),
        pytest.param(
            _set(("criteria", 1, "specialist_taxonomies"), value={"207RX0202": "x"}),
            "specialist_taxonomies",
            id="taxonomy-wrong-shape",
        ),
        pytest.param(
            _set(("criteria", 1, "named_other_taxonomies", "207RX0202X"), value="x"),
            "both as specialist and as other",
            id="taxonomy-both-specialist-and-other",
        ),
        pytest.param(
            _set(("criteria", 0, "kind"), value="SOMETHING_ELSE"), "criteria.0", id="unknown-criterion-kind"
        ),
        pytest.param(_set(("criteria", 1, "id"), value="A"), "unique", id="duplicate-criterion-ids"),
        pytest.param(
            _set(("criteria", 0, "codes", "primary_prefixes"), value=["C5 0"]),
            "primary_prefixes",
            id="bad-prefix",
        ),
        pytest.param(
            _set(("approval_duration_years",), value=0), "approval_duration_years", id="zero-year-approval"
        ),
        pytest.param(
            _set(("reject_codes", "not_approved"), value="075"), "not_approved", id="reject-code-not-2-chars"
        ),
        pytest.param(
            _set(("surprise",), value=True), "surprise: Extra inputs are not permitted", id="unknown-field"
        ),
    ],
)
def test_bad_policy_file_raises_config_error(tmp_path, mutate, message):
    """A policy file that breaks a rule raises ConfigError naming the file, the field path and the rule."""
    document = _document()
    mutate(document)
    path = _write(tmp_path, document)
    with pytest.raises(ConfigError, match=re.escape(message)) as caught:
        load_policy(path)
    assert str(path) in str(caught.value)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        pytest.param('{"policy_id": ', "is not valid JSON: line 1", id="truncated-json"),
        pytest.param("[]", "is invalid", id="json-not-an-object"),
    ],
)
def test_unparsable_policy_file_raises_config_error(tmp_path, content, message):
    """A file that is not a JSON policy object raises ConfigError with the position or the reason."""
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_policy(_write(tmp_path, content))


def test_catalog_lists_every_version_and_names_them():
    """The catalog holds policies/<id>/<version>.json; each entry loads and names its own id and version."""
    refs = catalog_refs()
    assert {"IXEMPRA-PA/2020.09-1", "IXEMPRA-PA/2020.09-2"} <= set(refs)
    for ref in refs:
        assert catalog_policy(ref).ref == ref
    assert catalog_policy(DEFAULT_POLICY_REF) is default_policy()


@pytest.mark.parametrize(
    ("ref", "message"),
    [
        pytest.param(
            "IXEMPRA-PA/1999.01-1", "not in the catalog (known: IXEMPRA-PA/2020.09-1", id="unknown-version"
        ),
        pytest.param("NOPE/1", "not in the catalog", id="unknown-policy-id"),
        pytest.param("ixempra", "must be <POLICY-ID>/<version>", id="malformed-reference"),
        pytest.param("IXEMPRA-PA/../x", "must be <POLICY-ID>/<version>", id="path-traversal-refused"),
    ],
)
def test_catalog_reference_errors_are_config_errors(ref, message):
    """A bad CLAIMS_POLICY reference raises ConfigError naming the catalog's entries (the CLI exits 2)."""
    with pytest.raises(ConfigError, match=re.escape(message)):
        catalog_policy(ref)


def test_decide_requires_the_policy_explicitly():
    """decide has no default policy: the caller names the policy it decides under."""
    with pytest.raises(TypeError):
        decide(make_claim(), Facts(), DECIDED_AT)  # type: ignore[call-arg]


def test_missing_policy_file_raises_config_error(tmp_path):
    """A path that does not exist raises ConfigError, not OSError."""
    with pytest.raises(ConfigError, match="cannot be read: FileNotFoundError"):
        load_policy(tmp_path / "absent.json")


def test_importing_policy_loads_no_infrastructure():
    """Importing every module of worker.policy, nested ones too, in a fresh interpreter loads no kafka, fastavro, structlog or prometheus."""
    modules = [module_name(path) for path in python_sources(POLICY_PACKAGE)]
    assert "worker.policy.criteria.stage" in modules
    script = (
        "import importlib, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        "import worker.policy\n"
        "worker.policy.default_policy()\n"
        "banned = {'kafka', 'fastavro', 'structlog', 'prometheus_client'}\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in banned))\n"
    )
    run = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    )
    assert run.stdout.strip() == "[]"


def test_policy_package_reads_no_clock():
    """No module of worker.policy imports time or calls a clock: time comes in as the decided_at argument."""
    clocks = {"now", "today", "utcnow", "time", "time_ns", "monotonic", "perf_counter", "process_time"}
    for path in python_sources(POLICY_PACKAGE):
        source = path.relative_to(POLICY_PACKAGE)
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                assert all(alias.name != "time" for alias in node.names), source
            if isinstance(node, ast.ImportFrom):
                assert node.module != "time", source
            if isinstance(node, ast.Call):
                called = (
                    node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
                )
                assert called not in clocks, f"{source}:{node.lineno} calls {called}()"


def test_policy_modules_declare_all_and_docstring():
    """Every policy module, nested ones too, starts with a docstring and declares __all__."""
    sources = [*python_sources(POLICY_PACKAGE), Path(resources.files("worker.policies") / "__init__.py")]
    without_all = set()
    for source in sources:
        text = source.read_text(encoding="utf-8")
        assert text.startswith('"""'), source
        if "\n__all__" not in text:
            inside = source.is_relative_to(POLICY_PACKAGE)
            without_all.add(source.relative_to(POLICY_PACKAGE).as_posix() if inside else str(source))
    assert without_all == set()


def test_worker_exits_2_naming_the_catalog_for_an_unknown_policy():
    """`run` with CLAIMS_POLICY naming no catalog entry prints one line listing the catalog and exits 2."""
    env = {
        "PATH": "/usr/bin:/bin",
        "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9",
        "CLAIMS_POLICY": "IXEMPRA-PA/1999.01-1",
        "CLAIMS_LOG_FORMAT": "json",
    }
    run = subprocess.run(
        [sys.executable, "-m", "worker", "run"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=Path(worker.policy.__file__).parents[2],
    )
    assert run.returncode == 2
    assert "IXEMPRA-PA/1999.01-1 is not in the catalog (known: IXEMPRA-PA/2020.09-1" in run.stderr
