# The refresh's custom container for Dataproc Serverless (runtime 2.3: Spark 3.5). The
# runtime mounts Spark and Java into the container, so the image holds no Spark: only
# Python 3.11 with the refresh's libraries and the project (the driver and the executors
# import it from here). Build from the repository root:
#   docker build -f deploy/docker/refresh.Dockerfile -t IMAGE .
ARG BASE=python:3.11-slim-bookworm

FROM ${BASE}
# checkov:skip=CKV_DOCKER_7: BASE is a build argument whose default is a pinned tag (python:3.11-slim-bookworm)
# checkov:skip=CKV_DOCKER_2: a Spark driver/executor container, no server to probe
# Spark's launch scripts need ps (procps); tini reaps the executors' children.
# Unpinned apt packages (DL3008): the Debian 12 base fixes the release; exact versions would break on each security update.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends procps tini \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
ENV PATH=/opt/venv/bin:$PATH \
    PYSPARK_PYTHON=/opt/venv/bin/python \
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
# The batch extra brings pyspark; the runtime's own Spark must win, so it goes again.
RUN pip install --no-cache-dir --no-build-isolation -c deploy/constraints.txt ".[batch]" \
 && pip uninstall -y pyspark py4j \
 && python -c "import batch.dimsum, scipy, google.cloud.bigtable"
# Dataproc Serverless runs the container as the spark user (uid and gid 1099).
RUN groupadd -g 1099 spark \
 && useradd -u 1099 -g 1099 -d /home/spark -m spark
USER 1099:1099
