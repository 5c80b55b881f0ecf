"""Use cases of the shared treatment plan: care-team access, consent, optimistic versions,
CarePlanUpdated; the outcome trend shown with it.

The plan's content stays in this service's database: events carry the version, the names of
the changed sections and the author, never the content, and nothing here logs it.
"""

from __future__ import annotations

from carebridge_contracts import CarePlanUpdated, OutcomeMeasured
from carebridge_contracts.events.common import ClinicianRole
from carebridge_referral import domain, store
from carebridge_referral.models import CarePlanContent
from carebridge_referral.settings import ReferralSettings
from carebridge_shared import audit
from carebridge_shared.auth import Principal, Target, log_refusal, require_patient_access
from carebridge_shared.consumer import EventContext
from carebridge_shared.context import ServiceContext
from carebridge_shared.db import Connection
from carebridge_shared.logging import get_logger
from carebridge_shared.refusals import Refusal, Refused, refuse

log = get_logger(__name__)

EMPTY_CONTENT = CarePlanContent().sections()


def _blank(patient_id: str) -> domain.CarePlan:
    return domain.CarePlan(patient_id=patient_id, version=0, content=EMPTY_CONTENT)


async def _authorise(conn: Connection, patient_id: str, caller: Principal) -> ClinicianRole:
    access = domain.plan_access(await store.plan_team(conn, patient_id), caller.sub)
    if isinstance(access, Refusal):
        log_refusal(caller, access.code, Target("care_plan", patient_id, patient_id))
        raise Refused(access)
    return access


async def read(
    ctx: ServiceContext[ReferralSettings], patient_id: str, caller: Principal
) -> tuple[domain.CarePlan, domain.OutcomeTrend]:
    """The current plan (version 0 and empty when nobody wrote one yet) and the patient's
    outcome trend, for the patient and their care team (each read audited)."""
    async with ctx.pool.acquire() as conn, conn.transaction():
        if caller.role == "patient":
            target = Target("care_plan", patient_id, patient_id)
            await require_patient_access(caller, patient_id, target=target)
        else:
            await _authorise(conn, patient_id, caller)
        plan = await store.get_plan(conn, patient_id)
        trend = domain.outcome_trend(await store.outcome_trend(conn, patient_id))
        await audit.record_many(
            conn,
            caller,
            "read",
            [
                audit.Access("care_plan", patient_id, patient_id),
                audit.Access("outcome_trend", patient_id, patient_id),
            ],
        )
    return plan or _blank(patient_id), trend


async def outcome_measured(ctx: EventContext[ReferralSettings], event: OutcomeMeasured) -> None:
    """A repeat measure intake scored joins the outcome trend shown with the plan."""
    await store.record_repeat_measure(ctx.conn, event)


def _precondition_required() -> Refused:
    return refuse(
        "precondition_required",
        'Send If-Match with the version you read (e.g. If-Match: "3"; "0" creates the '
        "plan), or a version field.",
        428,
    )


def version_conflict(current: int) -> Refused:
    refused = refuse(
        "version_conflict",
        "The care plan changed since you read it; read it again and reapply your change.",
        current_version=current,
    )
    refused.headers["ETag"] = domain.etag(current)
    return refused


async def write(
    ctx: ServiceContext[ReferralSettings],
    patient_id: str,
    caller: Principal,
    expected_version: int | None,
    content: CarePlanContent,
) -> domain.CarePlan:
    """Replace the plan if it is still at `expected_version` (428 without one, 409 when stale);
    an identical plan is a no-op that keeps the version."""
    now = ctx.clock.now()
    clinician_id = caller.sub
    async with ctx.pool.acquire() as conn, conn.transaction():
        role = await _authorise(conn, patient_id, caller)
        if expected_version is None:
            raise _precondition_required()
        current = await store.get_plan(conn, patient_id, for_update=True) or _blank(patient_id)
        if current.version != expected_version:
            raise version_conflict(current.version)
        sections = content.sections()
        changed = domain.changed_sections(current.content, sections)
        if not changed:
            return current
        plan = domain.CarePlan(
            patient_id=patient_id,
            version=current.version + 1,
            content=sections,
            author_id=clinician_id,
            author_role=role,
            updated_at=now,
        )
        if not await store.save_plan(conn, plan, changed=list(changed)):
            created = await store.get_plan(conn, patient_id)
            raise version_conflict(created.version if created else 0)
        await ctx.outbox.add(
            conn,
            CarePlanUpdated(
                patient_id=patient_id,
                plan_version=plan.version,
                changed_sections=changed,
                author_id=clinician_id,
                author_role=role,
            ),
        )
        await audit.record(conn, caller, "update", "care_plan", patient_id, patient_id)
    log.info(
        "care_plan_updated",
        version=plan.version,
        changed_sections=changed,
        author_role=role,
    )
    return plan
