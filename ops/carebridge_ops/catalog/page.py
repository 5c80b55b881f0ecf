"""The catalog as one self-contained HTML page, rendered from the merged AsyncAPI document.

No script and no external resource: the page works from a file, behind any static server and
without internet. Anchors: `#topic-<topic>`, `#event-<Type>-v<version>`, `#service-<name>`.
"""

from __future__ import annotations

import json
from html import escape
from typing import Any

from carebridge_ops.catalog.asyncapi import ENVELOPE_SCHEMA, Document, resolve

Schema = dict[str, Any]


def event_anchor(event_type: str, version: int) -> str:
    return f"event-{event_type}-v{version}"


def topic_anchor(topic: str) -> str:
    return f"topic-{topic}"


def service_anchor(service: str) -> str:
    return f"service-{service}"


def render_page(document: Document) -> str:
    messages: dict[str, Schema] = document["components"]["messages"]
    channels: dict[str, Schema] = document["channels"]
    info = document["info"]
    body = "\n".join(
        [
            _header(document, len(channels), len(messages)),
            '<div class="layout">',
            _toc(document),
            "<main>",
            _overview(document),
            _services(document),
            _envelope(document),
            *(_topic(document, name, channel) for name, channel in channels.items()),
            "</main>",
            "</div>",
        ]
    )
    return (
        "<!doctype html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{escape(info['title'])}</title>\n<style>{STYLE}</style>\n</head>\n"
        f"<body>\n{body}\n</body>\n</html>\n"
    )


def _header(document: Document, topics: int, events: int) -> str:
    info = document["info"]
    return (
        '<header class="top">'
        f"<h1>{escape(info['title'])}</h1>"
        f'<p class="meta">AsyncAPI {escape(document["asyncapi"])} · contracts {escape(info["version"])}'
        f" · {topics} topics · {events} event types · generated from the code by "
        '<code>make docs</code> · <a href="asyncapi.json">asyncapi.json</a></p>'
        "</header>"
    )


def _toc(document: Document) -> str:
    items = []
    for name, channel in document["channels"].items():
        events = "".join(
            f'<li><a href="#{_message_anchor(document, ref)}">{escape(_message_title(document, ref))}</a></li>'
            for ref in channel["messages"].values()
        )
        items.append(
            f'<li><a class="topic-link" href="#{escape(topic_anchor(name))}">{_breakable(name)}</a>'
            f"<ul>{events}</ul></li>"
        )
    return (
        '<nav class="toc"><a href="#overview">Overview</a> · <a href="#services">Services</a> · '
        '<a href="#envelope">Envelope</a><h2>Topics</h2>'
        f"<ul>{''.join(items)}</ul></nav>"
    )


def _message(document: Document, ref: dict[str, str]) -> Schema:
    found: Schema = resolve(document, ref["$ref"])
    return found


def _message_anchor(document: Document, ref: dict[str, str]) -> str:
    message = _message(document, ref)
    return escape(event_anchor(message["x-event-type"], message["x-event-version"]))


def _message_title(document: Document, ref: dict[str, str]) -> str:
    message = _message(document, ref)
    return f"{message['x-event-type']} v{message['x-event-version']}"


def _chips(services: list[str], empty: str) -> str:
    if not services:
        return f'<span class="none">{escape(empty)}</span>'
    return " ".join(
        f'<a class="chip svc-{escape(s)}" href="#{escape(service_anchor(s))}">{escape(s)}</a>'
        for s in services
    )


def _event_link(message: Schema) -> str:
    anchor = event_anchor(message["x-event-type"], message["x-event-version"])
    return (
        f'<a class="event-link" href="#{escape(anchor)}">{escape(message["x-event-type"])}'
        f' <span class="version">v{message["x-event-version"]}</span></a>'
    )


def _overview(document: Document) -> str:
    rows = []
    for name, channel in document["channels"].items():
        refs = list(channel["messages"].values())
        for index, ref in enumerate(refs):
            message = _message(document, ref)
            topic_cell = (
                f'<td rowspan="{len(refs)}" class="topic-cell">'
                f'<a href="#{escape(topic_anchor(name))}"><code>{escape(name)}</code></a></td>'
                if index == 0
                else ""
            )
            rows.append(
                f"<tr>{topic_cell}<td>{_event_link(message)}</td>"
                f"<td>{_inline_code(message['summary'])}</td>"
                f"<td>{_chips(message['x-producers'], 'no producer')}</td>"
                f"<td>{_chips(message['x-consumers'], 'no consumer in carebridge')}</td></tr>"
            )
    return (
        '<section id="overview"><h2>Overview</h2>'
        f'<p class="lead">{_inline_code(document["info"]["description"])}</p>'
        '<table class="overview"><thead><tr><th>Topic</th><th>Event</th><th>Meaning</th>'
        "<th>Produced by</th><th>Consumed by</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table></section>"
    )


def _services(document: Document) -> str:
    sends: dict[str, list[Schema]] = {}
    receives: dict[str, list[Schema]] = {}
    for operation in document["operations"].values():
        target = sends if operation["action"] == "send" else receives
        listed = target.setdefault(operation["x-service"], [])
        for ref in operation["messages"]:
            listed.append(_message(document, _message_ref(document, ref)))
    rows = []
    for service in dict.fromkeys([*sends, *receives]):
        publishes = " ".join(_event_link(m) for m in sends.get(service, [])) or "—"
        consumes = " ".join(_event_link(m) for m in receives.get(service, [])) or "—"
        rows.append(
            f'<tr id="{escape(service_anchor(service))}"><td>{_chips([service], "")}</td>'
            f"<td>{publishes}</td><td>{consumes}</td></tr>"
        )
    return (
        '<section id="services"><h2>Services</h2>'
        "<p>Published events come from each service's <code>PUBLISHES</code> declaration, which "
        "its outbox enforces; consumed events from the handlers it registers.</p>"
        '<table class="services"><thead><tr><th>Service</th><th>Publishes</th><th>Consumes</th>'
        f"</tr></thead><tbody>{''.join(rows)}</tbody></table></section>"
    )


def _message_ref(document: Document, channel_message_ref: dict[str, str]) -> dict[str, str]:
    """An operation points at a channel's message, which points at the component."""
    found: dict[str, str] = resolve(document, channel_message_ref["$ref"])
    return found


def _envelope(document: Document) -> str:
    schemas = document["components"]["schemas"]
    envelope = schemas[ENVELOPE_SCHEMA]
    first = next(iter(document["components"]["messages"].values()))
    headers = "".join(
        f"<tr><td><code>{escape(name)}</code></td>"
        f'<td class="type">{escape(_single_type(_without(schema, "const")))}</td>'
        f"<td>{_inline_code(str(schema.get('description', '')))}</td></tr>"
        for name, schema in first["headers"]["properties"].items()
    )
    return (
        '<section id="envelope"><h2>Envelope</h2>'
        "<p>Every Kafka message value is this JSON envelope; its <code>data</code> is the event "
        "shown under each event type below. The Kafka key is the patient id "
        "(<code>subject</code>), so a patient's events stay in order within a topic; "
        "<code>sequence</code> counts them per patient and topic, so a gap is visible.</p>"
        f"{_fields_table(envelope, schemas, caption='Envelope fields')}"
        '<table class="fields"><caption>Kafka headers</caption><thead><tr><th>Header</th>'
        f"<th>Type</th><th>Meaning</th></tr></thead><tbody>{headers}</tbody></table></section>"
    )


def _topic(document: Document, name: str, channel: Schema) -> str:
    events = "\n".join(
        _event(document, _message(document, ref)) for ref in channel["messages"].values()
    )
    return (
        f'<section class="topic" id="{escape(topic_anchor(name))}">'
        f"<h2>Topic <code>{escape(name)}</code></h2>"
        f"<p>{escape(channel['description'])}</p>"
        '<dl class="facts">'
        f"<dt>Produced by</dt><dd>{_chips(channel['x-producers'], 'no producer')}</dd>"
        f"<dt>Consumed by</dt><dd>{_chips(channel['x-consumers'], 'no consumer in carebridge')}</dd>"
        f"<dt>Dead letters</dt><dd><code>{escape(channel['x-dead-letter-topic'])}</code></dd>"
        f"</dl>{events}</section>"
    )


def _event(document: Document, message: Schema) -> str:
    schemas = document["components"]["schemas"]
    envelope = resolve(document, message["payload"]["$ref"])
    data = _resolved(envelope["properties"]["data"], schemas)
    event_type, version = message["x-event-type"], message["x-event-version"]
    description = str(data.get("description", message["summary"]))
    return (
        f'<article class="event" id="{escape(event_anchor(event_type, version))}" '
        f'data-event-type="{escape(event_type)}" data-event-version="{version}">'
        f'<h3>{escape(event_type)} <span class="version">v{version}</span></h3>'
        f'<p class="summary">{_inline_code(description)}</p>'
        '<dl class="facts">'
        f"<dt>Topic</dt><dd><code>{escape(message['x-topic'])}</code></dd>"
        f"<dt>Produced by</dt><dd>{_chips(message['x-producers'], 'no producer')}</dd>"
        f"<dt>Consumed by</dt><dd>{_chips(message['x-consumers'], 'no consumer in carebridge')}</dd>"
        f"<dt>Headers</dt><dd><code>ce-type: {escape(event_type)}</code> "
        f"<code>ce-version: {version}</code></dd>"
        "</dl>"
        f"{_fields_table(data, schemas, caption=f'data: {event_type} v{version}')}"
        "<details><summary>JSON Schema of <code>data</code></summary>"
        f"<pre>{escape(json.dumps(data, indent=2))}</pre></details>"
        "</article>"
    )


def _fields_table(schema: Schema, schemas: dict[str, Schema], *, caption: str) -> str:
    required = set(schema.get("required", []))
    rows = []
    for name, field in schema.get("properties", {}).items():
        is_required = name in required
        rows.append(
            f'<tr data-field="{escape(name)}"><td><code>{escape(name)}</code></td>'
            f'<td class="type">{escape(_type(field))}</td>'
            f'<td class="{"req" if is_required else "opt"}">'
            f"{'required' if is_required else 'optional'}</td>"
            f"<td>{_inline_code(_description(field, schemas))}</td>"
            f'<td class="constraints">{escape(_constraints(field))}</td></tr>'
        )
    return (
        f'<table class="fields"><caption>{escape(caption)}</caption><thead><tr><th>Field</th>'
        "<th>Type</th><th>Required</th><th>Description</th><th>Constraints</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def _without(schema: Schema, key: str) -> Schema:
    return {k: v for k, v in schema.items() if k != key}


def _resolved(schema: Schema, schemas: dict[str, Schema]) -> Schema:
    if "$ref" in schema:
        found: Schema = schemas[str(schema["$ref"]).rsplit("/", 1)[-1]]
        return found
    return schema


def _options(schema: Schema) -> tuple[list[Schema], bool]:
    """The non-null alternatives of a schema, and whether null is allowed."""
    alternatives = schema.get("anyOf") or schema.get("oneOf")
    if not alternatives:
        return [schema], False
    values = [a for a in alternatives if a.get("type") != "null"]
    return values, len(values) < len(alternatives)


def _type(schema: Schema) -> str:
    options, nullable = _options(schema)
    text = " or ".join(_single_type(option) for option in options)
    return f"{text} or null" if nullable else text


def _single_type(schema: Schema) -> str:
    if "$ref" in schema:
        return f"object {str(schema['$ref']).rsplit('/', 1)[-1]}"
    if "const" in schema:
        return json.dumps(schema["const"])
    if "enum" in schema:
        return "one of " + ", ".join(json.dumps(value) for value in schema["enum"])
    kind = str(schema.get("type", "any"))
    if kind == "array":
        return f"array of {_type(schema.get('items', {}))}"
    if "format" in schema:
        return f"{kind} ({schema['format']})"
    return kind


def _description(schema: Schema, schemas: dict[str, Schema]) -> str:
    if "description" in schema:
        return str(schema["description"])
    options, _ = _options(schema)
    for option in options:
        resolved = _resolved(option, schemas)
        if "description" in resolved:
            return str(resolved["description"])
    return ""


def _constraints(schema: Schema) -> str:
    options, _ = _options(schema)
    facts: list[str] = []
    for option in [schema, *options] if options != [schema] else [schema]:
        if option.get("type") == "array" and "items" in option:
            facts += _bounds(option["items"])
        facts += _bounds(option)
    if "default" in schema:
        facts.append(f"default {json.dumps(schema['default'])}")
    return "; ".join(dict.fromkeys(facts))


def _bounds(schema: Schema) -> list[str]:
    facts = []
    if "pattern" in schema:
        facts.append(f"pattern {schema['pattern']}")
    if "minLength" in schema or "maxLength" in schema:
        facts.append(f"length {schema.get('minLength', 0)}..{schema.get('maxLength', '')}")
    if "minimum" in schema or "maximum" in schema:
        facts.append(f"{schema.get('minimum', '')}..{schema.get('maximum', '')}")
    if "minItems" in schema or "maxItems" in schema:
        facts.append(f"{schema.get('minItems', 0)}..{schema.get('maxItems', '')} items")
    if "uniqueItems" in schema:
        facts.append("unique items")
    return facts


def _breakable(name: str) -> str:
    """A dotted name that may wrap after its dots, not inside a word."""
    return "<wbr>.".join(escape(part) for part in name.split("."))


def _inline_code(text: str) -> str:
    """Escape `text`, showing `backticked` spans as code."""
    parts = escape(text).split("`")
    return "".join(
        f"<code>{part}</code>" if index % 2 else part for index, part in enumerate(parts)
    )


STYLE = """
:root { --ink: #1d2430; --muted: #5b6577; --line: #dde2ea; --bg: #f6f8fb; --accent: #2456a6; }
* { box-sizing: border-box; }
body { margin: 0; font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
  color: var(--ink); background: #fff; }
code { font: 13px/1.4 ui-monospace, "DejaVu Sans Mono", Menlo, monospace; background: var(--bg);
  padding: 1px 4px; border-radius: 3px; }
a { color: var(--accent); text-decoration: none; }
a:hover { text-decoration: underline; }
header.top { padding: 18px 28px; background: #1f3b67; color: #fff; }
header.top h1 { margin: 0; font-size: 24px; }
header.top .meta { margin: 4px 0 0; color: #cbd7ea; }
header.top a { color: #fff; text-decoration: underline; }
header.top code { background: #2d4d80; color: #fff; }
.layout { display: flex; align-items: flex-start; }
nav.toc { position: sticky; top: 0; width: 290px; flex: none; max-height: 100vh; overflow: auto;
  padding: 16px 18px; border-right: 1px solid var(--line); background: var(--bg); font-size: 14px; }
nav.toc h2 { font-size: 13px; text-transform: uppercase; letter-spacing: .06em; color: var(--muted);
  margin: 16px 0 6px; }
nav.toc ul { list-style: none; margin: 0; padding: 0; }
nav.toc ul ul { padding-left: 14px; margin-bottom: 8px; }
nav.toc .topic-link { font-weight: 600; }
main { flex: 1; min-width: 0; padding: 8px 32px 48px; }
section { margin-top: 24px; }
section h2 { font-size: 20px; border-bottom: 2px solid var(--line); padding-bottom: 4px; }
.lead { color: var(--muted); max-width: 980px; }
table { border-collapse: collapse; width: 100%; margin: 10px 0 14px; font-size: 14px; }
th, td { text-align: left; vertical-align: top; padding: 6px 9px; border-bottom: 1px solid var(--line); }
th { background: var(--bg); font-weight: 600; }
caption { text-align: left; font-weight: 600; padding: 4px 0; color: var(--muted); }
td.topic-cell { background: #fbfcfe; }
td.type { color: #6b3fa0; font-family: ui-monospace, "DejaVu Sans Mono", monospace; font-size: 13px; }
td.req { color: #a03030; font-weight: 600; }
td.opt { color: var(--muted); }
td.constraints { color: var(--muted); font-size: 13px; word-break: break-all; }
.chip { display: inline-block; padding: 1px 9px; border-radius: 10px; font-size: 13px;
  font-weight: 600; color: #fff; margin: 1px 2px 1px 0; }
.svc-intake { background: #2f7d4f; } .svc-booking { background: #2456a6; }
.svc-referral { background: #8a4fb3; } .svc-notification { background: #b8661a; }
.svc-contracts { background: #5b6577; }
.none { color: var(--muted); font-style: italic; }
.version { color: var(--muted); font-weight: 400; font-size: .85em; }
.event-link { white-space: nowrap; margin-right: 8px; }
article.event { border: 1px solid var(--line); border-radius: 8px; padding: 4px 18px 10px;
  margin: 16px 0; }
article.event h3 { margin: 12px 0 2px; font-size: 18px; }
article.event:target, section:target { box-shadow: 0 0 0 3px #9ec0f2; }
dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: 4px 14px; margin: 8px 0; }
dl.facts dt { color: var(--muted); } dl.facts dd { margin: 0; }
details summary { cursor: pointer; color: var(--accent); }
pre { background: var(--bg); padding: 10px; border-radius: 6px; overflow: auto; font-size: 12px; }
"""
