"""The committed catalog files (docs/catalog): generate, write, and find the stale ones."""

from __future__ import annotations

import json
from pathlib import Path

from carebridge_ops.catalog import CATALOG_DIR, DOCUMENT_FILE, PAGE_FILE
from carebridge_ops.catalog.asyncapi import Document, catalog_document
from carebridge_ops.catalog.page import render_page
from carebridge_ops.catalog.sources import all_service_events


def build_document() -> Document:
    return catalog_document(all_service_events())


def expected_files(document: Document | None = None) -> dict[str, str]:
    """File name -> content of every generated catalog file (the screenshot aside)."""
    document = document if document is not None else build_document()
    return {
        DOCUMENT_FILE: json.dumps(document, indent=2, ensure_ascii=False) + "\n",
        PAGE_FILE: render_page(document),
    }


def write_catalog(directory: Path = CATALOG_DIR) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, content in expected_files().items():
        path = directory / name
        path.write_text(content, encoding="utf-8")
        written.append(path)
    return written


def stale_files(directory: Path = CATALOG_DIR) -> list[str]:
    """Names of the generated files that are missing or differ from what the code gives."""
    stale = []
    for name, content in expected_files().items():
        path = directory / name
        if not path.is_file() or path.read_text(encoding="utf-8") != content:
            stale.append(name)
    return stale
