"""The committed catalog page, opened in headless Chromium over HTTP, lists every registered
event type with its schema fields, its topic, producer and consumers."""

from __future__ import annotations

from html.parser import HTMLParser
from pathlib import Path

import pytest

from carebridge_contracts.registry import RegistryEntry, entries
from carebridge_ops.catalog import CATALOG_DIR, PAGE_FILE, browser
from carebridge_ops.catalog.page import event_anchor, topic_anchor


class Element:
    def __init__(self, tag: str, attrs: dict[str, str], parent: Element | None) -> None:
        self.tag = tag
        self.attrs = attrs
        self.parent = parent
        self.children: list[Element] = []
        self.text_parts: list[str] = []

    @property
    def text(self) -> str:
        return " ".join(
            " ".join(self.text_parts).split() + [c.text for c in self.children if c.text]
        )

    def find_all(self, tag: str) -> list[Element]:
        found = [c for c in self.children if c.tag == tag]
        for child in self.children:
            found += child.find_all(tag)
        return found


class DomTree(HTMLParser):
    VOID = {"meta", "link", "br", "img", "input", "hr", "wbr"}

    def __init__(self) -> None:
        super().__init__()
        self.root = Element("#root", {}, None)
        self.by_id: dict[str, Element] = {}
        self._open = self.root

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        element = Element(tag, {k: v or "" for k, v in attrs}, self._open)
        self._open.children.append(element)
        if "id" in element.attrs:
            self.by_id[element.attrs["id"]] = element
        if tag not in self.VOID:
            self._open = element

    def handle_endtag(self, tag: str) -> None:
        node: Element | None = self._open
        while node is not None and node.tag != tag:
            node = node.parent
        if node is not None and node.parent is not None:
            self._open = node.parent

    def handle_data(self, data: str) -> None:
        self._open.text_parts.append(data)


@pytest.fixture(scope="module")
def rendered() -> DomTree:
    with browser.serving(CATALOG_DIR) as url:
        dom = browser.dump_dom(url + PAGE_FILE)
    tree = DomTree()
    tree.feed(dom)
    return tree


def test_page_renders_in_chromium(rendered: DomTree) -> None:
    assert rendered.root.find_all("title")[0].text == "carebridge event catalog"


@pytest.mark.parametrize("entry", entries(), ids=lambda e: f"{e.event_type}.v{e.version}")
def test_every_registered_event_is_listed_with_its_schema_fields(
    rendered: DomTree, entry: RegistryEntry
) -> None:
    article = rendered.by_id.get(event_anchor(entry.event_type, entry.version))
    assert article is not None, f"{entry.event_type} v{entry.version} is not on the page"
    assert article.attrs["data-event-type"] == entry.event_type
    assert article.attrs["data-event-version"] == str(entry.version)
    assert entry.topic.value in article.text

    schema = entry.model.model_json_schema()
    required = set(schema.get("required", []))
    rows = {
        row.attrs["data-field"]: row for row in article.find_all("tr") if "data-field" in row.attrs
    }
    assert list(rows) == list(schema["properties"])
    for name, row in rows.items():
        name_cell, type_cell, required_cell, *_ = row.find_all("td")
        assert name_cell.text == name
        assert type_cell.text, f"{entry.event_type}.{name} shows no type"
        assert required_cell.text == ("required" if name in required else "optional")


def test_topics_are_linked_from_the_overview(rendered: DomTree) -> None:
    overview = rendered.by_id["overview"]
    links = {a.attrs.get("href", "") for a in overview.find_all("a")}
    for entry in entries():
        assert f"#{topic_anchor(entry.topic.value)}" in links
        assert f"#{event_anchor(entry.event_type, entry.version)}" in links
        assert topic_anchor(entry.topic.value) in rendered.by_id


def test_screenshot_is_a_png(tmp_path: Path) -> None:
    out = tmp_path / "catalog.png"
    with browser.serving(CATALOG_DIR) as url:
        browser.screenshot(url + PAGE_FILE, out, width=800, height=600)
    assert out.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
