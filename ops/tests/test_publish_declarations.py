"""Each service's PUBLISHES declaration (the catalog's producers) matches the events its code
builds, and its outbox refuses an event the declaration lacks."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

from carebridge_contracts import BaseEvent, Topic
from carebridge_contracts.registry import entries, topic_owner
from carebridge_contracts.services import SERVICES

EVENT_CLASSES = {entry.model.__name__ for entry in entries()}


def _constructed_events(package: Path) -> dict[str, set[str]]:
    """Registered event class -> modules of `package` that call its constructor."""
    found: dict[str, set[str]] = {}
    for path in sorted(package.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)
            if name in EVENT_CLASSES:
                found.setdefault(name, set()).add(path.name)
    return found


@pytest.mark.parametrize("service", SERVICES)
def test_publishes_declares_exactly_the_events_the_service_builds(service: str) -> None:
    app = importlib.import_module(f"carebridge_{service}.app")
    declared: tuple[type[BaseEvent], ...] = app.PUBLISHES
    constructed = _constructed_events(Path(str(app.__file__)).parent)

    missing = sorted(set(constructed) - {model.__name__ for model in declared})
    unused = sorted({model.__name__ for model in declared} - set(constructed))

    assert not missing, (
        f"carebridge_{service} builds {missing} ({[sorted(constructed[m]) for m in missing]}) "
        f"but its app.PUBLISHES lacks them: declare them, then run `make docs`"
    )
    assert not unused, f"carebridge_{service}.app.PUBLISHES lists {unused}, which it never builds"


def test_scan_sees_events_built_inside_helpers(tmp_path: Path) -> None:
    (tmp_path / "domain.py").write_text(
        "def events(a):\n"
        "    return [AssessmentCompleted(**a), contracts.SafetyRiskFlagged(**a)]\n"
        "def unrelated():\n"
        "    return dict(AssessmentCompleted=1)\n"
    )
    assert _constructed_events(tmp_path) == {
        "AssessmentCompleted": {"domain.py"},
        "SafetyRiskFlagged": {"domain.py"},
    }


@pytest.mark.parametrize("service", SERVICES)
def test_a_service_publishes_exactly_the_events_of_the_topics_it_owns(service: str) -> None:
    """TOPIC_OWNERS decides who may write a topic (ACLs) and whose events consumers believe;
    the owner's PUBLISHES must be every event of its topics, and no other service's any."""
    app = importlib.import_module(f"carebridge_{service}.app")
    declared = {model.__name__ for model in app.PUBLISHES}
    owned = {entry.model.__name__ for entry in entries() if topic_owner(entry.topic) == service}
    assert service == app.SERVICE
    assert declared == owned, (
        f"carebridge_{service}.app.PUBLISHES is {sorted(declared)} but the topics the contracts "
        f"registry gives it (TOPIC_OWNERS) carry {sorted(owned)}: move the event or the owner"
    )


def test_every_topic_has_an_owning_service() -> None:
    assert {topic_owner(topic) for topic in Topic} <= set(SERVICES)
    assert all(topic_owner(topic) for topic in Topic)
