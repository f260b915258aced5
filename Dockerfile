# syntax=docker/dockerfile:1.7
# Argosy images. Each target is self-contained: build one with `docker build --target <name> .`
#   serve     the slim model server (argosy[serve] only), run by the KServe ServingRuntime
#   pipeline  every pipeline stage and the Argo task runner (GPU-capable XGBoost)
#
# Base images are named by tag here, for local builds. The release workflow (images.yaml) resolves
# each tag to its digest once, builds with --build-arg PYTHON_IMAGE=<name>@sha256:<digest> and
# UV_IMAGE=<name>@sha256:<digest>, and records both digests in the image labels and the pin commit.
# Python requirements are installed from `uv export` with their hashes (--require-hashes): a
# package whose bytes differ from uv.lock's is refused.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm
ARG UV_IMAGE=ghcr.io/astral-sh/uv:0.13.8

# ---------------------------------------------------------------------------------------------
# serve: Open Inference Protocol (V2) server on ONNX Runtime.
# Non-root, nothing written to the root filesystem at run time (bytecode compiled at build time,
# PYTHONDONTWRITEBYTECODE), so `readOnlyRootFilesystem: true` works. The model directory is
# mounted at /mnt/models, where KServe's storage initializer puts it; the prediction log goes to a
# mounted volume or an fsspec URI (ARGOSY_PREDICTION_LOG).
# ---------------------------------------------------------------------------------------------
FROM ${UV_IMAGE} AS serve-uv

FROM ${PYTHON_IMAGE} AS serve-build
COPY --from=serve-uv /uv /usr/local/bin/uv
ENV UV_PYTHON_DOWNLOADS=never UV_LINK_MODE=copy UV_COMPILE_BYTECODE=1
WORKDIR /build
COPY pyproject.toml uv.lock README.md ./
# Only what `argosy[serve]` needs, at the versions uv.lock pins.
RUN uv export --frozen --no-dev --extra serve --no-emit-project -o requirements.txt \
 && uv venv --python /usr/local/bin/python3 /opt/argosy \
 && uv pip install --python /opt/argosy/bin/python --require-hashes -r requirements.txt
COPY src ./src
RUN uv pip install --python /opt/argosy/bin/python --no-deps . \
 && /opt/argosy/bin/python -c "import argosy.serving.server, argosy.serving.predlog"

FROM ${PYTHON_IMAGE} AS serve
RUN groupadd --gid 10001 argosy \
 && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin argosy
COPY --from=serve-build /opt/argosy /opt/argosy
ENV PATH=/opt/argosy/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    ARGOSY_HOST=0.0.0.0 \
    ARGOSY_PORT=8080 \
    ARGOSY_MODEL_DIR=/mnt/models
USER 10001:10001
EXPOSE 8080
HEALTHCHECK NONE
ENTRYPOINT ["python", "-m", "argosy.serving"]

# ---------------------------------------------------------------------------------------------
# pipeline: every stage of dvc.yaml plus the Argo task runner (`argosy workflows stage ...`).
# The PyPI XGBoost wheel is built with CUDA, so `train.device: auto` uses the GPU wherever the
# NVIDIA container runtime exposes one (the GPU node pool) and the CPU elsewhere. Runs as uid
# 1000, the user the generated WorkflowTemplates set; writes only to mounted volumes (/tmp, the
# checkout), so `readOnlyRootFilesystem: true` works.
# ---------------------------------------------------------------------------------------------
FROM ${UV_IMAGE} AS pipeline-uv

FROM ${PYTHON_IMAGE} AS pipeline-build
COPY --from=pipeline-uv /uv /usr/local/bin/uv
ENV UV_PYTHON_DOWNLOADS=never UV_LINK_MODE=copy UV_COMPILE_BYTECODE=1
WORKDIR /build
COPY pyproject.toml uv.lock README.md ./
RUN uv export --frozen --no-dev --all-extras --no-emit-project -o requirements.txt \
 && uv venv --python /usr/local/bin/python3 /opt/argosy \
 && uv pip install --python /opt/argosy/bin/python --require-hashes -r requirements.txt
COPY src ./src
RUN uv pip install --python /opt/argosy/bin/python --no-deps . \
 && /opt/argosy/bin/argosy --help >/dev/null \
 && /opt/argosy/bin/dvc version >/dev/null

FROM ${PYTHON_IMAGE} AS pipeline
# git: DVC needs the checkout's repository; ca-certificates: S3, MLflow and GitHub over TLS.
RUN apt-get update \
 && apt-get install --yes --no-install-recommends git ca-certificates libgomp1 \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --gid 1000 argosy \
 && useradd --uid 1000 --gid 1000 --home-dir /tmp --no-create-home --shell /usr/sbin/nologin argosy
COPY --from=pipeline-build /opt/argosy /opt/argosy
ENV PATH=/opt/argosy/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    DVC_NO_ANALYTICS=1 \
    DVC_SITE_CACHE_DIR=/tmp/dvc \
    NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility
USER 1000:1000
WORKDIR /workspace
HEALTHCHECK NONE
ENTRYPOINT ["argosy"]
