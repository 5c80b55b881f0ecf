"""Commands as the programs print them in hints: they work when pasted into a fresh shell, where
the virtual environment is not active (`python -m carebridge_devstack` and a bare `carebridge`
would not be found)."""

from __future__ import annotations

import sys
from pathlib import Path


def program(name: str) -> str:
    """`name` from this Python's virtual environment: `.venv/bin/<name>` in the directory that
    holds the environment (the repository root, where the README's commands run), else the
    absolute path."""
    path = Path(sys.executable).parent / name
    venv_home = path.parent.parent.parent
    if Path.cwd().resolve() == venv_home.resolve():
        return str(path.relative_to(venv_home))
    return str(path)


def carebridge(args: str) -> str:
    """A `carebridge` (ops CLI) command line."""
    return f"{program('carebridge')} {args}"


def devstack(args: str) -> str:
    """A `python -m carebridge_devstack` command line."""
    return f"{program('python')} -m carebridge_devstack {args}"
