"""Appointment events in, e-mails out: once each, reminders on (dev) time, none after a cancel."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from typing import Any

import pytest

from carebridge_contracts import (
    AppointmentCancelled,
    AppointmentRescheduled,
    Envelope,
    NotificationSent,
)
from carebridge_devstack.testing import produce

pytestmark = pytest.mark.integration

DAY, HOUR, MINUTE = timedelta(days=1), timedelta(hours=1), timedelta(minutes=1)


async def _people(service: Any) -> tuple[str, str, str, str]:
    patient, clinician = service.uid("p"), service.uid("c")
    patient_mail, clinician_mail = f"{patient}@example.test", f"{clinician}@example.test"
    await service.put_contact("patient", patient, email=patient_mail)
    await service.put_contact("clinician", clinician, email=clinician_mail)
    return patient, clinician, patient_mail, clinician_mail


async def test_booking_confirms_to_each_once_whatever_the_copies(start_service: Any) -> None:
    async with start_service() as service:
        patient, clinician, patient_mail, clinician_mail = await _people(service)
        event = service.booking(patient, clinician, 2 * DAY)
        appointment = event.appointment_id
        bootstrap = service.settings.kafka_bootstrap_servers

        envelope = await service.publish(event)
        await produce(bootstrap, envelope)  # the same message produced twice
        republished = Envelope.wrap(  # a re-published copy: same event id, new envelope
            event,
            producer="booking",
            sequence=2,
            correlation_id=uuid.uuid4(),
            event_id=envelope.event_id,
        )
        await produce(bootstrap, republished)
        # Same patient, same topic: this one is consumed after every copy above.
        sentinel_event = service.booking(patient, clinician, 3 * DAY)
        sentinel = await service.publish(sentinel_event, sequence=3)
        await service.wait_deliveries(4, appointment_id=str(sentinel_event.appointment_id))
        await service.wait_mail(patient_mail, 1, about=appointment)
        await service.wait_mail(clinician_mail, 1, about=appointment)
        await service.wait_deliveries(4, status="sent", patient_id=patient)

        # Bypass the inbox: the unique key alone keeps a re-applied event from adding anything.
        async with service.ctx.pool.acquire() as conn:
            await conn.execute("DELETE FROM inbox WHERE event_id = $1", envelope.event_id)
        await produce(bootstrap, envelope)
        later_event = service.booking(patient, clinician, 4 * DAY)
        later = await service.publish(later_event, sequence=4)
        await service.wait_deliveries(4, appointment_id=str(later_event.appointment_id))
        async with service.ctx.pool.acquire() as conn:
            applied = await conn.fetchval(
                "SELECT count(*) FROM inbox WHERE event_id = $1", envelope.event_id
            )
        assert applied == 1  # the copy was applied again, and added nothing
        await asyncio.sleep(1.0)

        rows = await service.deliveries(appointment_id=str(appointment))
        assert sorted((r["recipient_kind"], r["template"], r["status"]) for r in rows) == [
            ("clinician", "appointment_confirmation_clinician", "sent"),
            ("patient", "appointment_confirmation_patient", "sent"),
            ("patient", "appointment_reminder_1440m", "pending"),
            ("patient", "appointment_reminder_60m", "pending"),
        ]
        assert all("email" not in key and "address" not in key for key in rows[0])
        [to_patient] = service.mail_to(patient_mail, appointment)
        [to_clinician] = service.mail_to(clinician_mail, appointment)
        assert to_patient.subject == "Your appointment is booked"
        assert to_clinician.subject == "New appointment booked"
        sent_ids = {r["id"] for r in rows if r["status"] == "sent"}
        assert {to_patient.message["Message-ID"], to_clinician.message["Message-ID"]} == {
            f"<{i}@clinic.test>" for i in sent_ids
        }

        # NotificationSent on the deliveries topic, once per delivery, caused by the booking.
        events = await service.notification_events(patient, expect=6)
        sent = [e for e in events if isinstance(e, NotificationSent)]
        of_booking = [e for e in sent if e.cause_event_id == envelope.event_id]
        assert sorted((e.recipient_kind, e.template) for e in of_booking) == [
            ("clinician", "appointment_confirmation_clinician"),
            ("patient", "appointment_confirmation_patient"),
        ]
        assert {str(e.notification_id) for e in of_booking} == sent_ids
        assert {e.recipient_id for e in of_booking} == {patient, clinician}
        assert {e.cause_event_id for e in sent} == {
            envelope.event_id,
            sentinel.event_id,
            later.event_id,
        }


async def test_reminders_fire_at_24h_and_1h_as_the_clock_moves(start_service: Any) -> None:
    async with start_service() as service:
        patient, clinician, patient_mail, _ = await _people(service)
        event = service.booking(patient, clinician, 2 * DAY)
        await service.publish(event)
        await service.wait_mail(patient_mail, 1, about=event.appointment_id)

        await service.advance(DAY + MINUTE)
        mails = await service.wait_mail(patient_mail, 2, about=event.appointment_id)
        assert mails[1].subject == "Reminder: your appointment in 24 hours"
        await asyncio.sleep(1.0)
        assert len(service.mail_to(patient_mail, event.appointment_id)) == 2  # not the 1 h one yet

        await service.advance(23 * HOUR)
        mails = await service.wait_mail(patient_mail, 3, about=event.appointment_id)
        assert mails[2].subject == "Reminder: your appointment in 1 hour"
        assert "first psychiatry appointment" in mails[2].body
        # The sink has the e-mail before the dispatcher commits its claimed set: wait for that.
        rows = await service.wait_deliveries(
            4, status="sent", appointment_id=str(event.appointment_id)
        )
        assert {r["status"] for r in rows} == {"sent"}
        await asyncio.sleep(1.0)
        assert len(service.mail_to(patient_mail, event.appointment_id)) == 3


async def test_a_cancelled_visit_sends_no_reminder(start_service: Any) -> None:
    async with start_service() as service:
        patient, clinician, patient_mail, clinician_mail = await _people(service)
        event = service.booking(patient, clinician, 2 * DAY)
        await service.publish(event)
        await service.wait_mail(patient_mail, 1, about=event.appointment_id)
        cancel = AppointmentCancelled(
            patient_id=patient,
            appointment_id=event.appointment_id,
            clinician_id=clinician,
            visit_type=event.visit_type,
            starts_at=event.starts_at,
            cancelled_by="patient",
            reason_code="patient_request",
        )
        await service.publish(cancel, sequence=2)
        mails = await service.wait_mail(patient_mail, 2, about=event.appointment_id)
        assert mails[1].subject == "Your appointment is cancelled"
        [_, notice] = await service.wait_mail(clinician_mail, 2, about=event.appointment_id)
        assert notice.subject == "Appointment cancelled"

        await service.advance(3 * DAY)
        await asyncio.sleep(1.0)
        await service.drain()
        assert len(service.mail_to(patient_mail, event.appointment_id)) == 2
        rows = await service.deliveries(appointment_id=str(event.appointment_id))
        reminders = [r for r in rows if r["kind"] == "reminder"]
        assert len(reminders) == 2
        assert {r["status"] for r in reminders} == {"cancelled"}


async def test_a_rescheduled_visit_gets_reminders_at_the_new_time_only(start_service: Any) -> None:
    async with start_service() as service:
        patient, clinician, patient_mail, clinician_mail = await _people(service)
        event = service.booking(patient, clinician, 2 * DAY)
        appointment = event.appointment_id
        await service.publish(event)
        await service.wait_mail(patient_mail, 1, about=appointment)
        moved = AppointmentRescheduled(
            patient_id=patient,
            appointment_id=appointment,
            clinician_id=clinician,
            visit_type=event.visit_type,
            previous_starts_at=event.starts_at,
            starts_at=event.starts_at + 2 * DAY,
            ends_at=event.ends_at + 2 * DAY,
        )
        await service.publish(moved, sequence=2)
        [_, notice] = await service.wait_mail(patient_mail, 2, about=appointment)
        assert notice.subject == "Your appointment has moved"
        await service.wait_mail(clinician_mail, 2, about=appointment)

        await service.advance(DAY + MINUTE)  # when the old 24 h reminder was due
        await asyncio.sleep(1.0)
        await service.drain()
        assert len(service.mail_to(patient_mail, appointment)) == 2

        await service.advance(2 * DAY)  # 24 h before the new time
        mails = await service.wait_mail(patient_mail, 3, about=appointment)
        assert mails[2].subject == "Reminder: your appointment in 24 hours"
        new_time = f"{moved.starts_at.day} {moved.starts_at:%B %Y at %H:%M} UTC"
        assert new_time in mails[2].body

        await service.advance(23 * HOUR)  # 1 h before the new time
        mails = await service.wait_mail(patient_mail, 4, about=appointment)
        assert mails[3].subject == "Reminder: your appointment in 1 hour"
        await asyncio.sleep(1.0)
        assert len(service.mail_to(patient_mail, appointment)) == 4

        rows = await service.deliveries(appointment_id=str(appointment))
        by_cause = {
            (r["cause_event_type"], r["template"]): r["status"]
            for r in rows
            if r["kind"] == "reminder"
        }
        assert by_cause == {
            ("AppointmentBooked", "appointment_reminder_1440m"): "cancelled",
            ("AppointmentBooked", "appointment_reminder_60m"): "cancelled",
            ("AppointmentRescheduled", "appointment_reminder_1440m"): "sent",
            ("AppointmentRescheduled", "appointment_reminder_60m"): "sent",
        }
