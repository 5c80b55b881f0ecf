"""A patient's journey through intake, booking and notification running as processes."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime, timedelta

import pytest

from carebridge_contracts import Envelope, Topic
from carebridge_devstack.demo import CareClient, timeline, wait_for_mail, wait_until
from carebridge_devstack.smtp_sink import ReceivedMail
from carebridge_devstack.system import LocalSystem
from carebridge_devstack.testing import read_topic

pytestmark = [pytest.mark.integration, pytest.mark.journey]


def _patient() -> str:
    return f"j-{uuid.uuid4().hex[:10]}"


def test_assessment_booking_confirmation_and_reminders(
    system: LocalSystem, client: CareClient
) -> None:
    patient = _patient()
    patient_email = f"{patient}@patients.example"
    client.set_contact("patient", patient, patient_email)

    assessment = client.assess(patient, state="NY")
    assert assessment["phq9_band"] == "moderate" and assessment["safety"] is None
    client.wait_eligible(patient)

    # Earlier tests may have moved notification's clock ahead: book after its "now".
    slot = client.first_slot(
        "NY", "initial_psychiatric_evaluation", after=client.notification_now()
    )
    licensed = client.ok("booking", "GET", f"/v1/clinicians/{slot['clinician_id']}")
    assert "NY" in [licence["state"] for licence in licensed["licences"]]
    clinician_email = f"{slot['clinician_id']}.{patient}@clinicians.example"
    client.set_contact("clinician", slot["clinician_id"], clinician_email)

    appointment = client.book(patient, slot)
    assert appointment["status"] == "booked"
    starts_at = datetime.fromisoformat(appointment["starts_at"])
    assert starts_at - datetime.fromisoformat(slot["starts_at"]) == timedelta(0)
    assert datetime.fromisoformat(appointment["ends_at"]) - starts_at == timedelta(minutes=60)

    confirmation = wait_for_visit_mail(system, patient_email, "patient confirmation")
    assert len(wait_for_mail(system.mailbox, clinician_email, "clinician confirmation")) == 1
    assert patient not in confirmation[0].body, "no identifiers needed in the message body"

    # Move notification's clock to just past the 24 h reminder, then past the 1 h one.
    now = client.notification_now()
    to_first = (starts_at - timedelta(hours=24) - now).total_seconds() + 5
    if to_first > 0:
        client.advance_notification_clock(to_first)
        wait_for_visit_mail(system, patient_email, "24 h reminder", count=2)
    now = client.notification_now()
    client.advance_notification_clock((starts_at - timedelta(hours=1) - now).total_seconds() + 5)
    expected = 3 if to_first > 0 else 2
    mails = wait_for_visit_mail(system, patient_email, "1 h reminder", count=expected)
    assert len(mails) == expected, "exactly one confirmation and one mail per reminder"
    # and the education messages of the steps taken (issue 17): after the assessment, and
    # after the referral intake opened (therapy interest)
    educated = [m for m in system.mailbox.to(patient_email) if m.is_education]

    events = asyncio.run(timeline(client_bootstrap(system), patient))
    by_topic: dict[str, list[int]] = {}
    for entry in sorted(events, key=lambda e: (e.topic, e.offset)):
        by_topic.setdefault(entry.topic, []).append(entry.sequence)
    assert by_topic[str(Topic.ASSESSMENTS)] == [1]
    assert by_topic[str(Topic.APPOINTMENTS)] == [1]
    sent = by_topic[str(Topic.DELIVERIES)]
    assert sent == list(range(1, len(sent) + 1)), "per-patient order holds on the topic"
    types = [e.type for e in events]
    assert types.index("AssessmentCompleted") < types.index("AppointmentBooked")
    assert types.count("NotificationSent") == 1 + expected + len(educated), (
        "clinician confirmation + patient's + education"
    )


def test_cancelled_visit_sends_no_reminder(system: LocalSystem, client: CareClient) -> None:
    patient = _patient()
    patient_email = f"{patient}@patients.example"
    client.set_contact("patient", patient, patient_email)
    client.assess(patient, state="NY")
    client.wait_eligible(patient)
    slot = client.first_slot(
        "NY", "initial_psychiatric_evaluation", after=client.notification_now()
    )
    client.set_contact("clinician", slot["clinician_id"], f"{slot['clinician_id']}@c.example")
    appointment = client.book(patient, slot)
    wait_for_visit_mail(system, patient_email, "confirmation")
    client.ok(
        "booking", "POST", f"/v1/appointments/{appointment['id']}/cancel",
        json={"cancelled_by": "patient", "reason_code": "patient_request"},
    )  # fmt: skip
    wait_for_visit_mail(system, patient_email, "cancellation notice", count=2)
    deliveries = client.ok(
        "notification", "GET", "/v1/deliveries", params={"appointment_id": appointment["id"]}
    )
    reminders = [d for d in _items(deliveries) if d["kind"] == "reminder"]
    assert reminders and all(d["status"] == "cancelled" for d in reminders)
    client.advance_notification_clock(8 * 24 * 3600)
    asyncio.run(asyncio.sleep(2.0))
    assert len(visit_mails(system, patient_email)) == 2, "a cancelled visit sends no reminder"


def test_imminent_risk_blocks_self_booking_and_alerts_on_call(
    system: LocalSystem, client: CareClient
) -> None:
    patient = _patient()
    on_call_email = f"on-call.{patient}@clinicians.example"
    client.set_on_call_route(on_call_email, f"escalation.{patient}@clinicians.example")
    result = client.assess(
        patient,
        state="NY",
        cssrs={
            "q1_wish_to_be_dead": True, "q2_suicidal_thoughts": True, "q3_method": True,
            "q4_intent": True, "q5_plan": False, "q6_behaviour": False,
        },
    )  # fmt: skip
    assert result["safety"]["imminent"] is True
    assert "988" in result["safety"]["crisis_message"]
    eligibility = client.wait_eligible(patient)
    assert eligibility["urgent_review_required"] is True

    slot = client.first_slot("NY", "initial_psychiatric_evaluation")
    refused = client.call("booking", "POST", "/v1/appointments", json={
        "patient_id": patient, "clinician_id": slot["clinician_id"],
        "visit_type": slot["visit_type"], "starts_at": slot["starts_at"], "state": "NY",
    })  # fmt: skip
    assert refused.status_code == 409
    assert refused.json()["code"] == "urgent_review_required"
    assert "988" in refused.json()["message"]
    alert = wait_for_mail(system.mailbox, on_call_email, "urgent review alert")
    assert patient not in alert[0].subject


def test_licensure_is_checked_at_booking_across_processes(
    system: LocalSystem, client: CareClient
) -> None:
    patient = _patient()
    client.assess(patient, state="CA")
    client.wait_eligible(patient)
    ny_only = client.first_slot("NY", "initial_psychiatric_evaluation")
    clinician = client.ok("booking", "GET", f"/v1/clinicians/{ny_only['clinician_id']}")
    if "CA" in [licence["state"] for licence in clinician["licences"]]:
        pytest.fail("seed data changed: the first NY psychiatrist is also licensed in CA")
    refused = client.call("booking", "POST", "/v1/appointments", json={
        "patient_id": patient, "clinician_id": ny_only["clinician_id"],
        "visit_type": ny_only["visit_type"], "starts_at": ny_only["starts_at"], "state": "CA",
    })  # fmt: skip
    assert refused.status_code == 409
    assert refused.json()["code"] == "clinician_not_licensed_in_state"
    events = asyncio.run(
        read_topic(
            client_bootstrap(system), str(Topic.APPOINTMENTS),
            # an absence check reads the whole (shared) topic; it stops at the end offsets
            where=lambda r: r.key == patient.encode(), timeout=60,
        )
    )  # fmt: skip
    assert [Envelope.from_bytes(r.value).type for r in events] == []


def visit_mails(system: LocalSystem, address: str) -> list[ReceivedMail]:
    """Messages about visits (the patient also gets education messages, issue 17)."""
    return [m for m in system.mailbox.to(address) if not m.is_education]


def wait_for_visit_mail(
    system: LocalSystem, address: str, what: str, count: int = 1
) -> list[ReceivedMail]:
    def probe() -> list[ReceivedMail] | None:
        found = visit_mails(system, address)
        return found if len(found) >= count else None

    return wait_until(what, probe, 60)


def client_bootstrap(system: LocalSystem) -> str:
    return system.bootstrap


def _items(payload: object) -> list[dict[str, object]]:
    if isinstance(payload, list):
        return payload
    assert isinstance(payload, dict)
    for key in ("deliveries", "items"):
        if key in payload:
            found = payload[key]
            assert isinstance(found, list)
            return found
    raise AssertionError(f"unexpected deliveries payload: {list(payload)}")
