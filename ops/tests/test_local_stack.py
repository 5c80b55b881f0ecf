"""`carebridge` finds the local stack like the services do, and the programs' hints run as pasted
into a fresh shell (no virtual environment active)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from carebridge_contracts import Topic
from carebridge_devstack.endpoints import StackEndpoints
from carebridge_ops import hints
from carebridge_ops.local_stack import STACK_ENV_FILE, adopt_local_stack, repo_root

REPO = repo_root()
FRESH_SHELL_PATH = "/usr/local/bin:/usr/bin:/bin"  # what a new login shell has: no .venv/bin


def _write_stack_env(directory: Path, values: dict[str, str]) -> None:
    (directory / STACK_ENV_FILE).write_text("".join(f"{k}={v}\n" for k, v in values.items()))


def test_the_local_stack_is_adopted_when_no_brokers_are_named(tmp_path: Path) -> None:
    _write_stack_env(
        tmp_path,
        {
            "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:29092",
            "DATABASE_URL": "postgresql://postgres@127.0.0.1:25432/carebridge",
            "CAREBRIDGE_KAFKA_SASL_USERNAME": "carebridge-admin",
            "CAREBRIDGE_KAFKA_SASL_PASSWORD": "pw=with=equals",
        },
    )
    environ = {"DATABASE_URL": "postgresql://mine@db/x"}
    assert adopt_local_stack(environ, tmp_path) == tmp_path / STACK_ENV_FILE
    assert environ == {
        "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:29092",
        "DATABASE_URL": "postgresql://mine@db/x",  # what the caller set wins
        "CAREBRIDGE_KAFKA_SASL_USERNAME": "carebridge-admin",
        "CAREBRIDGE_KAFKA_SASL_PASSWORD": "pw=with=equals",
    }


def test_named_brokers_take_nothing_from_the_local_stack(tmp_path: Path) -> None:
    _write_stack_env(tmp_path, {"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:29092", "X": "1"})
    environ = {"KAFKA_BOOTSTRAP_SERVERS": "broker.example:9092"}
    assert adopt_local_stack(environ, tmp_path) is None
    assert environ == {"KAFKA_BOOTSTRAP_SERVERS": "broker.example:9092"}
    assert adopt_local_stack({}, tmp_path / "absent") is None


def _fresh_shell(command: str, **extra: str) -> subprocess.CompletedProcess[str]:
    """`command` as pasted into a new shell at the repository root."""
    env = {"PATH": FRESH_SHELL_PATH, "HOME": os.environ.get("HOME", "/root"), **extra}
    return subprocess.run(
        ["bash", "-c", command], cwd=REPO, env=env, capture_output=True, text=True, timeout=120
    )


@pytest.mark.parametrize(
    "command",
    [hints.devstack("--help"), hints.carebridge("--help"), hints.devstack("token --public-key")],
)
def test_printed_commands_run_in_a_fresh_shell(
    command: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(REPO)
    assert command.startswith(".venv/bin/"), command
    result = _fresh_shell(command)
    assert result.returncode == 0, result.stderr


def test_hints_name_this_environment_from_elsewhere(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir("/")
    assert hints.carebridge("status") == f"{Path(sys.executable).parent}/carebridge status"


def test_the_refusal_without_a_stack_says_how_to_start_one(tmp_path: Path) -> None:
    result = _fresh_shell(
        ".venv/bin/carebridge events tail --no-follow", CAREBRIDGE_STACK_DIR=str(tmp_path)
    )
    assert result.returncode == 2
    assert "KAFKA_BOOTSTRAP_SERVERS is not set" in result.stderr
    assert "make stack-up" in result.stderr and "--bootstrap" in result.stderr


@pytest.mark.integration
def test_events_tail_finds_the_local_stack_and_its_admin_login(
    stack_endpoints: StackEndpoints, tmp_path: Path
) -> None:
    login = {k: v for k, v in os.environ.items() if k.startswith("CAREBRIDGE_KAFKA_")}
    _write_stack_env(
        tmp_path,
        {
            **login,
            **stack_endpoints.env,
        },
    )
    result = _fresh_shell(
        f".venv/bin/carebridge events tail --topic {Topic.CARE_PLANS} --no-follow",
        CAREBRIDGE_STACK_DIR=str(tmp_path),
    )
    assert result.returncode == 0, result.stderr
    assert "not set" not in result.stderr
