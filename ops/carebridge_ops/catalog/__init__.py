"""The event catalog: an AsyncAPI document of every event, generated from the services' code
(FastStream), merged into one document and rendered as a static web page under docs/catalog."""

from __future__ import annotations

from pathlib import Path

CATALOG_DIR = Path(__file__).resolve().parents[3] / "docs" / "catalog"
DOCUMENT_FILE = "asyncapi.json"
PAGE_FILE = "index.html"
SCREENSHOT_FILE = "catalog.png"
