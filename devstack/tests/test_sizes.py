"""`python -m carebridge_devstack sizes`: modules, classes and functions measured in lines."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from carebridge_devstack.cli import app
from carebridge_devstack.sizes import Kind, Size, largest, measure_source, measure_tree, render

SOURCE = '''"""A module."""

import typing


@decorated
def top(x):
    def inner():
        return 1

    return inner()


class Thing:
    def method(self):
        return 2


if typing.TYPE_CHECKING:
    def typed_only():
        pass
'''


def test_a_definition_spans_its_decorators_and_nested_definitions() -> None:
    sizes = {(s.kind, s.name): s.lines for s in measure_source(SOURCE, "pkg/mod.py")}
    assert sizes == {
        (Kind.MODULE, ""): 21,
        (Kind.FUNCTION, "top"): 6,
        (Kind.FUNCTION, "top.inner"): 2,
        (Kind.CLASS, "Thing"): 3,
        (Kind.FUNCTION, "Thing.method"): 2,
        (Kind.FUNCTION, "typed_only"): 2,
    }


def test_largest_ranks_by_lines_then_place_and_keeps_only_those_over() -> None:
    sizes = [
        Size(Kind.FUNCTION, "b.py", "f", 70),
        Size(Kind.FUNCTION, "a.py", "g", 70),
        Size(Kind.FUNCTION, "a.py", "h", 90),
        Size(Kind.FUNCTION, "a.py", "small", 60),
        Size(Kind.MODULE, "a.py", "", 900),
    ]
    assert [s.where for s in largest(sizes, Kind.FUNCTION, top=0, over=60)] == [
        "a.py:h",
        "a.py:g",
        "b.py:f",
    ]
    assert [s.where for s in largest(sizes, Kind.FUNCTION, top=1)] == ["a.py:h"]
    assert render(sizes, [Kind.MODULE], top=5) == "module     900  a.py"


def test_tests_and_caches_are_left_out_unless_asked_for(tmp_path: Path) -> None:
    for name in ("pkg/code.py", "pkg/tests/test_code.py", "pkg/__pycache__/x.py"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("def f():\n    return 1\n")

    def modules(*, with_tests: bool) -> set[str]:
        measured = measure_tree(tmp_path, ["pkg"], with_tests=with_tests)
        return {s.path for s in measured if s.kind is Kind.MODULE}

    assert modules(with_tests=False) == {"pkg/code.py"}
    assert modules(with_tests=True) == {"pkg/code.py", "pkg/tests/test_code.py"}


def test_the_command_measures_the_tree() -> None:
    result = CliRunner().invoke(
        app, ["sizes", "devstack", "--kind", "module", "--top", "3", "--json"]
    )
    assert result.exit_code == 0, result.output
    entries = json.loads(result.output)
    assert len(entries) == 3
    assert all(e["kind"] == "module" and e["path"].startswith("devstack/") for e in entries)
    assert entries[0]["lines"] >= entries[-1]["lines"]


def test_the_command_refuses_an_unknown_kind() -> None:
    result = CliRunner().invoke(app, ["sizes", "--kind", "method"])
    assert result.exit_code == 2
    assert "use module, class or function" in result.output
