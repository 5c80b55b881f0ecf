"""The README's settings table is generated from the code; it must not drift."""

from __future__ import annotations

import re
from pathlib import Path

from carebridge_ops.settings_doc import markdown_table

README = Path(__file__).resolve().parent.parent / "README.md"


def test_readme_settings_table_matches_the_settings_classes() -> None:
    text = README.read_text()
    match = re.search(
        r"<!-- settings-table:start -->\n(.*?)<!-- settings-table:end -->", text, re.DOTALL
    )
    assert match, "README lost its settings-table markers"
    assert match.group(1) == markdown_table(), (
        "README settings table is stale: run `make docs` and commit README.md"
    )
