"""Message text: generic address, time and visit type in plain words, no PHI but the To header."""

from __future__ import annotations

import email
import email.policy
import uuid
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import aiosmtplib
import pytest

from carebridge_contracts import (
    AppointmentBooked,
    AppointmentCancelled,
    AppointmentRescheduled,
    SafetyRiskFlagged,
)
from carebridge_notification import mailer
from carebridge_notification.domain import planning, rendering

STARTS = datetime(2026, 3, 9, 15, 0, tzinfo=UTC)
PARAMS = {
    "appointment_id": "3f1f6c1e-0000-4000-8000-000000000001",
    "visit_type": "psychiatric_follow_up",
    "starts_at": STARTS.isoformat(),
    "previous_starts_at": datetime(2026, 3, 8, 9, 30, tzinfo=UTC).isoformat(),
}
ADDRESS = "someone@example.test"
PATIENT_ID = "patient-8c2e"
CLINICIAN_ID = "clinician-77"

TEMPLATES = [
    planning.BOOKED_PATIENT,
    planning.BOOKED_CLINICIAN,
    planning.RESCHEDULED_PATIENT,
    planning.RESCHEDULED_CLINICIAN,
    planning.CANCELLED_PATIENT,
    planning.CANCELLED_CLINICIAN,
    planning.reminder_template(1440),
    planning.reminder_template(60),
]


@pytest.mark.parametrize("template", TEMPLATES)
def test_appointment_messages(template: str) -> None:
    rendered = rendering.render(template, PARAMS, "https://portal.test/")
    assert rendered.body.startswith("Hello,")
    assert "Monday 9 March 2026 at 15:00 UTC" in rendered.body
    assert "psychiatry follow-up appointment" in rendered.body
    assert f"https://portal.test/appointments/{PARAMS['appointment_id']}" in rendered.body
    assert ("988" in rendered.body) == template.endswith(("_patient", "m"))


@pytest.mark.parametrize(
    ("template", "subject", "line"),
    [
        (planning.reminder_template(1440), "Reminder: your appointment in 24 hours", "reminder"),
        (planning.reminder_template(60), "Reminder: your appointment in 1 hour", "reminder"),
        (planning.reminder_template(90), "Reminder: your appointment in 90 minutes", "reminder"),
        (
            planning.RESCHEDULED_PATIENT,
            "Your appointment has moved",
            "Sunday 8 March 2026 at 09:30",
        ),
        (planning.CANCELLED_PATIENT, "Your appointment is cancelled", "no reminders"),
        (planning.BOOKED_CLINICIAN, "New appointment booked", "with a patient"),
    ],
)
def test_subjects_and_lines(template: str, subject: str, line: str) -> None:
    rendered = rendering.render(template, PARAMS, "https://portal.test")
    assert rendered.subject == subject
    assert line in rendered.body


def test_safety_alert_carries_a_link_and_no_clinical_detail() -> None:
    assessment = str(uuid.uuid4())
    rendered = rendering.render(
        planning.SAFETY_REVIEW, {"assessment_id": assessment}, "https://p.test"
    )
    assert rendered.subject.startswith("Urgent")
    assert f"https://p.test/reviews/{assessment}" in rendered.body
    for clinical in ("suicid", "self-harm", "phq", "c-ssrs", "cssrs", "imminent", "item 9"):
        assert clinical not in rendered.body.lower()


def test_unknown_template_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown template"):
        rendering.render("nope", PARAMS, "https://p.test")


@pytest.mark.parametrize("template", [*TEMPLATES, planning.SAFETY_REVIEW])
def test_email_has_the_address_in_the_to_header_only(template: str) -> None:
    params = {**PARAMS, "assessment_id": str(uuid.uuid4())}
    delivery_id = uuid.uuid4()
    rendered = rendering.render(template, params, "https://p.test")
    built = mailer.build_email(
        delivery_id,
        sender="carebridge@clinic.test",
        to=ADDRESS,
        rendered=rendered,
        template=template,
        date=STARTS,
    )
    message = email.message_from_bytes(built.data, policy=email.policy.default)
    assert message["To"] == ADDRESS
    assert message["Message-ID"] == f"<{delivery_id}@clinic.test>"
    assert message["X-Carebridge-Template"] == template
    headers_without_to = "".join(f"{k}: {v}\n" for k, v in message.items() if k != "To")
    text = headers_without_to + message.get_body().get_content()
    assert ADDRESS not in text
    # Ids that identify people are not in the message; nor are names (none are known here).
    assert PATIENT_ID not in text and CLINICIAN_ID not in text


def test_stored_params_hold_ids_times_and_codes_only() -> None:
    """What a delivery keeps for rendering never names the patient or the clinician."""
    now = datetime(2026, 3, 1, tzinfo=UTC)
    appointment = uuid.uuid4()
    common = {"patient_id": PATIENT_ID, "appointment_id": appointment, "clinician_id": CLINICIAN_ID}
    plans = [
        planning.plan_booked(
            AppointmentBooked(
                **common,
                clinician_role="therapist",
                visit_type="therapy_intake",
                state="CA",
                starts_at=STARTS,
                ends_at=STARTS + timedelta(minutes=53),
            ),
            now,
            [1440, 60],
        ),
        planning.plan_rescheduled(
            AppointmentRescheduled(
                **common,
                visit_type="therapy_session",
                previous_starts_at=STARTS,
                starts_at=STARTS + timedelta(days=1),
                ends_at=STARTS + timedelta(days=1, minutes=53),
            ),
            now,
            [1440, 60],
        ),
        planning.plan_cancelled(
            AppointmentCancelled(
                **common,
                visit_type="therapy_session",
                starts_at=STARTS,
                cancelled_by="clinician",
                reason_code="clinician_unavailable",
            ),
            now,
        ),
        planning.plan_safety_alert(
            SafetyRiskFlagged(
                patient_id=PATIENT_ID,
                assessment_id=uuid.uuid4(),
                state="CA",
                reasons=["phq9_item9"],
                imminent=False,
                flagged_at=now,
            ),
            "on-call",
            now,
        ),
    ]
    params = [d.params for plan in plans for d in plan.deliveries]
    assert {key for p in params for key in p} <= {
        "appointment_id",
        "visit_type",
        "starts_at",
        "previous_starts_at",
        "offset_minutes",
        "assessment_id",
    }
    values = {value for p in params for value in p.values()}
    assert PATIENT_ID not in values and CLINICIAN_ID not in values


@pytest.mark.parametrize(
    ("exc", "code"),
    [
        (aiosmtplib.SMTPDataError(451, "try later for x@y.test"), "smtp_451"),
        (aiosmtplib.SMTPResponseException(554, "no"), "smtp_554"),
        (
            aiosmtplib.SMTPRecipientsRefused(
                [aiosmtplib.SMTPRecipientRefused(450, "busy", "x@y.test")]
            ),
            "smtp_450",
        ),
        (aiosmtplib.SMTPConnectError("refused"), "smtp_unreachable"),
        (aiosmtplib.SMTPReadTimeoutError("slow"), "smtp_timeout"),
        (ConnectionRefusedError(), "smtp_unreachable"),
        (aiosmtplib.SMTPNotSupported("x"), "smtp_error"),
    ],
)
def test_error_codes_never_carry_server_text(exc: BaseException, code: str) -> None:
    assert mailer.error_code(exc) == code


def _built(**overrides: str) -> mailer.Email:
    rendered = rendering.render(planning.BOOKED_PATIENT, PARAMS, "https://p.test")
    fields = {"sender": "carebridge@clinic.test", "to": ADDRESS, "template": "t", **overrides}
    if "subject" in overrides:
        rendered = type(rendered)(subject=fields.pop("subject"), body=rendered.body)
    return mailer.build_email(uuid.uuid4(), rendered=rendered, date=STARTS, **fields)


def test_an_email_reads_back_as_sent_with_non_ascii_text_encoded() -> None:
    built = _built(subject="Rendez-vous confirmé")
    assert built.data.isascii() and not built.international
    message = email.message_from_bytes(built.data, policy=email.policy.default)
    assert message["Subject"] == "Rendez-vous confirmé"
    assert message["To"] == ADDRESS and built.to == ADDRESS
    assert message["Date"] == format_datetime(STARTS)
    assert "https://p.test" in message.get_body().get_content()


def test_a_non_ascii_address_is_sent_with_smtputf8() -> None:
    built = _built(to="jörg@example.test")
    assert built.international and built.mail_options == ["SMTPUTF8"]
    message = email.message_from_bytes(built.data, policy=email.policy.default)
    assert message["To"] == "jörg@example.test"


@pytest.mark.parametrize("subject", ["a\nBcc: someone@else.test", "a\rb"])
def test_a_header_value_that_would_break_the_header_block_is_refused(subject: str) -> None:
    with pytest.raises(ValueError, match="Subject header"):
        _built(subject=subject)
