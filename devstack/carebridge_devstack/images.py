"""The third-party images docker compose and the testcontainers path run, one place for each.

Each has a public default (what `docker-compose.yml` names, for users with a registry), a
variable that overrides it (read by `docker-compose.yml` and by ``endpoints``), and the tag of
the equivalent that ``local_images`` builds where no registry answers (ADR 0016).
``tests/test_compose.py`` checks `docker-compose.yml` against this table.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Literal

ImageName = Literal["kafka", "postgres", "python", "prometheus"]


@dataclass(frozen=True)
class ImageSpec:
    name: ImageName
    variable: str
    public: str
    local: str

    def current(self) -> str:
        """The image to run: the variable's value when set, else the public default."""
        return os.environ.get(self.variable, "").strip() or self.public


IMAGES: dict[ImageName, ImageSpec] = {
    spec.name: spec
    for spec in (
        ImageSpec("kafka", "CAREBRIDGE_KAFKA_IMAGE", "apache/kafka:4.1.1", "carebridge-local/kafka:4.1.1"),
        ImageSpec("postgres", "CAREBRIDGE_POSTGRES_IMAGE", "postgres:15", "carebridge-local/postgres:15"),
        ImageSpec("python", "CAREBRIDGE_PYTHON_IMAGE", "python:3.11-slim", "carebridge-local/python:3.11"),
        ImageSpec(
            "prometheus", "CAREBRIDGE_PROMETHEUS_IMAGE", "prom/prometheus:v3.5.0",
            "carebridge-local/prometheus:v3.5.0",
        ),
    )
}  # fmt: skip

# The Debian base every local image starts from: debootstrap, then `docker import`.
DEBIAN_BASE = "carebridge-local/debian:bookworm"
