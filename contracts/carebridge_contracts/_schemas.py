"""Build the JSON Schemas that are committed under contracts/schemas/."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from carebridge_contracts.envelope import ENVELOPE_SCHEMA_VERSION, Envelope
from carebridge_contracts.registry import RegistryEntry, entries

JsonSchema = dict[str, Any]

SCHEMA_DIR = Path(__file__).resolve().parent.parent / "schemas"
ENVELOPE_SCHEMA_FILE = f"envelope.v{ENVELOPE_SCHEMA_VERSION}.json"


def schema_filename(type: str, version: int) -> str:
    return f"{type}.v{version}.json"


def event_schema(entry: RegistryEntry) -> JsonSchema:
    schema = entry.model.model_json_schema()
    schema["x-event-type"] = entry.event_type
    schema["x-event-version"] = entry.version
    schema["x-topic"] = entry.topic.value
    return schema


def envelope_schema() -> JsonSchema:
    schema = Envelope.model_json_schema()
    schema["x-envelope-version"] = ENVELOPE_SCHEMA_VERSION
    return schema


def expected_schemas() -> dict[str, JsonSchema]:
    """File name -> schema, for every registered event and the envelope."""
    schemas = {schema_filename(e.event_type, e.version): event_schema(e) for e in entries()}
    schemas[ENVELOPE_SCHEMA_FILE] = envelope_schema()
    return schemas


def render(schema: JsonSchema) -> str:
    return json.dumps(schema, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def load(path: Path) -> JsonSchema:
    loaded: JsonSchema = json.loads(path.read_text(encoding="utf-8"))
    return loaded
