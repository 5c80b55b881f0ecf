"""Referral events in, e-mails out: a match to the patient and the therapist, plan changes to
the other care-team members, once each, and nothing to a therapist whose team ended."""

from __future__ import annotations

import asyncio
import re
import uuid
from datetime import timedelta
from typing import Any

import pytest

from carebridge_contracts import (
    CarePlanUpdated,
    CareTeamEnded,
    CareTeamFormed,
    ConsentGranted,
    ConsentRevoked,
    Envelope,
    NotificationSent,
    TherapistMatched,
)
from carebridge_contracts.events.care import PlanSection
from carebridge_contracts.events.common import ClinicianRole
from carebridge_contracts.events.referral import CareTeamEndReason
from carebridge_devstack.testing import produce, wrap

pytestmark = pytest.mark.integration

PLAN = "care_plan_updated"


class People:
    """A patient, a psychiatrist and two therapists with unique ids and e-mail contacts."""

    def __init__(self, service: Any) -> None:
        self.service = service
        self.patient = service.uid("p")
        self.psychiatrist = service.uid("psy")
        self.therapist = service.uid("ther")
        self.other_therapist = service.uid("ther")

    async def register(self) -> None:
        await self.service.put_contact("patient", self.patient, email=self.mail(self.patient))
        for clinician in (self.psychiatrist, self.therapist, self.other_therapist):
            await self.service.put_contact("clinician", clinician, email=self.mail(clinician))

    @staticmethod
    def mail(person: str) -> str:
        return f"{person}@example.test"

    def inbox(self, person: str, about: object | None = None) -> list[Any]:
        mails: list[Any] = self.service.mail_to(self.mail(person), about)
        return mails

    def formed(self, therapist: str | None = None, team: uuid.UUID | None = None) -> CareTeamFormed:
        return CareTeamFormed(
            patient_id=self.patient,
            care_team_id=team or uuid.uuid4(),
            psychiatrist_id=self.psychiatrist,
            therapist_id=therapist or self.therapist,
        )

    def ended(
        self,
        formed: CareTeamFormed,
        reason: CareTeamEndReason = "completed",
        referral_id: uuid.UUID | None = None,
    ) -> CareTeamEnded:
        return CareTeamEnded(
            patient_id=self.patient,
            care_team_id=formed.care_team_id,
            referral_id=referral_id or uuid.uuid4(),
            therapist_id=formed.therapist_id,
            psychiatrist_id=formed.psychiatrist_id,
            reason_code=reason,
        )

    def plan(
        self,
        version: int,
        author: str,
        role: ClinicianRole,
        sections: list[PlanSection] | None = None,
    ) -> CarePlanUpdated:
        return CarePlanUpdated(
            patient_id=self.patient,
            plan_version=version,
            changed_sections=sections or ["goals"],
            author_id=author,
            author_role=role,
        )

    def granted(self) -> ConsentGranted:
        return ConsentGranted(
            patient_id=self.patient, consent_id=uuid.uuid4(), scope="care_plan_sharing"
        )

    def revoked(self) -> ConsentRevoked:
        return ConsentRevoked(
            patient_id=self.patient, consent_id=uuid.uuid4(), scope="care_plan_sharing"
        )

    async def members(self) -> set[str]:
        async with self.service.ctx.pool.acquire() as conn:
            rows = await conn.fetch(
                "SELECT clinician_id FROM care_team_members WHERE patient_id = $1", self.patient
            )
        return {r["clinician_id"] for r in rows}

    async def plan_rows(self) -> list[tuple[str, str, str]]:
        """(recipient id, status, cause event id) of every plan-change delivery, sorted."""
        rows = await self.service.deliveries(patient_id=self.patient)
        return sorted(
            (r["recipient_id"], r["status"], r["cause_event_id"])
            for r in rows
            if r["template"] == PLAN
        )


async def _settle(service: Any) -> None:
    """Let anything still in flight land, then send whatever is due."""
    await asyncio.sleep(1.0)
    await service.drain()


async def test_a_match_tells_the_patient_and_the_therapist(start_service: Any) -> None:
    async with start_service() as service:
        people = People(service)
        await people.register()
        match = TherapistMatched(
            patient_id=people.patient,
            referral_id=uuid.uuid4(),
            therapist_id=people.therapist,
            psychiatrist_id=people.psychiatrist,
            modality="DBT",
            state="NY",
        )
        envelope = await service.send(match)

        match_link = f"/referrals/{match.referral_id}"
        [to_patient] = await service.wait_mail(people.mail(people.patient), 1, about=match_link)
        [to_therapist] = await service.wait_mail(people.mail(people.therapist), 1)
        assert to_patient.subject == "A therapist has been matched for you"
        assert "book your first therapy appointment" in to_patient.body
        assert f"/referrals/{match.referral_id}" in to_patient.body
        assert "988" in to_patient.body
        assert "DBT" not in to_patient.body
        assert to_therapist.subject == "A therapy referral has been matched to you"
        assert "dialectical behavior therapy (DBT)" in to_therapist.body
        assert f"/referrals/{match.referral_id}" in to_therapist.body
        for mail in (to_patient, to_therapist):
            assert people.patient not in mail.body and people.therapist not in mail.body

        rows = await service.wait_deliveries(3, status="sent", patient_id=people.patient)
        assert sorted((r["recipient_kind"], r["recipient_id"], r["template"]) for r in rows) == [
            ("clinician", people.therapist, "therapist_matched_therapist"),
            ("patient", people.patient, "education_after_match"),  # issue 17: education
            ("patient", people.patient, "therapist_matched_patient"),
        ]
        events = await service.notification_events(people.patient, expect=3)
        assert all(isinstance(e, NotificationSent) for e in events)
        assert {e.cause_event_id for e in events} == {envelope.event_id}
        assert {e.cause_event_type for e in events} == {"TherapistMatched"}

        await _settle(service)
        assert people.inbox(people.psychiatrist) == []  # the match is not theirs to hear of
        assert len(people.inbox(people.therapist)) == 1
        assert len(people.inbox(people.patient)) == 2  # the match and its education message


async def test_a_plan_change_goes_to_the_other_member_only(start_service: Any) -> None:
    async with start_service(care_plan_notice_delay_seconds=0) as service:
        people = People(service)
        await people.register()
        team = people.formed()
        await service.send(team, sequence=1)
        assert await people.members() == {people.psychiatrist, people.therapist}

        by_psychiatrist = people.plan(
            1, people.psychiatrist, "psychiatrist", ["goals", "medication_summary"]
        )
        first = await service.send(by_psychiatrist, sequence=1)
        [to_therapist] = await service.wait_mail(people.mail(people.therapist), 1)
        assert to_therapist.subject == "A shared care plan has changed"
        assert "version 1" in to_therapist.body
        assert "changed: treatment goals and medication summary." in to_therapist.body
        assert f"/care-teams/{team.care_team_id}/plan" in to_therapist.body
        for person in (people.patient, people.psychiatrist, people.therapist):
            assert person not in to_therapist.body

        by_therapist = people.plan(2, people.therapist, "therapist", ["therapy_frequency"])
        second = await service.send(by_therapist, sequence=2)
        [to_psychiatrist] = await service.wait_mail(people.mail(people.psychiatrist), 1)
        assert "version 2" in to_psychiatrist.body
        assert "changed: therapy frequency." in to_psychiatrist.body

        await _settle(service)
        assert len(people.inbox(people.therapist)) == 1  # not told of their own change
        assert len(people.inbox(people.psychiatrist)) == 1
        assert people.inbox(people.patient) == []
        assert await people.plan_rows() == sorted(
            [
                (people.therapist, "sent", str(first.event_id)),
                (people.psychiatrist, "sent", str(second.event_id)),
            ]
        )
        events = await service.notification_events(people.patient, expect=2)
        assert sorted(
            (e.recipient_id, e.template, str(e.cause_event_id)) for e in events
        ) == sorted(
            [
                (people.therapist, PLAN, str(first.event_id)),
                (people.psychiatrist, PLAN, str(second.event_id)),
            ]
        )


async def test_a_plan_change_produced_twice_is_one_email(start_service: Any) -> None:
    async with start_service(care_plan_notice_delay_seconds=0) as service:
        people = People(service)
        await people.register()
        await service.send(people.formed(), sequence=1)
        bootstrap = service.settings.kafka_bootstrap_servers

        change = people.plan(1, people.psychiatrist, "psychiatrist")
        envelope = await service.send(change, sequence=1)
        await produce(bootstrap, envelope)  # the same message produced again
        republished = Envelope.wrap(  # a re-published copy: same event id, new envelope
            change,
            producer="referral",
            sequence=2,
            correlation_id=uuid.uuid4(),
            event_id=envelope.event_id,
        )
        await produce(bootstrap, republished)
        # Same patient, same topic: applied after every copy above.
        await service.send(people.plan(2, people.psychiatrist, "psychiatrist"), sequence=3)
        await service.wait_mail(people.mail(people.therapist), 2)

        # Bypass the inbox: the deliveries' unique key alone keeps a re-applied event from adding.
        async with service.ctx.pool.acquire() as conn:
            await conn.execute("DELETE FROM inbox WHERE event_id = $1", envelope.event_id)
        await service.deliver(envelope)
        await service.send(people.plan(3, people.psychiatrist, "psychiatrist"), sequence=4)
        await service.wait_mail(people.mail(people.therapist), 3)

        await _settle(service)
        mails = people.inbox(people.therapist)
        versions = [re.search(r"version ([0-9]+)", m.body) for m in mails]
        assert sorted(v.group(1) for v in versions if v) == ["1", "2", "3"]
        rows = await people.plan_rows()
        assert [r for r in rows if r[2] == str(envelope.event_id)] == [
            (people.therapist, "sent", str(envelope.event_id))
        ]
        assert people.inbox(people.psychiatrist) == []


async def test_a_therapist_whose_team_ended_hears_of_no_plan_change(start_service: Any) -> None:
    async with start_service(care_plan_notice_delay_seconds=0) as service:
        people = People(service)
        await people.register()
        first_team = people.formed()
        await service.send(first_team, sequence=1)
        await service.send(people.ended(first_team), sequence=2)
        assert await people.members() == {people.psychiatrist}  # the psychiatrist stays

        lone = await service.send(people.plan(1, people.psychiatrist, "psychiatrist"))
        await _settle(service)
        assert await people.plan_rows() == []  # nobody else on the team

        second_team = people.formed(therapist=people.other_therapist)
        await service.send(second_team, sequence=3)
        assert await people.members() == {people.psychiatrist, people.other_therapist}
        by_psychiatrist = await service.send(
            people.plan(2, people.psychiatrist, "psychiatrist"), sequence=2
        )
        by_new_therapist = await service.send(
            people.plan(3, people.other_therapist, "therapist"), sequence=3
        )
        [to_new] = await service.wait_mail(people.mail(people.other_therapist), 1)
        assert f"/care-teams/{second_team.care_team_id}/plan" in to_new.body
        await service.wait_mail(people.mail(people.psychiatrist), 1)

        await _settle(service)
        assert people.inbox(people.therapist) == []
        assert len(people.inbox(people.other_therapist)) == 1
        assert len(people.inbox(people.psychiatrist)) == 1
        assert await people.plan_rows() == sorted(
            [
                (people.other_therapist, "sent", str(by_psychiatrist.event_id)),
                (people.psychiatrist, "sent", str(by_new_therapist.event_id)),
            ]
        )
        assert str(lone.event_id) not in {r[2] for r in await people.plan_rows()}


async def test_an_author_outside_the_team_leaves_every_member_told(start_service: Any) -> None:
    async with start_service(care_plan_notice_delay_seconds=0) as service:
        people = People(service)
        await people.register()
        await service.send(people.formed(), sequence=1)
        stranger = service.uid("psy")  # e.g. a psychiatrist referral knows of, without an event
        change = await service.send(people.plan(1, stranger, "psychiatrist"))
        await service.wait_mail(people.mail(people.therapist), 1)
        await service.wait_mail(people.mail(people.psychiatrist), 1)
        await _settle(service)
        assert await people.plan_rows() == sorted(
            [
                (people.psychiatrist, "sent", str(change.event_id)),
                (people.therapist, "sent", str(change.event_id)),
            ]
        )


async def test_a_change_applied_before_the_team_formed_still_reaches_the_therapist(
    start_service: Any,
) -> None:
    """Plan changes and team events travel on different topics: no order between them."""
    async with start_service(care_plan_notice_delay_seconds=0) as service:
        people = People(service)
        await people.register()
        formed = wrap(people.formed(), people.patient, 1)  # happened first...
        change = wrap(people.plan(2, people.psychiatrist, "psychiatrist"), people.patient, 2)
        await service.deliver(change)  # ...but the change is applied first
        assert await people.plan_rows() == []
        await service.deliver(formed)
        await service.wait_mail(people.mail(people.therapist), 1)
        await _settle(service)
        assert await people.plan_rows() == [(people.therapist, "sent", str(change.event_id))]
        assert people.inbox(people.psychiatrist) == []

        # A change made before the team formed is not news to a therapist who joined later.
        older = wrap(people.plan(1, people.psychiatrist, "psychiatrist"), people.patient, 1)
        older = older.model_copy(update={"occurred_at": formed.occurred_at - timedelta(hours=1)})
        await service.deliver(older)
        await _settle(service)
        assert str(older.event_id) not in {r[2] for r in await people.plan_rows()}


async def test_an_end_applied_after_a_later_change_still_stops_its_notice(
    start_service: Any,
) -> None:
    """A notice waits `care_plan_notice_delay_seconds`, so a removal applied meanwhile (the team
    ended before the change, but the referrals topic lagged) cancels it."""
    async with start_service(care_plan_notice_delay_seconds=30) as service:
        people = People(service)
        await people.register()
        team = people.formed()
        await service.send(team, sequence=1)

        end = wrap(people.ended(team), people.patient, 2)  # the team ended first...
        change = wrap(people.plan(1, people.psychiatrist, "psychiatrist"), people.patient, 1)
        await service.deliver(change)  # ...but the change is applied first: a notice is queued
        await _settle(service)
        assert await people.plan_rows() == [(people.therapist, "pending", str(change.event_id))]

        await service.deliver(end)
        assert await people.members() == {people.psychiatrist}
        await service.advance(timedelta(minutes=5))
        await _settle(service)
        assert await people.plan_rows() == [(people.therapist, "cancelled", str(change.event_id))]
        assert people.inbox(people.therapist) == []


async def test_a_revoked_referral_cancels_its_queued_match_messages(start_service: Any) -> None:
    async with start_service(dispatcher_enabled=False) as service:
        people = People(service)
        await people.register()
        match = TherapistMatched(
            patient_id=people.patient,
            referral_id=uuid.uuid4(),
            therapist_id=people.therapist,
            modality="CBT",
            state="CA",
        )
        team = people.formed()
        await service.send(match, sequence=1)
        await service.send(team, sequence=2)
        await service.send(people.ended(team, "revoked", match.referral_id), sequence=3)
        await service.drain()

        rows = await service.deliveries(patient_id=people.patient)
        assert sorted((r["template"], r["status"]) for r in rows) == [
            ("education_after_match", "cancelled"),  # issue 17: nor explain a match undone
            ("therapist_matched_patient", "cancelled"),
            ("therapist_matched_therapist", "cancelled"),
        ]
        assert people.inbox(people.patient) == people.inbox(people.therapist) == []


async def test_a_therapist_hears_of_no_plan_change_while_consent_is_revoked(
    start_service: Any,
) -> None:
    """Referral stops the therapist from opening the plan while the patient's care_plan_sharing
    consent is revoked; the psychiatrist's access does not depend on it."""
    async with start_service(care_plan_notice_delay_seconds=0) as service:
        people = People(service)
        await people.register()
        team = people.formed()
        await service.send(team, sequence=1)
        await service.send(people.revoked(), sequence=1)

        withheld = await service.send(people.plan(1, people.psychiatrist, "psychiatrist"))
        by_therapist = await service.send(people.plan(2, people.therapist, "therapist"), sequence=2)
        await service.wait_mail(people.mail(people.psychiatrist), 1)
        await _settle(service)
        assert people.inbox(people.therapist) == []
        assert await people.plan_rows() == [
            (people.psychiatrist, "sent", str(by_therapist.event_id))
        ]

        await service.send(people.granted(), sequence=2)
        told = await service.send(people.plan(3, people.psychiatrist, "psychiatrist"), sequence=3)
        [to_therapist] = await service.wait_mail(people.mail(people.therapist), 1)
        assert "version 3" in to_therapist.body
        assert f"/care-teams/{team.care_team_id}/plan" in to_therapist.body

        await _settle(service)
        assert len(people.inbox(people.therapist)) == 1  # nothing of the revoked period
        assert len(people.inbox(people.psychiatrist)) == 1
        rows = await people.plan_rows()
        assert str(withheld.event_id) not in {r[2] for r in rows}
        assert rows == sorted(
            [
                (people.psychiatrist, "sent", str(by_therapist.event_id)),
                (people.therapist, "sent", str(told.event_id)),
            ]
        )


async def test_a_revocation_cancels_the_therapists_queued_plan_notices(
    start_service: Any,
) -> None:
    async with start_service(care_plan_notice_delay_seconds=30) as service:
        people = People(service)
        await people.register()
        await service.send(people.formed(), sequence=1)
        await service.send(people.granted(), sequence=1)
        change = await service.send(people.plan(1, people.psychiatrist, "psychiatrist"))
        await _settle(service)
        assert await people.plan_rows() == [(people.therapist, "pending", str(change.event_id))]

        await service.send(people.revoked(), sequence=2)
        await service.advance(timedelta(minutes=5))
        await _settle(service)
        assert await people.plan_rows() == [(people.therapist, "cancelled", str(change.event_id))]
        assert people.inbox(people.therapist) == []
        assert await people.members() == {people.psychiatrist, people.therapist}
