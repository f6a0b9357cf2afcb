# The fold's Flex Template image: the template launcher and the Dataflow workers in one
# image, with the project installed (so no --setup_file is staged and workers start with
# everything they import). Build from the repository root:
#   docker build -f deploy/docker/dataflow.Dockerfile -t IMAGE .
# BEAM_SDK's version must be apache-beam's in deploy/constraints.txt (a test checks it).
ARG BASE=python:3.11-slim-bookworm
ARG BEAM_SDK=apache/beam_python3.11_sdk:2.78.0
ARG LAUNCHER=gcr.io/dataflow-templates-base/python311-template-launcher-base:20230622_RC00

FROM ${BEAM_SDK} AS beam
FROM ${LAUNCHER} AS launcher

FROM ${BASE}
# checkov:skip=CKV_DOCKER_7: BASE is a build argument whose default is a pinned tag (python:3.11-slim-bookworm)
# checkov:skip=CKV_DOCKER_2: a batch container (launcher and SDK harness), no server to probe
# checkov:skip=CKV_DOCKER_3: the Beam SDK harness boot runs as the image's default user, as Dataflow expects
COPY --from=beam /opt/apache/beam /opt/apache/beam
COPY --from=launcher /opt/google/dataflow/python_template_launcher /opt/google/dataflow/python_template_launcher
WORKDIR /template
# Workers fold and never score: no compiler, no kernel.
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
COPY deploy/dataflow/main.py main.py
RUN pip install --no-cache-dir --no-build-isolation -c deploy/constraints.txt ".[streaming]" \
 && pip check
ENV FLEX_TEMPLATE_PYTHON_PY_FILE=/template/main.py
ENTRYPOINT ["/opt/apache/beam/boot"]
