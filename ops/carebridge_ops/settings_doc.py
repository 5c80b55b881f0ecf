"""The settings table of docs/settings.md, generated from the settings classes themselves.

`python -m carebridge_ops.settings_doc` prints it, `--write docs/settings.md` puts it between the
markers (`make docs`); a test keeps the page in step.
"""

from __future__ import annotations

import importlib
import json
import sys
from dataclasses import dataclass
from pathlib import Path

from pydantic import AliasChoices
from pydantic_core import PydanticUndefined

from carebridge_contracts.services import SERVICES, declared_service
from carebridge_shared.settings import ServiceSettings


@dataclass(frozen=True)
class Setting:
    env: str
    default: str
    description: str


def env_settings(cls: type[ServiceSettings]) -> dict[str, Setting]:
    """Environment variable name -> setting, for every field of `cls`."""
    prefix = cls.model_config.get("env_prefix", "")
    found: dict[str, Setting] = {}
    for name, field in cls.model_fields.items():
        alias = field.validation_alias
        if isinstance(alias, AliasChoices):
            env = str(alias.choices[0])
        elif isinstance(alias, str):
            env = alias
        else:
            env = f"{prefix}{name}".upper()
        default = "" if field.default is PydanticUndefined else field.default
        shown = json.dumps(default) if isinstance(default, list | dict) else str(default)
        if shown.startswith("/") and "/carebridge_" in shown:
            shown = "carebridge_" + shown.split("/carebridge_", 1)[1]  # same on every checkout
        description = field.description or _inherited_description(cls, name)
        found[env] = Setting(env, shown, description)
    return found


def _inherited_description(cls: type[ServiceSettings], name: str) -> str:
    for base in cls.__mro__[1:]:
        fields = getattr(base, "model_fields", {})
        if name in fields and fields[name].description:
            return str(fields[name].description)
    return ""


def service_settings_class(service: str) -> type[ServiceSettings]:
    """The `<Service>Settings` class a service's app module exposes."""
    declaration = declared_service(service)
    module = importlib.import_module(declaration.app_module)
    value = getattr(module, declaration.settings_class_name, None)
    if isinstance(value, type) and issubclass(value, ServiceSettings):
        return value
    raise LookupError(f"{declaration.app_module} exposes no {declaration.settings_class_name}")


def markdown_table() -> str:
    common = env_settings(ServiceSettings)
    lines = [
        "| variable | default | service | meaning |",
        "| --- | --- | --- | --- |",
    ]
    for setting in common.values():
        lines.append(f"| `{setting.env}` | `{setting.default}` | all | {setting.description} |")
    for service in SERVICES:
        cls = service_settings_class(service)
        for env, setting in env_settings(cls).items():
            if env in common and common[env].default == setting.default:
                continue
            lines.append(f"| `{env}` | `{setting.default}` | {service} | {setting.description} |")
    return "\n".join(lines) + "\n"


def write_into(path: Path) -> None:
    """Replace the table between the settings-table markers of a Markdown file."""
    text = path.read_text()
    start, end = "<!-- settings-table:start -->\n", "<!-- settings-table:end -->"
    before, _, rest = text.partition(start)
    _, _, after = rest.partition(end)
    if not rest:
        raise SystemExit(f"{path}: no '{start.strip()}' marker")
    path.write_text(before + start + markdown_table() + end + after)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--write":
        write_into(Path(sys.argv[2]))
    else:
        print(markdown_table(), end="")
