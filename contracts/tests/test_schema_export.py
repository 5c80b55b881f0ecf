from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from carebridge_contracts import IncompatibleSchemaChange
from carebridge_contracts._schemas import SCHEMA_DIR, expected_schemas
from carebridge_contracts.schema_export import main, stale_schemas, write_schemas


def test_write_creates_sorted_files_with_trailing_newline(tmp_path: Path) -> None:
    written = write_schemas(tmp_path)
    assert {p.name for p in written} == set(expected_schemas())
    assert "envelope.v1.json" in {p.name for p in written}
    text = (tmp_path / "AssessmentCompleted.v1.json").read_text()
    assert text.endswith("}\n")
    assert list(json.loads(text)) == sorted(json.loads(text))
    assert write_schemas(tmp_path) == []  # idempotent


def test_committed_dir_matches_a_fresh_export(tmp_path: Path) -> None:
    write_schemas(tmp_path)
    for path in tmp_path.iterdir():
        assert (SCHEMA_DIR / path.name).read_text() == path.read_text(), path.name


def _break_committed(directory: Path) -> Path:
    path = directory / "TherapistMatched.v1.json"
    committed = json.loads(path.read_text())
    committed["properties"]["modality"]["enum"].append("hypnosis")
    path.write_text(json.dumps(committed))
    return path


def test_write_refuses_breaking_change(tmp_path: Path) -> None:
    shutil.copytree(SCHEMA_DIR, tmp_path, dirs_exist_ok=True)
    path = _break_committed(tmp_path)
    before = path.read_text()
    with pytest.raises(IncompatibleSchemaChange, match="hypnosis"):
        write_schemas(tmp_path)
    assert path.read_text() == before
    assert main(["--schema-dir", str(tmp_path)]) == 1
    write_schemas(tmp_path, allow_breaking=True)
    assert stale_schemas(tmp_path) == []


def test_check_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    shutil.copytree(SCHEMA_DIR, tmp_path, dirs_exist_ok=True)
    assert main(["--check", "--schema-dir", str(tmp_path)]) == 0

    _break_committed(tmp_path)
    (tmp_path / "CareTeamFormed.v1.json").write_text("{}\n")  # compatible, but stale
    assert main(["--check", "--schema-dir", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "BREAKING TherapistMatched.v1: property 'modality': enum values removed" in out
    assert "STALE    CareTeamFormed.v1: committed schema is out of date" in out


def test_check_against_baseline(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    current, baseline = tmp_path / "current", tmp_path / "baseline"
    shutil.copytree(SCHEMA_DIR, current)
    shutil.copytree(SCHEMA_DIR, baseline)
    (baseline / "ConsentRevoked.v1.json").unlink()  # a model new since the baseline is fine
    args = ["--check", "--schema-dir", str(current), "--baseline", str(baseline)]
    assert main(args) == 0
    _break_committed(baseline)
    assert main(args) == 1
    assert "BREAKING TherapistMatched.v1" in capsys.readouterr().out


def test_module_entry_point_checks_committed_schemas() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "carebridge_contracts.schema_export", "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
