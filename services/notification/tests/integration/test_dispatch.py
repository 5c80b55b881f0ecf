"""The dispatcher: SMTP retries and failures, urgent alerts first, contacts and channels."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from carebridge_contracts import NotificationFailed, NotificationSent, SafetyRiskFlagged
from carebridge_devstack.testing import sample_assessment
from carebridge_notification import dispatcher

pytestmark = pytest.mark.integration

DAY, SECOND = timedelta(days=1), timedelta(seconds=1)


def _by_template(rows: list[dict[str, Any]], template: str) -> dict[str, Any]:
    [row] = [r for r in rows if r["template"] == template]
    return row


async def test_smtp_failing_then_succeeding_sends_one_email(start_service: Any) -> None:
    async with start_service(dispatcher_enabled=False) as service:
        service.sink.handler.fail_first = 3
        patient, clinician = service.uid("p"), service.uid("c")
        patient_mail = f"{patient}@example.test"
        await service.put_contact("patient", patient, email=patient_mail)
        # The clinician has no contact: that delivery fails visibly, without touching SMTP.
        event = service.booking(patient, clinician, 2 * DAY)
        envelope = await service.publish(event)
        await service.wait_deliveries(4, appointment_id=str(event.appointment_id))

        rounds = 0
        for expected_backoff in (1, 2, 4, None):  # exponential from the initial 1 s
            before = service.clock.now()
            await service.drain()
            after = service.clock.now()
            rounds += 1
            rows = await service.deliveries(appointment_id=str(event.appointment_id))
            confirmation = _by_template(rows, "appointment_confirmation_patient")
            if expected_backoff is None:
                break
            assert confirmation["last_error_code"] == "smtp_451"
            next_at = datetime.fromisoformat(confirmation["next_attempt_at"])
            backoff = expected_backoff * SECOND
            assert before + backoff <= next_at <= after + backoff
            await service.advance(10 * SECOND)
        assert rounds == 4
        assert confirmation["status"] == "sent" and confirmation["attempts"] == 4
        assert service.sink.handler.failures_injected == 3
        [mail] = service.mail_to(patient_mail, event.appointment_id)
        assert mail.message["Message-ID"] == f"<{confirmation['id']}@clinic.test>"

        to_clinician = _by_template(rows, "appointment_confirmation_clinician")
        assert (to_clinician["status"], to_clinician["last_error_code"]) == ("failed", "no_contact")

        events = await service.notification_events(patient, expect=2)
        assert sorted((type(e).__name__, e.template) for e in events) == [
            ("NotificationFailed", "appointment_confirmation_clinician"),
            ("NotificationSent", "appointment_confirmation_patient"),
        ]
        failed = next(e for e in events if isinstance(e, NotificationFailed))
        assert (failed.error_code, failed.attempts, failed.recipient_id) == (
            "no_contact",
            1,
            clinician,
        )
        assert all(e.cause_event_id == envelope.event_id for e in events)


async def test_smtp_always_failing_ends_in_notification_failed(start_service: Any) -> None:
    async with start_service(dispatcher_enabled=False, delivery_max_attempts=3) as service:
        service.sink.handler.fail_first = 1_000_000
        patient, clinician = service.uid("p"), service.uid("c")
        patient_mail = f"{patient}@example.test"
        await service.put_contact("patient", patient, email=patient_mail)
        event = service.booking(patient, clinician, 2 * DAY)
        await service.publish(event)
        await service.wait_deliveries(4, appointment_id=str(event.appointment_id))

        for _ in range(5):
            await service.drain()
            await service.advance(10 * SECOND)
        rows = await service.deliveries(appointment_id=str(event.appointment_id))
        confirmation = _by_template(rows, "appointment_confirmation_patient")
        assert confirmation["status"] == "failed"
        assert (confirmation["attempts"], confirmation["last_error_code"]) == (3, "smtp_451")
        assert service.mail_to(patient_mail) == []

        events = await service.notification_events(patient, expect=2)
        [failed] = [
            e for e in events if isinstance(e, NotificationFailed) and e.recipient_kind == "patient"
        ]
        assert (failed.error_code, failed.attempts, failed.channel) == ("smtp_451", 3, "email")
        assert str(failed.notification_id) == confirmation["id"]
        assert not any(isinstance(e, NotificationSent) for e in events)


async def test_an_urgent_alert_goes_out_before_the_queue(start_service: Any) -> None:
    async with start_service(dispatcher_enabled=False) as service:
        on_call = service.settings.on_call_clinician_id
        on_call_mail = service.settings.on_call_bootstrap_primary_email  # the on-call route
        clinician = service.uid("c")
        await service.put_contact("clinician", clinician, email=f"{clinician}@example.test")
        normal_addresses = {f"{clinician}@example.test"}
        for _ in range(3):
            patient = service.uid("p")
            await service.put_contact("patient", patient, email=f"{patient}@example.test")
            normal_addresses.add(f"{patient}@example.test")
            event = service.booking(patient, clinician, 2 * DAY)
            await service.publish(event)
            await service.wait_deliveries(4, appointment_id=str(event.appointment_id))

        flagged_patient = service.uid("p")
        flag = SafetyRiskFlagged(
            patient_id=flagged_patient,
            assessment_id=uuid.uuid4(),
            state="NY",
            reasons=["cssrs_q4"],
            imminent=True,
            flagged_at=datetime.now(UTC),
        )
        await service.publish(flag)
        [alert] = await service.wait_deliveries(1, patient_id=flagged_patient)
        assert (alert["recipient_id"], alert["priority"]) == (on_call, 0)

        await service.dispatch_once()  # one round, with six normal deliveries queued before

        received = service.sink.messages
        # The on-call address also gets alerts for other runs' SafetyRiskFlagged on the shared
        # topic (this app consumes them too): count the alert about our flag only.
        ours = [
            m
            for m in received
            if normal_addresses & set(m.to)
            or (on_call_mail in m.to and str(flag.assessment_id) in m.body)
        ]
        assert len(ours) == 7
        first = ours[0]
        assert first.to == [on_call_mail]
        assert str(flag.assessment_id) in first.body
        assert first.subject == "Urgent: a patient needs clinical review"
        # Anything before it (alerts replayed from older events) is urgent too.
        before = received[: received.index(first)]
        assert all(m.subject.startswith("Urgent") for m in before)
        for clinical in ("suicid", "self-harm", "c-ssrs", "imminent"):
            assert clinical not in first.body.lower()


async def test_concurrent_dispatchers_send_each_delivery_once(start_service: Any) -> None:
    """Four dispatch rounds racing on separate connections, as replicas would (SKIP LOCKED)."""
    async with start_service(dispatcher_enabled=False) as service:
        clinician = service.uid("c")
        await service.put_contact("clinician", clinician, email=f"{clinician}@example.test")
        appointments = []
        for _ in range(5):
            patient = service.uid("p")
            await service.put_contact("patient", patient, email=f"{patient}@example.test")
            event = service.booking(patient, clinician, 2 * DAY)
            await service.publish(event)
            appointments.append((patient, event.appointment_id))
        for _, appointment in appointments:
            await service.wait_deliveries(4, appointment_id=str(appointment))

        await asyncio.gather(*(service.drain() for _ in range(4)))

        for patient, appointment in appointments:
            assert len(service.mail_to(f"{patient}@example.test", appointment)) == 1
            assert len(service.mail_to(f"{clinician}@example.test", appointment)) == 1
            rows = await service.deliveries(appointment_id=str(appointment))
            confirmations = [r for r in rows if r["kind"] == "confirmation"]
            assert [(r["status"], r["attempts"]) for r in confirmations] == [("sent", 1)] * 2


async def test_contacts_api_and_channels(start_service: Any) -> None:
    async with start_service(dev_clock=False) as service:
        client = service.client
        patient = service.uid("p")
        url = f"/v1/contacts/patient/{patient}"
        assert (await client.get(url)).status_code == 404
        assert (await client.get("/v1/_dev/clock")).status_code == 404
        assert (await client.get("/v1/deliveries")).status_code == 422

        bad = await client.put(url, json={"email": "not an address\r\nBcc: x@y.test"})
        assert bad.status_code == 422
        assert bad.json()["errors"][0]["field"] == "email"
        assert "Bcc" not in bad.text
        assert (await client.put(url, json={"email": "a@b.test", "name": "x"})).status_code == 422
        assert (await client.put(url, json={"preferred_channel": "sms"})).status_code == 422
        assert (
            await client.put("/v1/contacts/robot/x", json={"email": "a@b.test"})
        ).status_code == 422

        # The channel chosen at intake is remembered...
        assessment = sample_assessment(patient).model_copy(update={"preferred_channel": "sms"})
        await service.publish(assessment)

        async def channel_from_intake() -> bool:
            response = await client.get(url)
            return response.status_code == 200 and bool(
                response.json()["channel_source"] == "assessment"
            )

        await service.eventually(channel_from_intake, what="channel from AssessmentCompleted")
        contact = await service.put_contact("patient", patient, phone="+1 555 0100")
        assert (contact["preferred_channel"], contact["channel_source"]) == ("sms", "assessment")
        assert contact["email"] is None

        # ...an SMS-only recipient cannot be reached (only e-mail is delivered): visible failure.
        event = service.booking(patient, service.uid("c"), 2 * DAY)
        await service.publish(event)
        # Both confirmations fail: the clinician has no contact, the patient only a phone.
        rows = await service.wait_deliveries(
            2, status="failed", appointment_id=str(event.appointment_id)
        )
        confirmation = _by_template(rows, "appointment_confirmation_patient")
        assert (confirmation["channel"], confirmation["last_error_code"]) == (
            "sms",
            "channel_unsupported",
        )

        # A channel set through the API wins over a later assessment.
        contact = await service.put_contact(
            "patient", patient, email=f"{patient}@example.test", preferred_channel="email"
        )
        assert (contact["preferred_channel"], contact["channel_source"]) == ("email", "api")
        again = await service.publish(
            assessment.model_copy(update={"assessment_id": uuid.uuid4()}), sequence=2
        )

        async def applied() -> bool:
            async with service.ctx.pool.acquire() as conn:
                found = await conn.fetchval(
                    "SELECT true FROM inbox WHERE event_id = $1", again.event_id
                )
            return bool(found)

        await service.eventually(applied, what="the second AssessmentCompleted applied")
        got = (await client.get(url)).json()
        assert (got["preferred_channel"], got["channel_source"], got["phone"]) == (
            "email",
            "api",
            None,
        )
        assert got["email"] == f"{patient}@example.test"

        assert (await client.delete(url)).status_code == 204
        assert (await client.get(url)).status_code == 404
        assert (await client.delete(url)).status_code == 404


async def test_queued_deliveries_wake_the_dispatcher(start_service: Any) -> None:
    """The commit that queues a confirmation wakes a dispatcher worker (in-process, once the
    connection is released): with an hour between its polls, the e-mail can only go out
    that way."""
    async with start_service(dispatch_interval_ms=3_600_000) as service:
        patient = service.uid("p")
        patient_mail = f"{patient}@example.test"
        await service.put_contact("patient", patient, email=patient_mail)
        event = service.booking(patient, service.uid("c"), 2 * DAY)
        await service.publish(event)
        [mail] = await service.wait_mail(patient_mail, 1, about=event.appointment_id)
        # The sink has the e-mail before the dispatcher commits its claimed set: wait for that.
        rows = await service.wait_deliveries(
            1, status="sent", appointment_id=str(event.appointment_id)
        )
        confirmation = _by_template(rows, "appointment_confirmation_patient")
        assert mail.message["Message-ID"] == f"<{confirmation['id']}@clinic.test>"
        assert confirmation["status"] == "sent"


async def test_a_round_sends_claimed_sets_and_records_every_outcome(start_service: Any) -> None:
    """More due deliveries than one claimed set: one round handles them all, set after set,
    over one SMTP session; sent, retried and failed outcomes are each recorded once, and each
    final outcome is published once, caused by its booking."""
    async with start_service(dispatcher_enabled=False) as service:
        await service.drain()  # deliveries earlier tests left due: not this round's
        clinician = service.uid("c")  # no contact: every clinician confirmation fails
        bookings = []
        for _ in range(dispatcher.CLAIM_SIZE // 2 + 1):
            patient = service.uid("p")
            await service.put_contact("patient", patient, email=f"{patient}@example.test")
            event = service.booking(patient, clinician, 2 * DAY)
            envelope = await service.publish(event)
            bookings.append((patient, event.appointment_id, envelope.event_id))
        for _, appointment, _ in bookings:
            await service.wait_deliveries(4, appointment_id=str(appointment))

        service.sink.handler.fail_first = 1  # the round's first SMTP message: retried later
        handled = await service.dispatch_once()

        assert handled >= 2 * len(bookings) > dispatcher.CLAIM_SIZE
        statuses: list[tuple[str, int, str | None]] = []
        for patient, appointment, cause in bookings:
            rows = await service.deliveries(appointment_id=str(appointment))
            to_clinician = _by_template(rows, "appointment_confirmation_clinician")
            assert (to_clinician["status"], to_clinician["attempts"]) == ("failed", 1)
            assert to_clinician["last_error_code"] == "no_contact"
            to_patient = _by_template(rows, "appointment_confirmation_patient")
            statuses.append(
                (to_patient["status"], to_patient["attempts"], to_patient["last_error_code"])
            )
            sent = len(service.mail_to(f"{patient}@example.test", appointment))
            assert sent == (1 if to_patient["status"] == "sent" else 0)
            events = await service.notification_events(
                patient, expect=2 if to_patient["status"] == "sent" else 1
            )
            assert all(e.cause_event_id == cause for e in events)
            assert sorted(type(e).__name__ for e in events) == (
                ["NotificationFailed", "NotificationSent"]
                if to_patient["status"] == "sent"
                else ["NotificationFailed"]
            )
        assert sorted(statuses) == [("pending", 1, "smtp_451")] + [("sent", 1, None)] * (
            len(bookings) - 1
        )
