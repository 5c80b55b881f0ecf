"""Referral side, pure: match messages, care-team membership, plan-change recipients and text."""

from __future__ import annotations

import email
import email.policy
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from carebridge_contracts import CarePlanUpdated, CareTeamEnded, CareTeamFormed, TherapistMatched
from carebridge_contracts.events.care import PlanSection
from carebridge_contracts.events.common import ClinicianRole
from carebridge_notification import mailer
from carebridge_notification.domain import membership, planning, rendering
from carebridge_notification.domain.membership import Member

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
EARLIER = NOW - timedelta(days=30)
PATIENT = "patient-4411"
PSYCHIATRIST = "psy-17"
THERAPIST = "ther-23"
OTHER_THERAPIST = "ther-99"
OTHER_PSYCHIATRIST = "psy-55"
TEAM = uuid.UUID("00000000-0000-4000-8000-0000000000c1")
OLD_TEAM = uuid.UUID("00000000-0000-4000-8000-0000000000c0")
REFERRAL = uuid.UUID("00000000-0000-4000-8000-0000000000e1")
ADDRESS = "clinician@example.test"
PEOPLE = (PATIENT, PSYCHIATRIST, THERAPIST, OTHER_THERAPIST, OTHER_PSYCHIATRIST)


def formed(psychiatrist: str | None = PSYCHIATRIST, therapist: str = THERAPIST) -> CareTeamFormed:
    return CareTeamFormed(
        patient_id=PATIENT, care_team_id=TEAM, psychiatrist_id=psychiatrist, therapist_id=therapist
    )


def ended(therapist: str = THERAPIST, team: uuid.UUID = TEAM) -> CareTeamEnded:
    return CareTeamEnded(
        patient_id=PATIENT,
        care_team_id=team,
        referral_id=REFERRAL,
        therapist_id=therapist,
        psychiatrist_id=PSYCHIATRIST,
        reason_code="completed",
    )


def member(
    clinician: str, role: ClinicianRole, team: uuid.UUID = TEAM, at: datetime = EARLIER
) -> Member:
    return Member(clinician, role, team, at)


def ids(members: tuple[Member, ...]) -> set[str]:
    return {m.clinician_id for m in members}


def plan_change(
    author: str = PSYCHIATRIST, sections: tuple[PlanSection, ...] = ("goals",), at: datetime = NOW
) -> membership.PlanChange:
    role: ClinicianRole = "therapist" if author.startswith("ther") else "psychiatrist"
    event = CarePlanUpdated(
        patient_id=PATIENT,
        plan_version=4,
        changed_sections=list(sections),
        author_id=author,
        author_role=role,
    )
    return membership.PlanChange.of(event, uuid.uuid4(), uuid.uuid4(), at)


# --- membership -----------------------------------------------------------------------------


def test_a_formed_team_adds_its_therapist_and_psychiatrist() -> None:
    change = membership.team_formed([], formed(), NOW)
    assert sorted((m.clinician_id, m.role) for m in change.joins) == [
        (PSYCHIATRIST, "psychiatrist"),
        (THERAPIST, "therapist"),
    ]
    assert {m.care_team_id for m in change.joins} == {TEAM}
    assert {m.joined_at for m in change.joins} == {NOW}
    assert change.leaves == ()


def test_a_team_without_psychiatrist_keeps_the_known_one() -> None:
    current = [member(PSYCHIATRIST, "psychiatrist", OLD_TEAM)]
    change = membership.team_formed(current, formed(psychiatrist=None), NOW)
    assert ids(change.joins) == {THERAPIST}
    assert change.leaves == ()


def test_a_new_team_replaces_the_therapist_and_a_named_psychiatrist() -> None:
    current = [
        member(OTHER_PSYCHIATRIST, "psychiatrist", OLD_TEAM),
        member(OTHER_THERAPIST, "therapist", OLD_TEAM),
    ]
    change = membership.team_formed(current, formed(), NOW)
    assert ids(change.joins) == {PSYCHIATRIST, THERAPIST}
    assert ids(change.leaves) == {OTHER_PSYCHIATRIST, OTHER_THERAPIST}


def test_the_same_members_named_again_stay_without_leaving() -> None:
    current = [member(PSYCHIATRIST, "psychiatrist"), member(THERAPIST, "therapist")]
    change = membership.team_formed(current, formed(), NOW)
    assert ids(change.joins) == {PSYCHIATRIST, THERAPIST}
    assert change.leaves == ()


def test_an_ended_team_removes_its_therapist_and_keeps_the_psychiatrist() -> None:
    current = [member(PSYCHIATRIST, "psychiatrist"), member(THERAPIST, "therapist")]
    change = membership.team_ended(current, ended())
    assert ids(change.leaves) == {THERAPIST}
    assert change.joins == ()


@pytest.mark.parametrize(
    "event",
    [
        ended(therapist=OTHER_THERAPIST),  # not this patient's therapist
        ended(team=OLD_TEAM),  # the therapist is on a newer team now
        ended(therapist=PSYCHIATRIST),  # only a therapist leaves with the team
    ],
)
def test_an_end_that_does_not_match_removes_nobody(event: CareTeamEnded) -> None:
    current = [member(PSYCHIATRIST, "psychiatrist"), member(THERAPIST, "therapist")]
    assert membership.team_ended(current, event).leaves == ()


# --- who hears of a plan change -------------------------------------------------------------

TEAM_OF_TWO = [member(PSYCHIATRIST, "psychiatrist"), member(THERAPIST, "therapist")]


@pytest.mark.parametrize(
    ("author", "expected"), [(PSYCHIATRIST, {THERAPIST}), (THERAPIST, {PSYCHIATRIST})]
)
def test_recipients_are_the_members_but_the_author(author: str, expected: set[str]) -> None:
    recipients = membership.plan_change_recipients(TEAM_OF_TWO, author, NOW)
    assert ids(recipients.members) == expected
    assert recipients.author_is_member


def test_an_author_who_is_no_known_member_leaves_everyone_to_tell() -> None:
    recipients = membership.plan_change_recipients(TEAM_OF_TWO, OTHER_PSYCHIATRIST, NOW)
    assert ids(recipients.members) == {PSYCHIATRIST, THERAPIST}
    assert not recipients.author_is_member


def test_a_member_who_joined_after_the_change_is_not_told_of_it() -> None:
    team = [member(PSYCHIATRIST, "psychiatrist"), member(THERAPIST, "therapist", at=NOW)]
    before_joining = NOW - timedelta(seconds=1)
    assert (
        ids(membership.plan_change_recipients(team, PSYCHIATRIST, before_joining).members) == set()
    )
    assert ids(membership.plan_change_recipients(team, PSYCHIATRIST, NOW).members) == {THERAPIST}


def test_no_team_no_recipient() -> None:
    recipients = membership.plan_change_recipients([], PSYCHIATRIST, NOW)
    assert recipients.members == () and not recipients.author_is_member


GRANTED = membership.Consent(granted=True, updated_at=EARLIER)
REVOKED = membership.Consent(granted=False, updated_at=NOW)


@pytest.mark.parametrize(
    ("sharing", "expected"),
    [
        (None, {PSYCHIATRIST, THERAPIST}),  # no consent event seen yet: as before
        (GRANTED, {PSYCHIATRIST, THERAPIST}),
        (REVOKED, {PSYCHIATRIST}),  # the psychiatrist's access does not depend on consent
    ],
)
def test_a_therapist_hears_of_no_plan_change_while_sharing_is_revoked(
    sharing: membership.Consent | None, expected: set[str]
) -> None:
    assert ids(membership.consented(TEAM_OF_TWO, sharing)) == expected
    assert membership.may_hear_of_plan_changes("psychiatrist", sharing)
    assert membership.may_hear_of_plan_changes("therapist", sharing) == (THERAPIST in expected)


def test_one_notice_per_recipient_with_ids_and_codes_only() -> None:
    change = plan_change(sections=("goals", "medication_summary"))
    recipients = [member(THERAPIST, "therapist"), member(OTHER_THERAPIST, "therapist", OLD_TEAM)]
    due = NOW + timedelta(seconds=10)
    plan = planning.plan_care_plan_updated(change, recipients, due)
    assert [(d.recipient_kind, d.recipient_id) for d in plan.deliveries] == [
        ("clinician", THERAPIST),
        ("clinician", OTHER_THERAPIST),
    ]
    assert {d.template for d in plan.deliveries} == {planning.CARE_PLAN_UPDATED}
    assert {d.due_at for d in plan.deliveries} == {due}
    assert not plan.cancel_pending
    first = plan.deliveries[0].params
    assert dict(first) == {
        "care_team_id": str(TEAM),
        "plan_version": "4",
        "changed_sections": "goals,medication_summary",
    }
    values = {v for d in plan.deliveries for v in d.params.values()}
    assert not any(person in value for person in PEOPLE for value in values)


def test_a_match_tells_the_patient_and_the_therapist() -> None:
    event = TherapistMatched(
        patient_id=PATIENT,
        referral_id=REFERRAL,
        therapist_id=THERAPIST,
        psychiatrist_id=PSYCHIATRIST,
        modality="DBT",
        state="NY",
    )
    plan = planning.plan_therapist_matched(event, NOW)
    assert [(d.recipient_kind, d.recipient_id, d.template) for d in plan.deliveries] == [
        ("patient", PATIENT, planning.THERAPIST_MATCHED_PATIENT),
        ("clinician", THERAPIST, planning.THERAPIST_MATCHED_THERAPIST),
    ]
    assert {d.due_at for d in plan.deliveries} == {NOW}
    assert {d.priority for d in plan.deliveries} == {planning.PRIORITY_NORMAL}
    for delivery in plan.deliveries:
        assert dict(delivery.params) == {"referral_id": str(REFERRAL), "modality": "DBT"}


# --- what the messages say ------------------------------------------------------------------

MATCH_PARAMS = {"referral_id": str(REFERRAL), "modality": "CBT"}
PLAN_PARAMS = {
    "care_team_id": str(TEAM),
    "plan_version": "7",
    "changed_sections": "goals,diagnosis_codes,therapy_frequency",
}


def test_the_patient_hears_of_the_match_and_how_to_book() -> None:
    rendered = rendering.render(planning.THERAPIST_MATCHED_PATIENT, MATCH_PARAMS, "https://p.test/")
    assert rendered.subject == "A therapist has been matched for you"
    assert rendered.body.startswith("Hello,")
    assert "book your first therapy appointment" in rendered.body
    assert f"https://p.test/referrals/{REFERRAL}" in rendered.body
    assert "988" in rendered.body  # patient messages end with the crisis line
    assert "CBT" not in rendered.body and "cognitive" not in rendered.body


def test_the_therapist_hears_of_the_match_with_the_modality_in_words() -> None:
    rendered = rendering.render(
        planning.THERAPIST_MATCHED_THERAPIST, MATCH_PARAMS, "https://p.test"
    )
    assert rendered.subject == "A therapy referral has been matched to you"
    assert "cognitive behavioral therapy (CBT)" in rendered.body
    assert f"https://p.test/referrals/{REFERRAL}" in rendered.body
    assert "988" not in rendered.body


def test_a_plan_change_names_sections_in_words_version_and_link() -> None:
    rendered = rendering.render(planning.CARE_PLAN_UPDATED, PLAN_PARAMS, "https://p.test")
    assert rendered.subject == "A shared care plan has changed"
    assert "version 7" in rendered.body
    assert "changed: treatment goals, diagnoses and therapy frequency." in rendered.body
    assert f"https://p.test/care-teams/{TEAM}/plan" in rendered.body
    assert "diagnosis_codes" not in rendered.body


@pytest.mark.parametrize(
    ("codes", "words"),
    [
        (["goals"], "treatment goals"),
        (["goals", "therapy_modality"], "treatment goals and therapy approach"),
        (
            ["medication_summary", "goals", "therapy_frequency"],
            "medication summary, treatment goals and therapy frequency",
        ),
        (["some_new_section"], "some new section"),  # a later code still reads as words
    ],
)
def test_sections_in_plain_words(codes: list[str], words: str) -> None:
    assert rendering.in_plain_words(codes, rendering.SECTION_WORDS) == words


@pytest.mark.parametrize("params", [{**PLAN_PARAMS, "plan_version": "x"}, {"plan_version": "1"}])
def test_bad_plan_params_are_a_template_error(params: dict[str, str]) -> None:
    with pytest.raises((KeyError, ValueError)):
        rendering.render(planning.CARE_PLAN_UPDATED, params, "https://p.test")


@pytest.mark.parametrize(
    ("template", "params"),
    [
        (planning.THERAPIST_MATCHED_PATIENT, MATCH_PARAMS),
        (planning.THERAPIST_MATCHED_THERAPIST, MATCH_PARAMS),
        (planning.CARE_PLAN_UPDATED, PLAN_PARAMS),
    ],
)
def test_messages_carry_no_person_and_no_plan_content(
    template: str, params: dict[str, str]
) -> None:
    rendered = rendering.render(template, params, "https://p.test")
    built = mailer.build_email(
        uuid.uuid4(),
        sender="carebridge@clinic.test",
        to=ADDRESS,
        rendered=rendered,
        template=template,
        date=NOW,
    )
    message = email.message_from_bytes(built.data, policy=email.policy.default)
    assert message["To"] == ADDRESS
    headers_without_to = "".join(f"{k}: {v}\n" for k, v in message.items() if k != "To")
    text = headers_without_to + message.get_body().get_content()
    assert ADDRESS not in text
    assert not any(person in text for person in PEOPLE)
    # Only section names reach a message; the plan's own words never do (nor are they known).
    for clinical in ("dose", "f32", "diagnosis:", "sertraline", "phq", "gad-7"):
        assert clinical not in text.lower()
