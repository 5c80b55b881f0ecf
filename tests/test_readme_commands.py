"""The commands of the README and the docs work as pasted into a fresh shell: nothing assumes an
active virtual environment, every `make` target exists, every `carebridge` and
`python -m carebridge_devstack` command line names real commands and options, and the ones
that need nothing running do run."""

from __future__ import annotations

import ast
import re
import shlex
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from carebridge_devstack.cli import app as devstack_app
from carebridge_ops.cli import app as carebridge_app

REPO = Path(__file__).resolve().parent.parent
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
FRESH_SHELL = {"PATH": "/usr/local/bin:/usr/bin:/bin"}  # no .venv/bin on it


def _commands() -> list[tuple[str, str]]:
    """(page, command) for every line of every ```bash block, comments and continuations joined."""
    found: list[tuple[str, str]] = []
    for page in PAGES:
        for block in re.findall(r"```bash\n(.*?)```", page.read_text(), re.DOTALL):
            joined = re.sub(r"\\\n\s*", " ", block)
            for line in joined.splitlines():
                command = re.sub(r"(^|\s)#.*$", "", line).strip()
                if command:
                    found.append((page.name, command))
    return found


COMMANDS = _commands()


def _words(command: str) -> list[str]:
    """The words of the first simple command, without leading VAR=value assignments."""
    words = shlex.split(command.split("|")[0].split(";")[0])
    while words and re.fullmatch(r"[A-Z_][A-Z0-9_]*=.*", words[0]):
        words.pop(0)
    return words


def test_the_pages_have_commands() -> None:
    assert {page for page, _ in COMMANDS} >= {"README.md", "operations.md"}


@pytest.mark.parametrize(("page", "command"), COMMANDS)
def test_no_command_needs_an_active_virtual_environment(page: str, command: str) -> None:
    words = _words(command.replace("$(", " "))
    assert words, command
    program = words[0]
    assert program not in {"python", "python3", "carebridge", "pytest", "ruff", "mypy"}, (
        f"{page}: `{command}` fails in a fresh shell: write .venv/bin/{program}"
    )


def _make_targets() -> set[str]:
    return set(re.findall(r"^([a-z][a-z-]*):", (REPO / "Makefile").read_text(), re.MULTILINE))


@pytest.mark.parametrize(
    ("page", "command"), [(p, c) for p, c in COMMANDS if _words(c)[:1] == ["make"]]
)
def test_every_make_target_exists(page: str, command: str) -> None:
    targets = [w for w in _words(command)[1:] if "=" not in w]
    assert set(targets) <= _make_targets(), f"{page}: `{command}` names no Makefile target"


def _cli_line(command: str) -> tuple[str, list[str]] | None:
    """(which CLI, its arguments) of a carebridge or carebridge_devstack command line."""
    inner = re.search(r"\$\(([^)]*)\)", command)
    words = _words(inner.group(1) if inner else command)
    if words[:1] == [".venv/bin/carebridge"]:
        return "carebridge", words[1:]
    if words[:3] == [".venv/bin/python", "-m", "carebridge_devstack"]:
        return "devstack", words[3:]
    return None


CLI_LINES = [(p, c) for p, c in COMMANDS if _cli_line(c) is not None]


@pytest.mark.parametrize(("page", "command"), CLI_LINES)
def test_every_cli_line_names_real_commands_and_options(page: str, command: str) -> None:
    line = _cli_line(command)
    assert line is not None
    which, args = line
    app = carebridge_app if which == "carebridge" else devstack_app
    # --help is eager: it answers only once every option before it has parsed.
    result = CliRunner().invoke(app, [*args, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, f"{page}: `{command}`: {result.output}"


@pytest.mark.parametrize(
    "command",
    ["make help", ".venv/bin/carebridge --help", ".venv/bin/python -m carebridge_devstack --help"],
)
def test_commands_that_need_nothing_running_run_as_pasted(command: str) -> None:
    result = subprocess.run(
        ["bash", "-c", command], cwd=REPO, env=FRESH_SHELL, capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    ("command", "try_help"),
    [
        (".venv/bin/carebridge no-such-command", "Try '.venv/bin/carebridge --help'"),
        (
            ".venv/bin/python -m carebridge_devstack token ROLE",
            "Try '.venv/bin/python -m carebridge_devstack token --help'",
        ),
    ],
)
def test_a_usage_error_names_the_program_as_it_can_be_pasted(command: str, try_help: str) -> None:
    """Typer's `Usage:` and `Try '... --help'` lines name the program as it was started; a bare
    `carebridge` or `python -m carebridge_devstack` there would not be found in a fresh shell."""
    result = subprocess.run(
        ["bash", "-c", command], cwd=REPO, env=FRESH_SHELL, capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert try_help in result.stderr, result.stderr


def _demo_step_numbers() -> list[int]:
    """The numbers the demo's `step(console, N, ...)` calls print, in the order written."""
    tree = ast.parse((REPO / "devstack" / "carebridge_devstack" / "demo.py").read_text())
    return [
        node.args[1].value
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id == "step"
        and len(node.args) > 1
        and isinstance(node.args[1], ast.Constant)
        and isinstance(node.args[1].value, int)
    ]


def test_the_readme_lists_every_step_the_demo_prints() -> None:
    section = (REPO / "README.md").read_text().split("## What `make run` shows you", 1)[1]
    section = section.split("\n## ", 1)[0]
    listed = [int(n) for n in re.findall(r"^(\d+)\. ", section, re.MULTILINE)]
    printed = sorted(set(_demo_step_numbers()))
    assert printed == list(range(1, len(printed) + 1)), printed
    assert listed == printed, "the README's numbered list is not the demo's steps"
    assert f"through {len(printed)} numbered steps" in section


BARE_PROGRAM = re.compile(
    r"(?<![\w./-])(carebridge (?:dlq|events|replay|offsets|projection|status|catalog|kafka)\b"
    r"|python -m carebridge_devstack(?![.\w]))"
)
# Names, not commands to paste: the "derived from" column of `carebridge kafka acls`
# (docs/security.md), and the title of `carebridge status`'s table.
NOT_A_HINT = {
    ("kafka_access.py", "ops tooling (`carebridge dlq`, `replay`, `offsets`, `projection`)"),
    ("status.py", "carebridge status"),
}


def _printed_strings(path: Path) -> list[tuple[int, str]]:
    """The string literals of a module that the program may print: not docstrings, comments or
    an option's `help=` or a `*_HELP` text (they name a command, they do not hand one over)."""
    tree = ast.parse(path.read_text())
    skipped: set[int] = set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr):
            skipped.add(id(body[0].value))  # a docstring (or a bare expression)
        if isinstance(node, ast.keyword) and node.arg in {"help", "epilog"}:
            skipped.update(id(sub) for sub in ast.walk(node.value))
        if isinstance(node, ast.Assign) and any(
            isinstance(target, ast.Name) and target.id.endswith("_HELP") for target in node.targets
        ):
            skipped.update(id(sub) for sub in ast.walk(node.value))
    return [
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and id(node) not in skipped
    ]


@pytest.mark.parametrize(
    "package",
    ["ops/carebridge_ops", "devstack/carebridge_devstack"],
)
def test_no_printed_hint_names_a_program_that_a_fresh_shell_cannot_find(package: str) -> None:
    """Hints name `carebridge` and `python -m carebridge_devstack` through
    `carebridge_ops.hints` (`.venv/bin/...`), never bare."""
    found = [
        f"{path.relative_to(REPO)}:{line}: {text!r}"
        for path in sorted((REPO / package).rglob("*.py"))
        for line, text in _printed_strings(path)
        if BARE_PROGRAM.search(text) and (path.name, text) not in NOT_A_HINT
    ]
    assert not found, "write these with carebridge_ops.hints:\n" + "\n".join(found)
