# The serving image (Cloud Run): `streamsim serve` on port 8080, the Cython kernel built in.
# Build from the repository root (deploy/README.md, step 2):
#   docker build -f deploy/docker/serving.Dockerfile -t IMAGE .
# BASE is any Debian 12 image with Python 3.11 and its headers (python:3.11-slim-bookworm).
ARG BASE=python:3.11-slim-bookworm

FROM ${BASE} AS build
# checkov:skip=CKV_DOCKER_7: BASE is a build argument whose default is a pinned tag (python:3.11-slim-bookworm)
# Only this stage has a compiler: the kernel is built here, the venv copied out.
# Unpinned apt packages (DL3008): the Debian 12 base fixes the release; exact versions would break on each security update.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends gcc libc6-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
ENV PATH=/opt/venv/bin:$PATH
COPY deploy/constraints.txt deploy/constraints.txt
RUN python3 -m venv /opt/venv \
 && pip install --no-cache-dir -c deploy/constraints.txt Cython numpy setuptools wheel
COPY setup.py pyproject.toml README.md ./
COPY schemas schemas
COPY streamsim streamsim
COPY streaming streaming
COPY batch batch
COPY serving serving
# --no-build-isolation: the kernel builds against the pinned Cython and numpy above.
RUN pip install --no-cache-dir --no-build-isolation -c deploy/constraints.txt ".[serving]" \
 && pip check \
 && python -c "import serving._scoring"

FROM ${BASE}
RUN useradd --system --uid 10001 --no-create-home streamsim
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    STREAMSIM_SERVE_HOST=0.0.0.0 \
    STREAMSIM_SERVE_PORT=8080
USER 10001
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=3s CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=2)"]
ENTRYPOINT ["streamsim", "serve"]
