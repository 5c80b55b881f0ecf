"""Find the local dev stack the way the services do: with no KAFKA_BOOTSTRAP_SERVERS set, the
`carebridge` command takes the variables of `<repo>/.stack/stack.env` (its brokers, database
and the admin's SCRAM login, ADR 0013), which `make stack-up` and `make run` write."""

from __future__ import annotations

import os
from collections.abc import MutableMapping
from pathlib import Path

STACK_DIR_ENV = "CAREBRIDGE_STACK_DIR"
STACK_ENV_FILE = "stack.env"


def repo_root(start: Path | None = None) -> Path:
    """The uv workspace root: from this package's location (an editable install inside the
    repository), else from `start` (default: the current directory), else `start` itself."""
    here = (start or Path.cwd()).resolve()
    for origin in (Path(__file__).resolve().parent, here):
        for directory in (origin, *origin.parents):
            try:
                if "[tool.uv.workspace]" in (directory / "pyproject.toml").read_text():
                    return directory
            except OSError:
                continue
    return here


def default_stack_dir() -> Path:
    """`CAREBRIDGE_STACK_DIR`, else `<repo>/.stack`."""
    override = os.environ.get(STACK_DIR_ENV)
    return Path(override).resolve() if override else repo_root() / ".stack"


def read_env_file(path: Path) -> dict[str, str]:
    """`KEY=value` lines (as the stack writes them, unquoted)."""
    found: dict[str, str] = {}
    for line in path.read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip() and not key.lstrip().startswith("#"):
            found[key.strip()] = value
    return found


def adopt_local_stack(
    environ: MutableMapping[str, str] | None = None, stack_dir: Path | None = None
) -> Path | None:
    """When KAFKA_BOOTSTRAP_SERVERS is not set and the local stack's `stack.env` exists, set its
    variables that are not set yet; returns that file, or None when nothing was adopted. An
    explicit KAFKA_BOOTSTRAP_SERVERS means another cluster: nothing of the local one is mixed
    in."""
    environ = os.environ if environ is None else environ
    if environ.get("KAFKA_BOOTSTRAP_SERVERS", "").strip():
        return None
    env_file = (stack_dir or default_stack_dir()) / STACK_ENV_FILE
    try:
        values = read_env_file(env_file)
    except OSError:
        return None
    for key, value in values.items():
        if not environ.get(key):
            environ[key] = value
    return env_file
