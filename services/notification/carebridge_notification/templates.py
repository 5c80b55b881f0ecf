"""Message templates: versioned plain-text files, `templates/<name>.v<version>.txt`.

A file's first line is `Subject: ...`, then a blank line, then the body; both are
`string.Template`s whose `${...}` placeholders the renderer fills in (every one must be given).
A changed wording is a new file with the next version, so what a patient was sent can be told
apart from what the next patient gets (education messages record the version they used).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from string import Template

TEMPLATE_DIR = Path(__file__).parent / "templates"
_FILE_NAME = re.compile(r"^(?P<name>[a-z0-9_]+)\.v(?P<version>[1-9][0-9]*)\.txt$")
_SUBJECT = "Subject: "


@dataclass(frozen=True)
class Rendered:
    subject: str
    body: str


@dataclass(frozen=True)
class MessageTemplate:
    name: str
    version: int
    subject: Template
    body: Template

    def render(self, values: dict[str, str]) -> Rendered:
        """Fill in the placeholders; a missing value raises KeyError."""
        return Rendered(self.subject.substitute(values), self.body.substitute(values))


def _load(path: Path, name: str, version: int) -> MessageTemplate:
    text = path.read_text(encoding="utf-8")
    first, separator, body = text.partition("\n\n")
    if not first.startswith(_SUBJECT) or not separator or "\n" in first:
        raise ValueError(f"{path.name}: must start with 'Subject: ...' and a blank line")
    return MessageTemplate(name, version, Template(first[len(_SUBJECT) :]), Template(body.strip()))


@cache
def catalogue() -> dict[str, dict[int, MessageTemplate]]:
    """Every template file, by name and version."""
    found: dict[str, dict[int, MessageTemplate]] = {}
    for path in sorted(TEMPLATE_DIR.iterdir()):
        match = _FILE_NAME.match(path.name)
        if match is None:
            raise ValueError(f"{path.name}: template files are named <name>.v<version>.txt")
        name, version = match["name"], int(match["version"])
        found.setdefault(name, {})[version] = _load(path, name, version)
    return found


def latest_version(name: str) -> int:
    try:
        return max(catalogue()[name])
    except KeyError:
        raise ValueError(f"unknown template {name!r}") from None


def template(name: str, version: int | None = None) -> MessageTemplate:
    """The template `name` at `version` (default: its latest)."""
    versions = catalogue().get(name)
    if versions is None:
        raise ValueError(f"unknown template {name!r}")
    chosen = max(versions) if version is None else version
    if chosen not in versions:
        raise ValueError(f"template {name!r} has no version {chosen}")
    return versions[chosen]
