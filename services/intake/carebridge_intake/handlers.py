"""Event subscribers of the intake service: who treats whom, so that only a patient's own
clinicians may read their assessments (ADR 0012)."""

from __future__ import annotations

from carebridge_contracts import AppointmentBooked, CareTeamFormed, TherapistMatched
from carebridge_intake import store
from carebridge_shared.consumer import ConsumerRuntime, EventContext
from carebridge_shared.service import ServiceContext


def register(runtime: ConsumerRuntime, context: ServiceContext) -> None:
    @runtime.on(AppointmentBooked)
    async def appointment_booked(event: AppointmentBooked, ctx: EventContext) -> None:
        await store.record_relationship(
            ctx.conn, event.patient_id, event.clinician_id, "appointment"
        )

    @runtime.on(TherapistMatched)
    async def therapist_matched(event: TherapistMatched, ctx: EventContext) -> None:
        await store.record_relationship(
            ctx.conn, event.patient_id, event.therapist_id, "therapist_match"
        )

    @runtime.on(CareTeamFormed)
    async def care_team_formed(event: CareTeamFormed, ctx: EventContext) -> None:
        for clinician in (event.psychiatrist_id, event.therapist_id):
            if clinician is not None:
                await store.record_relationship(ctx.conn, event.patient_id, clinician, "care_team")
