"""Versioned message templates: every file loads, every step's education message reads for a
patient, carries its link and no PHI, and the follow-up reminder links to the repeat measures."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from carebridge_contracts import EarlierFollowUpOffered, SymptomsWorsened
from carebridge_notification import templates
from carebridge_notification.domain import education, membership, planning, rendering

BASE = "https://portal.test"
PATIENT_ID = "patient-8c2e"
STARTS = datetime(2026, 3, 9, 15, 0, tzinfo=UTC)
NOW = datetime(2026, 3, 1, tzinfo=UTC)

EDUCATION_PARAMS: dict[education.EducationStep, dict[str, str]] = {
    "assessment": {"phq9_band": "moderately_severe", "gad7_band": "mild"},
    "referral": {"modality": "CBT"},
    "match": {"modality": "EMDR"},
    "first_follow_up": {},
}
# What each step must explain (issue 17: psychiatry and the first visit; therapy and the
# matched modality; how the two clinicians work on one plan; what the scores mean).
EXPLAINS: dict[education.EducationStep, tuple[str, ...]] = {
    "assessment": ("Psychiatry is", "first visit", '"moderately severe"', '"mild"', "PHQ-9"),
    "referral": ("Therapy (psychotherapy)", "cognitive behavioral therapy (CBT)"),
    "match": ("EMDR therapy", "one treatment plan", "care team", "consent"),
    "first_follow_up": ("5 points", "remission", "response", "4 points", "earlier visit"),
}


def test_every_template_file_loads_and_fills_only_known_placeholders() -> None:
    catalogue = templates.catalogue()
    assert set(education.EDUCATION_STEPS) <= set(catalogue)
    for versions in catalogue.values():
        for template in versions.values():
            assert template.subject.is_valid() and template.body.is_valid()  # no stray "$"
            assert template.body.template.startswith("Hello,")
            names = template.subject.get_identifiers() + template.body.get_identifiers()
            assert all(re.fullmatch(r"[a-z0-9_]+", name) for name in names), names


@pytest.mark.parametrize("step", list(EDUCATION_PARAMS))
def test_each_education_step_has_its_message(step: education.EducationStep) -> None:
    delivery = education.education_delivery(step, PATIENT_ID, EDUCATION_PARAMS[step], NOW)
    assert (delivery.recipient_kind, delivery.recipient_id) == ("patient", PATIENT_ID)
    assert delivery.template == education.EDUCATION_TEMPLATES[step]
    assert delivery.params["template_version"] == "1"
    rendered = rendering.render(delivery.template, delivery.params, BASE + "/")
    for phrase in EXPLAINS[step]:
        assert phrase in rendered.body, phrase
    assert re.search(rf"{BASE}/learn/[a-z-]+\n", rendered.body)
    assert "988" in rendered.body  # every patient message carries the crisis line
    assert PATIENT_ID not in rendered.subject + rendered.body
    assert "${" not in rendered.body and "_" not in rendered.subject


def test_the_recorded_version_is_the_one_rendered(monkeypatch: pytest.MonkeyPatch) -> None:
    v1 = templates.template("education_after_referral", 1)
    v2 = templates.MessageTemplate(v1.name, 2, v1.subject, templates.Template("v2 ${link}"))
    catalogue = {**templates.catalogue(), v1.name: {1: v1, 2: v2}}
    monkeypatch.setattr(templates, "catalogue", lambda: catalogue)
    new = education.education_delivery("referral", PATIENT_ID, {"modality": "CBT"}, NOW)
    assert new.params["template_version"] == "2"
    assert rendering.render(new.template, new.params, BASE).body.startswith("v2 ")
    old = {**new.params, "template_version": "1"}
    assert "Therapy (psychotherapy)" in rendering.render(new.template, old, BASE).body


def test_a_follow_up_reminder_links_to_the_repeat_measures_without_scores() -> None:
    appointment = str(uuid.uuid4())
    params = {
        "appointment_id": appointment,
        "visit_type": "psychiatric_follow_up",
        "starts_at": STARTS.isoformat(),
        "offset_minutes": "1440",
    }
    rendered = rendering.render(
        planning.reminder_template(1440),
        params,
        BASE,
        outcome_measure_url="https://intake.test/v1/outcome-measures",
    )
    assert f"https://intake.test/v1/outcome-measures?appointment_id={appointment}" in rendered.body
    assert "PHQ-9" in rendered.body
    assert not re.search(r"\b(score|total|band)\b.*\d", rendered.body)
    therapy = rendering.render(
        planning.reminder_template(60), {**params, "visit_type": "therapy_session"}, BASE
    )
    assert "outcome-measures" not in therapy.body


def test_worsening_tells_each_member_once_with_a_link_and_no_score() -> None:
    team = [
        membership.Member("psy-1", "psychiatrist", uuid.uuid4(), NOW),
        membership.Member("thr-1", "therapist", uuid.uuid4(), NOW),
    ]
    event = SymptomsWorsened(
        patient_id=PATIENT_ID,
        assessment_id=uuid.uuid4(),
        previous_assessment_id=uuid.uuid4(),
        reasons=["phq9_rise"],
        phq9_total=17,
        phq9_band="moderately_severe",
        gad7_total=3,
        gad7_band="minimal",
        previous_phq9_total=12,
        previous_phq9_band="moderate",
        previous_gad7_total=3,
        previous_gad7_band="minimal",
        detected_at=NOW,
    )
    plan = planning.plan_symptoms_worsened(event, team, NOW)
    assert [d.recipient_id for d in plan.deliveries] == ["psy-1", "thr-1"]
    rendered = rendering.render(planning.SYMPTOMS_WORSENED, plan.deliveries[0].params, BASE)
    assert f"{BASE}/care-teams/{team[0].care_team_id}/plan" in rendered.body
    # (a word boundary: the link's UUID may hold the digits 1 and 7 side by side)
    assert not re.search(r"\b17\b", rendered.body) and "moderately" not in rendered.body


def test_the_earlier_follow_up_offer_names_both_times() -> None:
    event = EarlierFollowUpOffered(
        patient_id=PATIENT_ID,
        appointment_id=uuid.uuid4(),
        clinician_id="psy-1",
        assessment_id=uuid.uuid4(),
        booked_starts_at=STARTS,
        offered_starts_at=STARTS - timedelta(days=5),
        offered_ends_at=STARTS - timedelta(days=5) + timedelta(minutes=30),
    )
    [delivery] = planning.plan_earlier_follow_up(event, NOW).deliveries
    assert (delivery.recipient_kind, delivery.recipient_id) == ("clinician", "psy-1")
    rendered = rendering.render(delivery.template, delivery.params, BASE)
    assert "Monday 9 March 2026 at 15:00 UTC" in rendered.body
    assert "Wednesday 4 March 2026 at 15:00 UTC" in rendered.body
    assert f"{BASE}/appointments/{event.appointment_id}" in rendered.body


def test_the_safety_alert_now_covers_repeat_measures_and_v1_still_renders() -> None:
    params = {"assessment_id": str(uuid.uuid4())}
    latest = rendering.render(planning.SAFETY_REVIEW, params, BASE)
    assert "repeat questionnaire" in latest.body
    assert f"{BASE}/reviews/{params['assessment_id']}" in latest.body
    first = rendering.render(planning.SAFETY_REVIEW, {**params, "template_version": "1"}, BASE)
    assert "An intake assessment was flagged" in first.body
