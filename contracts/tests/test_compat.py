"""The CI gate: models must stay compatible with the committed schemas."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, Literal

import pytest
from pydantic import BaseModel, ConfigDict, create_model
from pydantic.fields import FieldInfo

from carebridge_contracts import AppointmentBooked, AssessmentCompleted
from carebridge_contracts._schemas import SCHEMA_DIR, event_schema
from carebridge_contracts.compat import check_all, check_compatible
from carebridge_contracts.registry import entries
from carebridge_contracts.schema_export import stale_schemas

_STRICT = ConfigDict(extra="forbid", frozen=True)


def test_models_are_compatible_with_committed_schemas() -> None:
    assert check_all() == []


def test_committed_schemas_are_up_to_date() -> None:
    assert stale_schemas() == [], "run: python -m carebridge_contracts.schema_export"


def variant(
    model: type[BaseModel],
    *,
    drop: tuple[str, ...] = (),
    add: dict[str, tuple[Any, Any]] | None = None,
    replace: dict[str, tuple[Any, Any]] | None = None,
) -> type[BaseModel]:
    """A copy of `model` (same name) with fields dropped, added or redefined."""
    fields: dict[str, Any] = {
        name: (info.annotation, FieldInfo.merge_field_infos(info))
        for name, info in model.model_fields.items()
        if name not in drop
    }
    fields.update(replace or {})
    fields.update(add or {})
    return create_model(model.__name__, __config__=_STRICT, **fields)


def schema(model: type[BaseModel]) -> dict[str, Any]:
    return model.model_json_schema()


OLD = schema(AssessmentCompleted)


def test_identical_copy_is_compatible() -> None:
    assert check_compatible(OLD, schema(variant(AssessmentCompleted))) == []


def test_adding_an_optional_field_is_compatible() -> None:
    new = variant(AssessmentCompleted, add={"retake_count": (int | None, None)})
    assert check_compatible(OLD, schema(new)) == []


def test_adding_an_enum_value_is_compatible() -> None:
    channel = Literal["email", "sms", "push"]
    new = variant(AssessmentCompleted, replace={"preferred_channel": (channel, ...)})
    assert check_compatible(OLD, schema(new)) == []


def test_widening_a_const_to_an_enum_is_compatible() -> None:
    old = schema(AppointmentBooked)
    status = Literal["booked", "proposed"]
    new = variant(AppointmentBooked, replace={"status": (status, "booked")})
    assert check_compatible(old, schema(new)) == []


def test_changing_titles_and_descriptions_is_compatible() -> None:
    new = variant(
        AssessmentCompleted,
        replace={"phq9_total": (int, FieldInfo(ge=0, le=27, title="PHQ-9", description="0-27"))},
    )
    assert check_compatible(OLD, schema(new)) == []


def test_removing_a_field_fails() -> None:
    new = variant(AssessmentCompleted, drop=("therapy_interest",))
    assert check_compatible(OLD, schema(new)) == ["removed property 'therapy_interest'"]


def test_removing_an_optional_field_fails() -> None:
    old = schema(AppointmentBooked)
    assert check_compatible(old, schema(variant(AppointmentBooked, drop=("status",)))) == [
        "removed property 'status'"
    ]


def test_renaming_a_required_field_fails() -> None:
    new = variant(
        AssessmentCompleted,
        drop=("phq9_total",),
        add={"phq9_score": (int, FieldInfo(ge=0, le=27))},
    )
    assert check_compatible(OLD, schema(new)) == [
        "removed property 'phq9_total'",
        "new required property 'phq9_score'",
    ]


def test_retyping_a_field_fails() -> None:
    new = variant(AssessmentCompleted, replace={"phq9_total": (str, ...)})
    problems = check_compatible(OLD, schema(new))
    assert problems == ["property 'phq9_total': type changed from integer to string"]


def test_changing_a_format_fails() -> None:
    new = variant(AssessmentCompleted, replace={"assessment_id": (str, ...)})
    assert check_compatible(OLD, schema(new)) == [
        "property 'assessment_id': type changed from string(uuid) to string"
    ]


def test_making_a_field_nullable_fails() -> None:
    new = variant(AssessmentCompleted, replace={"gad7_total": (int | None, ...)})
    [problem] = check_compatible(OLD, schema(new))
    assert problem.startswith("property 'gad7_total': type changed from integer to integer | null")


def test_making_an_optional_field_required_fails() -> None:
    old = schema(AppointmentBooked)
    new = variant(AppointmentBooked, replace={"status": (Literal["booked"], ...)})
    assert check_compatible(old, schema(new)) == ["property 'status' became required"]


def test_making_a_required_field_optional_fails() -> None:
    new = variant(AssessmentCompleted, replace={"therapy_interest": (bool, False)})
    assert check_compatible(OLD, schema(new)) == ["property 'therapy_interest' became optional"]


def test_removing_an_enum_value_fails() -> None:
    band = Literal["minimal", "mild", "moderate", "severe"]
    new = variant(AssessmentCompleted, replace={"phq9_band": (band, ...)})
    assert check_compatible(OLD, schema(new)) == [
        "property 'phq9_band': enum values removed: \"moderately_severe\""
    ]


def test_tightening_a_constraint_fails() -> None:
    new = variant(AssessmentCompleted, replace={"phq9_total": (int, FieldInfo(ge=0, le=20))})
    assert check_compatible(OLD, schema(new)) == [
        "property 'phq9_total': maximum changed from 27 to 20"
    ]


def test_nested_models_are_compared_through_refs() -> None:
    class Window(BaseModel):
        starts: int
        ends: int

    class WindowV2(BaseModel):
        starts: int

    old = create_model("E", window=(Window, ...))
    new = create_model("E", window=(WindowV2, ...))
    assert "$ref" in json.dumps(schema(old))
    assert check_compatible(schema(old), schema(new)) == ["removed property 'window.ends'"]
    assert check_compatible(schema(old), schema(create_model("E", window=(Window, ...)))) == []


def test_list_item_enum_value_removed_fails() -> None:
    two, one = Literal["a", "b"], Literal["a"]
    old = create_model("E", tags=(list[two], ...))  # type: ignore[valid-type]
    new = create_model("E", tags=(list[one], ...))  # type: ignore[valid-type]
    assert check_compatible(schema(old), schema(new)) == [
        "property 'tags[]': enum values removed: \"b\""
    ]


# check_all against a copy of the committed directory


@pytest.fixture
def schema_dir(tmp_path: Path) -> Path:
    target = tmp_path / "schemas"
    shutil.copytree(SCHEMA_DIR, target)
    return target


def test_check_all_passes_on_copy(schema_dir: Path) -> None:
    assert check_all(schema_dir) == []


def test_check_all_reports_missing_schema(schema_dir: Path) -> None:
    (schema_dir / "AppointmentNoShow.v1.json").unlink()
    [problem] = check_all(schema_dir)
    assert problem.startswith("AppointmentNoShow.v1: missing committed schema")
    assert check_all(schema_dir, allow_new=True) == []


def test_check_all_reports_orphan_schema(schema_dir: Path) -> None:
    shutil.copy(schema_dir / "AppointmentNoShow.v1.json", schema_dir / "AppointmentNoShow.v0.json")
    assert check_all(schema_dir) == [
        "AppointmentNoShow.v0: committed schema has no registered model"
    ]


def test_check_all_reports_a_renamed_field(schema_dir: Path) -> None:
    # A committed schema whose required field the model no longer has = a rename in the model.
    path = schema_dir / "AssessmentCompleted.v1.json"
    committed = json.loads(path.read_text())
    committed["properties"]["phq9_score"] = committed["properties"].pop("phq9_total")
    committed["required"] = [
        "phq9_score" if name == "phq9_total" else name for name in committed["required"]
    ]
    path.write_text(json.dumps(committed))
    assert check_all(schema_dir) == [
        "AssessmentCompleted.v1: removed property 'phq9_score'",
        "AssessmentCompleted.v1: new required property 'phq9_total'",
    ]


def test_check_all_reports_topic_move(schema_dir: Path) -> None:
    path = schema_dir / "CarePlanUpdated.v1.json"
    committed = json.loads(path.read_text())
    committed["x-topic"] = "carebridge.referral.referrals"
    path.write_text(json.dumps(committed))
    assert check_all(schema_dir) == [
        "CarePlanUpdated.v1: schema: x-topic changed from "
        '"carebridge.referral.referrals" to "carebridge.care.plans"'
    ]


def test_committed_schema_files_are_annotated() -> None:
    for entry in entries():
        committed = json.loads(
            (SCHEMA_DIR / f"{entry.event_type}.v{entry.version}.json").read_text()
        )
        assert committed == event_schema(entry)
        assert committed["x-event-type"] == entry.event_type
        assert committed["x-event-version"] == entry.version
        assert committed["x-topic"] == entry.topic.value
