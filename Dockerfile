# syntax=docker/dockerfile:1
# ash-hpo, the production image: one image, the command picks the role.
#
#   docker build -t ash-hpo .                          (base: python:3.11-slim)
#   docker build --build-arg EXTRAS=mpi -t ash-hpo:mpi .   (extras, comma-separated: mpi,plot)
#   docker run --rm -v ash-data:/data -v "$PWD/examples:/study:ro" -p 50051:50051 ash-hpo \
#       ash-scheduler /study/iris.toml --listen 0.0.0.0:50051 --journal /data/journal.jsonl --out /data/out
#   docker run --rm ash-hpo ash-worker --scheduler HOST:50051
#   docker run --rm -v "$PWD/examples:/study:ro" -v "$PWD/out:/data/out" ash-hpo ash tune /study/iris.toml --out /data/out
#
# BASE may be any Debian-like image with python3 >= 3.11 (the venv module included) and apt:
# python:3.11-slim (python in /usr/local) or a plain Debian bookworm with python3, python3-venv
# (tools/container-check.sh builds from such a local one). Both stages use the same BASE, so the
# venv built in the first runs unchanged in the second. pip's index and CA bundle can be passed
# in: --build-arg PIP_INDEX_URL=... and --secret id=pip_cert,src=/path/to/ca-bundle.pem.
ARG BASE=python:3.11-slim

# ---------------------------------------------------------------------------------------------
FROM ${BASE} AS builder
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ARG EXTRAS=""
ARG PIP_INDEX_URL
ARG PIP_EXTRA_INDEX_URL
ARG PIP_TRUSTED_HOST
ARG PIP_DEFAULT_TIMEOUT=120
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_ROOT_USER_ACTION=ignore \
    DEBIAN_FRONTEND=noninteractive

# A C compiler with OpenMP (gcc brings libgomp) and Python's headers, each only where the base
# lacks it: python:3.11-slim has the headers of its own Python, Debian's python3 needs python3-dev.
# Versions are not pinned: they are the base's Debian release's, whichever BASE is.
# hadolint ignore=DL3008,SC2086
RUN pkgs=""; \
    command -v gcc >/dev/null || pkgs="gcc libc6-dev"; \
    python3 -c 'import os, sys, sysconfig; sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))' \
        || pkgs="$pkgs python3-dev"; \
    if [ -n "$pkgs" ]; then \
        apt-get update \
        && apt-get install -y --no-install-recommends $pkgs \
        && apt-get clean && rm -rf /var/lib/apt/lists/*; \
    fi

RUN python3 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src

# The dependencies first, read from pyproject.toml: this layer outlives edits to the code.
COPY pyproject.toml ./
RUN --mount=type=secret,id=pip_cert \
    if [ -s /run/secrets/pip_cert ]; then export PIP_CERT=/run/secrets/pip_cert; fi; \
    python -c 'import os, tomllib; p = tomllib.load(open("pyproject.toml", "rb"))["project"]; extras = [e.strip() for e in os.environ["EXTRAS"].split(",") if e.strip()]; print("\n".join(p["dependencies"] + [d for e in extras for d in p["optional-dependencies"][e]]))' \
        > /tmp/requirements.txt \
    && pip install --requirement /tmp/requirements.txt

# The wheel, with the OpenMP kernel compiled here, then installed with its extras.
COPY setup.py README.md ./
COPY src ./src
COPY scheduler ./scheduler
COPY worker ./worker
COPY native ./native
COPY proto ./proto
RUN --mount=type=secret,id=pip_cert \
    if [ -s /run/secrets/pip_cert ]; then export PIP_CERT=/run/secrets/pip_cert; fi; \
    pip wheel --no-deps --wheel-dir /wheels . \
    && echo "ash-hpo${EXTRAS:+[$EXTRAS]} @ file://$(echo /wheels/ash_hpo-*.whl)" > /tmp/ash.txt \
    && pip install --requirement /tmp/ash.txt \
    && python -c 'import ash.native._kernel, ash.scheduler.server, ash.worker.daemon' \
    && ash --version

# ---------------------------------------------------------------------------------------------
FROM ${BASE} AS runtime
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ARG DEBIAN_FRONTEND=noninteractive

# libgomp1: the OpenMP runtime of the kernel; tini: PID 1 that forwards SIGTERM to ash and reaps
# what it orphans. No compiler, no headers.
# hadolint ignore=DL3008,SC2086
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgomp1 tini \
    && apt-get clean \
    && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/log/apt /var/log/dpkg.log \
    && groupadd --system --gid 10001 ash \
    && useradd --system --uid 10001 --gid ash --home-dir /data --no-create-home \
        --shell /usr/sbin/nologin ash \
    && mkdir -p /data /study \
    && chown ash:ash /data

COPY --from=builder /opt/venv /opt/venv
COPY deploy/docker/healthcheck.py /usr/local/lib/ash/healthcheck.py
RUN printf '#!/bin/sh\nexec /opt/venv/bin/python /usr/local/lib/ash/healthcheck.py "$@"\n' \
        > /usr/local/bin/ash-healthcheck \
    && chmod 0755 /usr/local/bin/ash-healthcheck

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1

# The journal, the trace and the results live here (a named volume or a PersistentVolumeClaim).
VOLUME ["/data"]
WORKDIR /data
USER 10001:10001
EXPOSE 50051

# The scheduler: gRPC health (grpc.health.v1) on its --listen port; a worker or `ash tune`: alive.
HEALTHCHECK --interval=15s --timeout=6s --start-period=30s --retries=3 \
    CMD ["/usr/local/bin/ash-healthcheck"]

# Exec form: tini is PID 1 and passes SIGTERM to ash, which drains (scheduler) or hands back its
# jobs (worker) and exits 0. Give it time: docker stop -t 90, stop_grace_period,
# terminationGracePeriodSeconds.
ENTRYPOINT ["/usr/bin/tini", "--"]
CMD ["ash", "--help"]
