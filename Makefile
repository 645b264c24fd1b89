# claims-worker: `make run` and `make test` do all the set-up on a fresh machine.
# Tools run from the project venv as `python -m ...`; the Kafka broker runs from Maven-fetched jars.

PYTHON   ?= python3
VENV     := .venv
PY       := $(VENV)/bin/python
STAMP    := $(VENV)/.installed
KAFKA_LIBS := .cache/kafka/libs
JARS     := $(KAFKA_LIBS)/.fetched
PYTEST_ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help install broker-jars promtool broker-up broker-down run test test-unit test-integration chaos-input \
        bench bench-peers bench-window policy-transitions chaos install-bench lock lint format typecheck clean

help: ## list the targets
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  %-18s %s\n", $$1, $$2}'

# Installs come from the hashed lock files in requirements/ (make lock refreshes them): every wheel's
# hash must match, and the worker itself is installed without its dependencies and without a build
# isolation env (the locked setuptools builds it), so nothing unlocked is ever fetched.
LOCK_DEV   := requirements/dev.txt
LOCK_BENCH := requirements/bench.txt
PIP_LOCKED := $(PY) -m pip install --quiet --require-hashes --no-deps -r

$(STAMP): pyproject.toml $(LOCK_DEV)
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP_LOCKED) $(LOCK_DEV)
	PYTHONWARNINGS=ignore $(PY) -m pip install --quiet --no-deps --no-build-isolation -e .  # quiet: setuptools warns on every editable build
	@touch $@

install: $(STAMP) ## create the venv and install the worker with its dev tools from the hashed lock (idempotent)

# uv resolves for every platform (--universal) on Python 3.11 and writes each file's sha256 hashes. The
# bench set is resolved first and bounds the others, so the bench measures the versions the image ships.
UV_COMPILE := $(VENV)/bin/uv pip compile --quiet --universal --python-version 3.11 --generate-hashes \
              pyproject.toml requirements/build.in
lock: install ## refresh the hashed lock files in requirements/ from pyproject.toml (then review the diff)
	$(UV_COMPILE) $(LOCK_ARGS) --extra dev --extra bench -o $(LOCK_BENCH)
	$(UV_COMPILE) $(LOCK_ARGS) --extra dev --constraint $(LOCK_BENCH) -o $(LOCK_DEV)
	$(UV_COMPILE) $(LOCK_ARGS) --constraint $(LOCK_BENCH) -o requirements/runtime.txt

$(JARS): deploy/kafka/pom.xml
	@command -v mvn >/dev/null || { echo "error: mvn not found: install Maven (and Java 17+) to fetch the Kafka broker"; exit 1; }
	rm -rf $(KAFKA_LIBS)
	mvn -B -q -f deploy/kafka/pom.xml dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory=$(CURDIR)/$(KAFKA_LIBS)
	@touch $@

broker-jars: $(JARS) ## fetch the Apache Kafka broker jars with Maven, once

promtool: ## install promtool and prometheus (Debian package) when missing
	@bash deploy/prometheus/install-promtool.sh

broker-up: install broker-jars ## start the local single-node KRaft broker; prints its address
	@$(PY) -m deploy.kafka.broker up

broker-down: install ## stop the local broker
	@$(PY) -m deploy.kafka.broker down

run: install broker-jars ## use the broker-up broker (left running) or start and stop its own if none is configured; feed the sample claims, run the worker, show its decisions (SECURE=1: SASL_SSL, SCRAM, ACLs)
	@$(PY) -m deploy.demo.demo $(if $(SECURE),--secure)

test: install broker-jars promtool ## run every test (starts and stops its own broker unless KAFKA_BOOTSTRAP_SERVERS is set)
	$(PY) -m pytest $(PYTEST_ARGS)

test-unit: install ## run the tests that need no broker
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

test-integration: install broker-jars ## run the tests against a real broker
	$(PY) -m pytest tests/integration $(PYTEST_ARGS)

bench: install broker-jars ## print throughput and latency figures (policy, codec, end to end, directory)
	$(PY) tests/bench/bench_policy.py
	$(PY) tests/bench/bench_codec.py
	$(PY) tests/bench/bench_icd10cm.py
	$(PY) tests/bench/bench_record_path.py
	$(PY) tests/bench/bench_pipeline.py
	$(PY) tests/bench/bench_directory.py
	$(PY) tests/bench/bench_replay.py
	$(PY) tests/bench/bench_authorizations.py

BENCH_STAMP := $(VENV)/.installed-bench
$(BENCH_STAMP): $(STAMP) pyproject.toml $(LOCK_BENCH)
	$(PIP_LOCKED) $(LOCK_BENCH)
	@touch $@

install-bench: $(BENCH_STAMP) ## add the bench-only peers (Quix Streams, FastStream, confluent-kafka, py-spy)

bench-peers: install-bench broker-jars ## worker vs Quix Streams, FastStream and two passthroughs, same broker and records
	$(PY) tests/bench/bench_peers.py $(BENCH_ARGS)

bench-window: install broker-jars ## claims/s and CPU per 10k claims over 3.5 duplicate windows on one partition (a slowdown over time shows)
	$(PY) tests/bench/bench_window.py $(BENCH_ARGS)

BASELINE ?= HEAD~1
policy-transitions: install ## decide one seeded claim mix under BASELINE (a commit) and here; exit 1 on an approval gained on weaker evidence
	@rm -rf .cache/baseline && git worktree prune
	git worktree add --detach .cache/baseline $(BASELINE)
	$(PY) tests/bench/policy_transitions.py --baseline .cache/baseline $(BENCH_ARGS); status=$$?; \
	  git worktree remove --force .cache/baseline; exit $$status

chaos: install broker-jars ## fault harness (SIGKILLs, a broker kill, random aborts, poison records), then chaos-input
	$(PY) tests/chaos/run_chaos.py $(CHAOS_ARGS)
	$(MAKE) chaos-input

chaos-input: install broker-jars ## bad-input campaign: 10k malformed records of every kind among 10k valid, 2 workers; answers, bytes, RSS
	$(PY) tests/chaos/bad_input_campaign.py $(CAMPAIGN_ARGS)

lint: install ## ruff check, ruff format --check, mypy --strict, the import layers (import-linter)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy
	$(VENV)/bin/lint-imports

format: install ## apply ruff's fixes and formatting
	$(PY) -m ruff check --fix .
	$(PY) -m ruff format .

typecheck: install ## mypy --strict on worker/
	$(PY) -m mypy

clean: broker-down ## remove the venv and caches (the jar cache too)
	rm -rf $(VENV) .cache .pytest_cache .mypy_cache .ruff_cache .hypothesis
