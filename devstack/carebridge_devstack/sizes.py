"""The largest modules, classes and functions of the tree, measured with `ast`, so that "before"
and "after" figures of a refactoring come from one command
(`.venv/bin/python -m carebridge_devstack sizes`).

A module's size is its number of lines; a class's or a function's is the lines from its first
decorator (or its `def`/`class` line) to its last line, nested definitions included. Methods
and nested functions are listed under their qualified name (`Class.method`, `outer.inner`).
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from enum import StrEnum
from pathlib import Path

# The first-party Python of the tree, tests and generated files aside.
SOURCE_AREAS = ("contracts", "shared", "services", "devstack", "ops", "bench", "docs/examples")
SKIPPED_DIRECTORIES = frozenset({"tests", ".venv", "__pycache__", "migrations", "node_modules"})


class Kind(StrEnum):
    MODULE = "module"
    CLASS = "class"
    FUNCTION = "function"


@dataclass(frozen=True)
class Size:
    kind: Kind
    path: str
    name: str
    lines: int

    @property
    def where(self) -> str:
        return self.path if self.kind is Kind.MODULE else f"{self.path}:{self.name}"

    def as_dict(self) -> dict[str, object]:
        return {**asdict(self), "kind": self.kind.value}


def python_files(root: Path, areas: Iterable[str], *, with_tests: bool = False) -> list[Path]:
    """The `.py` files under each area of `root`, sorted, without tests unless asked for."""
    skipped = SKIPPED_DIRECTORIES - {"tests"} if with_tests else SKIPPED_DIRECTORIES
    found: set[Path] = set()
    for area in areas:
        base = root / area
        candidates = [base] if base.is_file() else base.rglob("*.py")
        for path in candidates:
            if path.suffix == ".py" and not skipped.intersection(path.relative_to(root).parts):
                found.add(path)
    return sorted(found)


def _definitions(
    body: Iterable[ast.stmt], prefix: str = ""
) -> Iterator[tuple[str, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef]]:
    for node in body:
        if isinstance(node, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            name = f"{prefix}{node.name}"
            yield name, node
            yield from _definitions(node.body, f"{name}.")
        elif isinstance(node, ast.If | ast.Try | ast.With | ast.AsyncWith):
            # definitions under `if TYPE_CHECKING:`, `try: ... except ImportError:` and the like
            for block in (node.body, getattr(node, "orelse", []), getattr(node, "finalbody", [])):
                yield from _definitions(block, prefix)


def _span(node: ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    first = min([node.lineno, *(decorator.lineno for decorator in node.decorator_list)])
    return (node.end_lineno or node.lineno) - first + 1


def measure_source(source: str, path: str) -> list[Size]:
    """The module and every class and function defined in `source`."""
    sizes = [Size(Kind.MODULE, path, "", len(source.splitlines()))]
    for name, node in _definitions(ast.parse(source, filename=path).body):
        kind = Kind.CLASS if isinstance(node, ast.ClassDef) else Kind.FUNCTION
        sizes.append(Size(kind, path, name, _span(node)))
    return sizes


def measure_tree(root: Path, areas: Iterable[str], *, with_tests: bool = False) -> list[Size]:
    sizes: list[Size] = []
    for path in python_files(root, areas, with_tests=with_tests):
        sizes.extend(measure_source(path.read_text(), path.relative_to(root).as_posix()))
    return sizes


def largest(sizes: Iterable[Size], kind: Kind, *, top: int, over: int = 0) -> list[Size]:
    """The `top` largest of one kind (all of them with `top` 0), only those over `over` lines."""
    ranked = sorted(
        (size for size in sizes if size.kind is kind and size.lines > over),
        key=lambda size: (-size.lines, size.where),
    )
    return ranked[:top] if top else ranked


def render(sizes: Sequence[Size], kinds: Iterable[Kind], *, top: int, over: int = 0) -> str:
    """One line per entry (`kind  lines  path[:name]`), the largest first, kind by kind."""
    lines: list[str] = []
    for kind in kinds:
        for size in largest(sizes, kind, top=top, over=over):
            lines.append(f"{kind.value:<8} {size.lines:>5}  {size.where}")
    return "\n".join(lines)
