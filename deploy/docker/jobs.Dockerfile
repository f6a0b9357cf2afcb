# The small profile's image: the fold (`streamsim stream --drain-exit 60`) and the refresh
# (`streamsim refresh`, Spark local[*] in the task) as scheduled Cloud Run jobs against
# the real Pub/Sub and Bigtable. Build from the repository root:
#   docker build -f deploy/docker/jobs.Dockerfile -t IMAGE .
ARG BASE=python:3.11-slim-bookworm

FROM ${BASE}
# checkov:skip=CKV_DOCKER_7: BASE is a build argument whose default is a pinned tag (python:3.11-slim-bookworm)
# checkov:skip=CKV_DOCKER_2: Cloud Run jobs run to completion, no server to probe
# Spark needs a JVM (Debian 12's is 17, which Spark 3.5 supports) and ps.
# Unpinned apt packages (DL3008): the Debian 12 base fixes the release; exact versions would break on each security update.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends openjdk-17-jre-headless procps \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
ENV PATH=/opt/venv/bin:$PATH \
    STREAMSIM_NO_EXTENSION=1 \
    PYTHONUNBUFFERED=1
COPY deploy/constraints.txt deploy/constraints.txt
RUN python3 -m venv /opt/venv \
 && pip install --no-cache-dir -c deploy/constraints.txt setuptools wheel
COPY setup.py pyproject.toml README.md ./
COPY schemas schemas
COPY streamsim streamsim
COPY streaming streaming
COPY batch batch
COPY serving serving
RUN pip install --no-cache-dir --no-build-isolation -c deploy/constraints.txt ".[streaming,batch]" \
 && pip check
RUN useradd --system --uid 10001 --create-home streamsim
USER 10001
ENTRYPOINT ["streamsim"]
