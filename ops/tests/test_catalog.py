"""The event catalog is generated from the code, complete, deterministic and committed fresh."""

from __future__ import annotations

import ast
import importlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from carebridge_contracts.registry import entries
from carebridge_contracts.services import SERVICES
from carebridge_devstack.testing import sample_assessment, wrap
from carebridge_ops.catalog import DOCUMENT_FILE, PAGE_FILE
from carebridge_ops.catalog.asyncapi import envelope_model, message_key
from carebridge_ops.catalog.cli import app
from carebridge_ops.catalog.files import build_document, stale_files


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    return build_document()


def test_committed_catalog_matches_the_code() -> None:
    stale = stale_files()
    assert not stale, f"docs/catalog/{stale} is stale: run `make docs` and commit docs/catalog"


def test_check_command_fails_on_a_stale_catalog(tmp_path: Path) -> None:
    runner = CliRunner()
    assert runner.invoke(app, ["write", "--dir", str(tmp_path)]).exit_code == 0
    assert runner.invoke(app, ["check", "--dir", str(tmp_path)]).exit_code == 0

    page = tmp_path / PAGE_FILE
    page.write_text(page.read_text().replace("AppointmentBooked", "AppointmentBookd", 1))
    result = runner.invoke(app, ["check", "--dir", str(tmp_path)])

    assert result.exit_code == 1
    assert "run `make docs`" in result.output


def test_generation_does_not_depend_on_the_process(tmp_path: Path) -> None:
    """Two processes with different hash seeds write byte-identical files."""
    outputs = []
    for seed in ("1", "4242"):
        out = tmp_path / seed
        subprocess.run(
            [sys.executable, "-m", "carebridge_ops.catalog", "write", "--dir", str(out)],
            env={**os.environ, "PYTHONHASHSEED": seed},
            check=True,
            capture_output=True,
        )
        outputs.append({name: (out / name).read_bytes() for name in (DOCUMENT_FILE, PAGE_FILE)})
    assert outputs[0] == outputs[1]


def test_every_registered_event_is_a_message_with_its_schema(document: dict[str, Any]) -> None:
    messages = document["components"]["messages"]
    schemas = document["components"]["schemas"]
    assert set(messages) == {message_key(entry) for entry in entries()}
    for entry in entries():
        message = messages[message_key(entry)]
        assert message["x-topic"] == entry.topic.value
        assert message_key(entry) in document["channels"][entry.topic.value]["messages"]

        envelope = schemas[message["payload"]["$ref"].rsplit("/", 1)[-1]]
        assert envelope["properties"]["type"]["const"] == entry.event_type
        assert envelope["properties"]["version"]["const"] == entry.version
        data = schemas[envelope["properties"]["data"]["$ref"].rsplit("/", 1)[-1]]
        model_schema = entry.model.model_json_schema()
        assert data["properties"] == model_schema["properties"]
        assert data.get("required") == model_schema.get("required")


def test_documented_envelope_is_what_goes_on_the_wire() -> None:
    by_type = {entry.event_type: entry for entry in entries()}
    on_the_wire = wrap(sample_assessment("pat-1"), "pat-1").to_bytes()

    envelope_model(by_type["AssessmentCompleted"]).model_validate_json(on_the_wire)
    with pytest.raises(ValidationError):
        envelope_model(by_type["SafetyRiskFlagged"]).model_validate_json(on_the_wire)


def _handled_in_source(service: str) -> set[str]:
    """Event class names in `@subscriptions.on(Name)` / `@subscriptions.on_batch(Name)`
    decorators of the service's handlers.py: read from the source, independently of the
    `Subscriptions` registry the catalog reads."""
    module = importlib.import_module(f"carebridge_{service}.handlers")
    tree = ast.parse(Path(str(module.__file__)).read_text())
    return {
        decorator.args[0].id
        for node in ast.walk(tree)
        if isinstance(node, ast.AsyncFunctionDef | ast.FunctionDef)
        for decorator in node.decorator_list
        if isinstance(decorator, ast.Call)
        and isinstance(decorator.func, ast.Attribute)
        and decorator.func.attr in ("on", "on_batch")
        and decorator.args
        and isinstance(decorator.args[0], ast.Name)
    }


@pytest.mark.parametrize("service", SERVICES)
def test_producers_and_consumers_come_from_the_services_code(
    document: dict[str, Any], service: str
) -> None:
    declared = {
        model.__name__ for model in importlib.import_module(f"carebridge_{service}.app").PUBLISHES
    }
    messages = document["components"]["messages"].values()
    produced = {m["x-event-type"] for m in messages if service in m["x-producers"]}
    consumed = {m["x-event-type"] for m in messages if service in m["x-consumers"]}

    assert produced == declared
    assert consumed == _handled_in_source(service)


def test_each_topic_has_one_producer(document: dict[str, Any]) -> None:
    """The envelope sequence is counted in the producer's database: a second producer on a
    topic would repeat sequence numbers and blind subscribers' gap detection."""
    for topic, channel in document["channels"].items():
        assert len(channel["x-producers"]) == 1, (topic, channel["x-producers"])


def test_document_is_asyncapi_3_with_resolvable_references(document: dict[str, Any]) -> None:
    assert document["asyncapi"] == "3.0.0"
    text = json.dumps(document)
    references = {part.split('"', 1)[0] for part in text.split('"$ref": "')[1:]}
    for reference in references:
        node: Any = document
        for key in reference.removeprefix("#/").split("/"):
            node = node[key]
        assert isinstance(node, dict), reference
