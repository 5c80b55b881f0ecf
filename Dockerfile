# One image for every carebridge service; SERVICE picks which package is installed.
FROM python:3.11-slim
ARG SERVICE
ENV UV_PYTHON_DOWNLOADS=never \
    UV_PYTHON=python3.11 \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    PYTHONUNBUFFERED=1
RUN pip install --no-cache-dir uv==0.13.9
WORKDIR /app
COPY pyproject.toml uv.lock ./
COPY contracts contracts
COPY shared shared
COPY devstack devstack
COPY services services
RUN uv sync --frozen --no-dev --package "carebridge-${SERVICE}"
ENV PATH=/app/.venv/bin:$PATH
RUN useradd --system --no-create-home carebridge
USER carebridge
