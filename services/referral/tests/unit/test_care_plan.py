"""Care plan rules: the section diff, who may open the plan (consent), versions, the body."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from carebridge_referral.domain import (
    PlanTeam,
    changed_sections,
    etag,
    parse_version_tag,
    plan_access,
)
from carebridge_referral.models import CarePlanContent, CarePlanWrite, TherapyFrequency
from carebridge_shared.refusals import Refusal

EMPTY = CarePlanContent().sections()
FULL = CarePlanContent(
    goals=["sleep 7h", "return to work"],
    diagnosis_codes=["F33.1", "F41.1"],
    medication_summary="sertraline 100 mg daily",
    therapy_modality="CBT",
    therapy_frequency=TherapyFrequency(sessions_per_month=4),
).sections()


@pytest.mark.parametrize(
    ("before", "after", "expected"),
    [
        (EMPTY, EMPTY, []),
        (FULL, FULL, []),
        (
            EMPTY,
            FULL,
            [
                "goals",
                "diagnosis_codes",
                "medication_summary",
                "therapy_modality",
                "therapy_frequency",
            ],
        ),
        (FULL, {**FULL, "goals": ["sleep 7h"]}, ["goals"]),
        (FULL, {**FULL, "goals": ["return to work", "sleep 7h"]}, ["goals"]),  # order matters
        (FULL, {**FULL, "therapy_frequency": {"sessions_per_month": 2}}, ["therapy_frequency"]),
        (
            FULL,
            {**FULL, "medication_summary": None, "therapy_modality": "DBT"},
            ["medication_summary", "therapy_modality"],
        ),
        ({}, {"diagnosis_codes": ["F32.0"]}, ["diagnosis_codes"]),
        # a section missing on one side counts as None
        ({"therapy_modality": None}, {}, []),
    ],
)
def test_changed_sections(
    before: dict[str, Any], after: dict[str, Any], expected: list[str]
) -> None:
    assert changed_sections(before, after) == expected


TEAM = PlanTeam(psychiatrist_id="psy-1", therapist_id="thr-1", consent_granted=True)


@pytest.mark.parametrize(
    ("team", "caller", "expected"),
    [
        (TEAM, "psy-1", "psychiatrist"),
        (TEAM, "thr-1", "therapist"),
        (TEAM, "thr-2", "not_in_care_team"),
        (TEAM, "psy-2", "not_in_care_team"),
        # without consent the therapist is refused, the psychiatrist is not
        (PlanTeam("psy-1", "thr-1", consent_granted=False), "thr-1", "consent_required"),
        (PlanTeam("psy-1", "thr-1", consent_granted=False), "psy-1", "psychiatrist"),
        # no care team yet: only the patient's psychiatrist
        (PlanTeam("psy-1", None, consent_granted=True), "psy-1", "psychiatrist"),
        (PlanTeam("psy-1", None, consent_granted=True), "thr-1", "not_in_care_team"),
        # nobody known: nobody
        (PlanTeam(None, None, consent_granted=True), "psy-1", "not_in_care_team"),
        # a team whose psychiatrist is not known yet still has its therapist
        (PlanTeam(None, "thr-1", consent_granted=True), "thr-1", "therapist"),
    ],
)
def test_plan_access(team: PlanTeam, caller: str, expected: str) -> None:
    access = plan_access(team, caller)
    if isinstance(access, Refusal):
        assert access.status == 403
        assert access.code == expected
    else:
        assert access == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ('"3"', 3),
        ("3", 3),
        ('"12"', 12),
        ('W/"12"', None),
        (' "0" ', 0),
        ("*", None),
        ('"abc"', None),
        ('"-1"', None),
        ("", None),
        ('"²"', None),
        ('"1234567890"', None),
    ],
)
def test_parse_version_tag(raw: str, expected: int | None) -> None:
    assert parse_version_tag(raw) == expected


def test_etag_round_trips() -> None:
    assert parse_version_tag(etag(7)) == 7


@pytest.mark.parametrize(
    "field", ["notes", "psychotherapy_notes", "session_notes", "progress_note"]
)
def test_notes_are_rejected(field: str) -> None:
    with pytest.raises(ValidationError) as info:
        CarePlanWrite.model_validate({"goals": ["sleep"], field: "anything"})
    assert info.value.errors()[0]["type"] == "extra_forbidden"


@pytest.mark.parametrize(
    "code", ["F33.1", "F41.1", "F32", "Z63.0", "F10.239", "F43.10", "U07.1", "F32.A"]
)
def test_icd10_codes_are_accepted(code: str) -> None:
    assert CarePlanContent(diagnosis_codes=[code]).diagnosis_codes == [code]


@pytest.mark.parametrize(
    "code", ["f33.1", "33.1", "F3", "F33.", "F33.12345", "F33 1", "depression", "F33.1\n"]
)
def test_non_icd10_codes_are_rejected(code: str) -> None:
    with pytest.raises(ValidationError):
        CarePlanContent(diagnosis_codes=[code])


@pytest.mark.parametrize(
    "body",
    [
        {"goals": [""]},
        {"goals": ["x" * 201]},
        {"goals": ["g"] * 21},
        {"diagnosis_codes": ["F33.1", "F33.1"]},
        {"therapy_frequency": {"sessions_per_month": 0}},
        {"therapy_frequency": {"sessions_per_month": 4, "note": "x"}},
        {"therapy_modality": "hypnosis"},
        {"version": -1},
    ],
)
def test_invalid_plans_are_rejected(body: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        CarePlanWrite.model_validate(body)


def test_write_body_splits_version_from_content() -> None:
    write = CarePlanWrite.model_validate({"goals": ["  sleep  "], "version": 2})
    assert write.version == 2
    assert write.content().sections() == {**EMPTY, "goals": ["sleep"]}
