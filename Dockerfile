# One image for every carebridge service; SERVICE picks which package is installed.
# PYTHON_IMAGE: the public python:3.11-slim by default; `make compose-test` passes the
# Debian-built carebridge-local/python:3.11 where no registry answers (ADR 0016).
ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS build
ENV UV_PYTHON_DOWNLOADS=never \
    UV_PYTHON=python3.11 \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy
# A CA bundle for TLS-intercepting proxies (containers/build-ca/README.md): read by pip and uv in
# this stage only; the image that ships copies /app and nothing else from here.
COPY containers/build-ca/ /tmp/build-ca/
RUN ca=/tmp/build-ca/ca-bundle.pem; [ -s "$ca" ] || ca=""; \
    python -m venv /opt/uv \
    && /opt/uv/bin/pip install --no-cache-dir --disable-pip-version-check ${ca:+--cert "$ca"} uv==0.13.9
WORKDIR /app
# Third-party packages of every service first: one layer, shared by all five images, that only
# uv.lock and the manifests invalidate. SERVICE is declared after it (the classic builder keys
# every later RUN on the build arguments in scope).
COPY pyproject.toml uv.lock ./
COPY contracts/pyproject.toml contracts/
COPY shared/pyproject.toml shared/
COPY devstack/pyproject.toml devstack/
COPY ops/pyproject.toml ops/
COPY services/intake/pyproject.toml services/intake/
COPY services/booking/pyproject.toml services/booking/
COPY services/referral/pyproject.toml services/referral/
COPY services/notification/pyproject.toml services/notification/
RUN ca=/tmp/build-ca/ca-bundle.pem; [ -s "$ca" ] && export SSL_CERT_FILE="$ca"; \
    /opt/uv/bin/uv sync --frozen --no-dev --no-install-workspace --all-packages
COPY contracts contracts
COPY shared shared
COPY devstack devstack
COPY ops ops
COPY services services
# This service's package: the exact sync drops what it does not need. (The workspace packages
# build with hatchling, which uv fetches: the CA bundle again.)
ARG SERVICE
RUN ca=/tmp/build-ca/ca-bundle.pem; [ -s "$ca" ] && export SSL_CERT_FILE="$ca"; \
    /opt/uv/bin/uv sync --frozen --no-dev --package "carebridge-${SERVICE}"

FROM ${PYTHON_IMAGE}
ENV PYTHONUNBUFFERED=1 \
    PATH=/app/.venv/bin:$PATH
COPY --from=build /app /app
WORKDIR /app
RUN useradd --system --no-create-home carebridge
USER carebridge
