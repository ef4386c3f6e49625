# syntax=docker/dockerfile:1.7
# One image, three roles (see docs/deploy-aws.md):
#   API (default):  uvicorn api.main:app --http api.protocol:BoundedHttpTools --host 0.0.0.0 --port 8000
#   consumer:       fraudflow consume --metrics-port 9100 --metrics-host 0.0.0.0
#   dashboard:      fraudflow dashboard --host 0.0.0.0 --port 8050
# Patch-pinned base, the same in both stages; add the digest (@sha256:...) where your registry policy asks.

# Build stage: the project wheel (models/ inside it) and wheels for every runtime dependency, nothing else.
FROM python:3.11.11-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md constraints.txt ./
COPY fraudflow ./fraudflow
COPY consumers ./consumers
COPY api ./api
COPY dash_app ./dash_app
COPY models ./models
# The dependencies at the versions constraints.txt locks (scripts/lock): the image installs what was tested.
RUN pip wheel --constraint constraints.txt --wheel-dir /wheels . \
    && ls /wheels/fraudflow-*.whl

# Runtime stage: no compiler, no pip cache, no local/train/dev extras, non-root.
FROM python:3.11.11-slim-bookworm AS runtime
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    FRAUDFLOW_ENV=production \
    FRAUDFLOW_LOG_FORMAT=json \
    FRAUDFLOW_DATA_DIR=/tmp/fraudflow
# libgomp1: the OpenMP runtime LightGBM's wheel links against (the reasons' TreeSHAP). The base image is
# patch-pinned, so its bookworm release decides the package's version.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgomp1 \
    && rm -rf /var/lib/apt/lists/*
RUN groupadd --system --gid 10001 fraudflow \
    && useradd --system --uid 10001 --gid fraudflow --no-create-home --shell /usr/sbin/nologin fraudflow
WORKDIR /app
# Offline install from the build stage's wheels only: the runtime stage never reaches an index.
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-index --find-links=/wheels /wheels/fraudflow-*.whl \
    && fraudflow version \
    && python -m pip uninstall --yes pip setuptools wheel
USER 10001:10001
EXPOSE 8000 8050 9100
# The API's /healthz by default; consumer and dashboard containers set FRAUDFLOW_HEALTHCHECK_URL.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 CMD ["fraudflow", "healthcheck"]
STOPSIGNAL SIGTERM
# Keep-alive above a load balancer's idle timeout (60 s on an ALB): it must never reuse a connection we closed.
CMD ["uvicorn", "api.main:app", "--http", "api.protocol:BoundedHttpTools", "--no-access-log", "--host", "0.0.0.0", "--port", "8000", "--no-server-header", "--timeout-graceful-shutdown", "20", "--timeout-keep-alive", "75"]
