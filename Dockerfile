# The claims-worker image that deploy/k8s/statefulset.yaml and deploy/compose/docker-compose.yaml run.
#
#   docker build -t claims-worker:0.1.0 .      (the tag is worker/__init__.py's __version__)
#
# Two stages: the first builds the worker's wheel and the wheels of its runtime dependencies; the second
# installs them into a slim Python with nothing else (no compiler, no build tools, no source tree) and
# runs as the non-root user the manifests expect (uid 10001). The root filesystem can be read-only: the
# worker writes nothing to disk (bytecode is not written; a prescriber directory index, if used, is
# mounted). Checked by tests/unit/test_deploy.py (not built there: the test machines have no Docker engine).
#
# Reproducible: both stages start from one exact Python release on one Debian release (bump BASE on purpose,
# with its digest where your registry gives one: `python:3.11.14-slim-bookworm@sha256:...`), and every
# dependency comes from requirements/runtime.txt with its sha256 hashes (`make lock` refreshes it); pip
# refuses a wheel whose hash is not in the lock, and the worker's own wheel is built without fetching anything.
ARG BASE=python:3.11.14-slim-bookworm
FROM ${BASE} AS build
WORKDIR /src
COPY requirements/runtime.txt ./requirements/
RUN pip download --no-cache-dir --require-hashes --no-deps --dest /wheels -r requirements/runtime.txt \
    && pip install --no-cache-dir --require-hashes --no-deps --no-index --find-links /wheels -r requirements/runtime.txt
COPY pyproject.toml README.md ./
COPY worker ./worker
RUN pip wheel --no-cache-dir --no-deps --no-build-isolation --wheel-dir /wheels .

FROM ${BASE}
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
RUN useradd --uid 10001 --no-create-home --shell /usr/sbin/nologin claims
COPY --from=build /wheels /wheels
COPY requirements/runtime.txt /tmp/runtime.txt
RUN pip install --no-cache-dir --require-hashes --no-deps --no-index --find-links /wheels -r /tmp/runtime.txt \
    && pip install --no-cache-dir --no-deps --no-index /wheels/claims_worker-*.whl \
    && rm -rf /wheels /tmp/runtime.txt
USER 10001
# Metrics and the /healthz and /readyz probes (CLAIMS_METRICS_PORT; `run --processes N` uses 9400..9400+N-1).
EXPOSE 9400
# Exit codes: 0 clean stop, 2 bad settings or topics, 3 fenced, 4 Kafka or registry unreachable,
# 5 not authorized, 6 unsupported broker version, 70 internal error (docs/operations.md, Exit codes).
ENTRYPOINT ["claims-worker"]
CMD ["run"]
