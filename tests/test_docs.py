"""The settings table (docs/settings.md, linked from the README) is generated from the code; it
must not drift."""

from __future__ import annotations

import re
from pathlib import Path

from carebridge_ops.settings_doc import markdown_table

SETTINGS_PAGE = Path(__file__).resolve().parent.parent / "docs" / "settings.md"


def test_settings_table_matches_the_settings_classes() -> None:
    text = SETTINGS_PAGE.read_text()
    match = re.search(
        r"<!-- settings-table:start -->\n(.*?)<!-- settings-table:end -->", text, re.DOTALL
    )
    assert match, "docs/settings.md lost its settings-table markers"
    assert match.group(1) == markdown_table(), (
        "docs/settings.md settings table is stale: run `make docs` and commit docs/settings.md"
    )
