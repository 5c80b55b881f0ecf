"""The import-linter contracts (`make lint`) cover every declared service."""

from __future__ import annotations

import importlib.util
import tomllib
from pathlib import Path
from typing import Any

import pytest

from carebridge_contracts.services import SERVICE_DECLARATIONS, ServiceDeclaration

PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"


def _config() -> dict[str, Any]:
    config: dict[str, Any] = tomllib.loads(PYPROJECT.read_text())["tool"]["importlinter"]
    return config


def _contract(kind: str, name_part: str) -> dict[str, Any]:
    found = [
        c for c in _config()["contracts"] if c["type"] == kind and name_part in c["name"].lower()
    ]
    assert len(found) == 1, f"pyproject.toml: one {kind} contract named like {name_part!r}"
    return found[0]


@pytest.mark.parametrize("service", SERVICE_DECLARATIONS, ids=lambda s: s.name)
def test_every_declared_service_is_held_by_the_import_contracts(
    service: ServiceDeclaration,
) -> None:
    hint = f"add {service.package} to the [tool.importlinter] contracts in pyproject.toml"
    assert service.package in _config()["root_packages"], hint
    services_layer = {
        name.strip()
        for layer in _contract("layers", "layers")["layers"]
        for name in layer.split("|")
    }
    assert service.package in services_layer, hint
    assert service.package in _contract("independence", "no service")["modules"], hint
    # Every service's pure rules are its `domain` (a module or a package of them); every
    # module the contract names is a real one, so a rename cannot leave it holding nothing.
    pure = _contract("forbidden", "domain")["source_modules"]
    assert f"{service.package}.domain" in pure, hint
    assert all(importlib.util.find_spec(module) is not None for module in pure), pure
