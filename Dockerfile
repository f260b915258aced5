# syntax=docker/dockerfile:1.7
# Argosy images. Each target is self-contained: build one with `docker build --target <name> .`
#   serve     the slim model server (argosy[serve] only), run by the KServe ServingRuntime
#   pipeline  the training image (added by the pipeline's own stage)
#
# Base images are referenced by tag here; the release workflow builds with
# --build-arg PYTHON_IMAGE=python:3.11-slim-bookworm@sha256:<digest> to pin the digest.
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
RUN uv export --frozen --no-dev --extra serve --no-emit-project --no-hashes -o requirements.txt \
 && uv venv --python /usr/local/bin/python3 /opt/argosy \
 && uv pip install --python /opt/argosy/bin/python -r requirements.txt
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
