# syntax=docker/dockerfile:1
# Vantage: one image for every service (search, inference, extraction, orchestrator, worker, sandbox).
#
#   docker build -t vantage .
#   docker run --rm vantage serve search           # the ENTRYPOINT is the `vantage` CLI
#
# Two stages: the builder turns the source into a wheel and installs it into a virtualenv; the runtime stage copies
# only that virtualenv onto a fresh python:3.11-slim (no compilers, no source tree, no pip cache) and runs as an
# unprivileged user.

ARG PYTHON_IMAGE=python:3.11-slim

# --- builder --------------------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
# Dependencies first (their layer is reused while only our code changes), then the code, then the wheel.
COPY pyproject.toml README.md ./
COPY shared ./shared
COPY services ./services
COPY gen ./gen
RUN pip wheel --no-deps --wheel-dir /dist . \
 && pip install /dist/vantage-*.whl \
 && python -c "import shared.healthcheck, services.orchestrator.cli, vantage.search.v1.search_pb2"

# --- runtime --------------------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="vantage" \
      org.opencontainers.image.description="Territory research and AI-visibility evaluation over gRPC microservices"
# A fixed uid/gid so that mounted volumes (certificates, exports) can be granted to it explicitly.
RUN groupadd --system --gid 10001 vantage \
 && useradd --system --uid 10001 --gid vantage --home-dir /app --shell /usr/sbin/nologin vantage \
 && mkdir -p /app \
 && chown vantage:vantage /app
COPY --from=builder /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    VANTAGE_HOST=0.0.0.0 \
    VANTAGE_LOG_FORMAT=json
WORKDIR /app
USER vantage:vantage
# gRPC: orchestrator, search, inference, extraction; HTTP: sandbox; Prometheus /metrics (base + offset).
EXPOSE 50050 50051 50052 50053 8080 9100 9101 9102 9103 9104
# gRPC health of whichever Vantage service this container runs (every local Vantage port is tried); compose names
# the exact address per service, and the sandbox overrides it with an HTTP check.
HEALTHCHECK --interval=10s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-m", "shared.healthcheck", "--timeout", "3"]
ENTRYPOINT ["vantage"]
CMD ["--help"]
