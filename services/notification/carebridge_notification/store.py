"""SQL of the notification service (tables in its own schema: contacts, deliveries,
care_team_members, care_plan_changes, consents)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, cast

import asyncpg

from carebridge_contracts.events.common import Channel
from carebridge_notification.domain.education import EDUCATION_TEMPLATES
from carebridge_notification.domain.membership import Consent, Member, PlanChange
from carebridge_notification.domain.planning import (
    CARE_PLAN_UPDATED,
    THERAPIST_MATCHED_PATIENT,
    THERAPIST_MATCHED_THERAPIST,
    DeliveryKind,
    DeliveryStatus,
    PlannedDelivery,
    RecipientKind,
)
from carebridge_notification.domain.routing import ContactInfo
from carebridge_shared import tracing, wakeup
from carebridge_shared.db import Connection
from carebridge_shared.projection import Compared, Copied, Projection

# What notification's handlers derive from events (`carebridge projection rebuild notification`
# replays them into a scratch schema, never dispatched, and compares). Of a delivery, what was
# planned for whom because of which event: not its id (random; the e-mail Message-ID), status,
# attempts or send times (the dispatcher's, at send time), due_at but a reminder's (the
# handler's clock), created_at, updated_at or traceparent. Contacts are the API's; handlers read
# them to pick a channel, so a rebuild copies them with the address and phone masked.
PROJECTION = Projection(
    compared=(
        Compared(
            "deliveries",
            key=("cause_event_id", "recipient_kind", "recipient_id", "channel", "template"),
            columns=(
                "cause_event_type",
                "correlation_id",
                "patient_id",
                "appointment_id",
                "kind",
                "params",
                "priority",
            ),
            expressions=(("reminder_due_at", "CASE WHEN kind = 'reminder' THEN due_at END"),),
        ),
        Compared(
            "care_team_members",
            key=("patient_id", "clinician_id"),
            columns=("role", "care_team_id", "joined_at", "joined_event_id"),
        ),
        Compared(
            "care_plan_changes",
            key=("event_id",),
            columns=(
                "patient_id",
                "correlation_id",
                "plan_version",
                "changed_sections",
                "author_id",
                "author_role",
                "occurred_at",
            ),
        ),
        Compared("consents", key=("patient_id", "scope"), columns=("granted", "updated_at")),
        Compared(
            "education_records",
            key=("patient_id", "step"),
            columns=("template", "template_version", "cause_event_id"),
        ),
    ),
    copied=(Copied("contacts", masked=("email", "phone")),),
)

# --- contacts -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Contact:
    recipient_kind: RecipientKind
    recipient_id: str
    email: str | None
    phone: str | None
    preferred_channel: Channel
    channel_source: str
    updated_at: datetime

    @property
    def info(self) -> ContactInfo:
        return ContactInfo(self.email, self.phone, self.preferred_channel)


_CONTACT_COLUMNS = (
    "recipient_kind, recipient_id, email, phone, preferred_channel, channel_source, updated_at"
)


def _contact(row: asyncpg.Record) -> Contact:
    return Contact(**dict(row.items()))


async def get_contact(conn: Connection, kind: str, recipient_id: str) -> Contact | None:
    row = await conn.fetchrow(
        f"SELECT {_CONTACT_COLUMNS} FROM contacts WHERE recipient_kind = $1 AND recipient_id = $2",
        kind,
        recipient_id,
    )
    return _contact(row) if row else None


ContactKey = tuple[str, str]  # (recipient_kind, recipient_id)


async def get_contacts(conn: Connection, keys: Iterable[ContactKey]) -> dict[ContactKey, Contact]:
    """The contacts of several recipients in one statement (those without one are absent)."""
    wanted = sorted(set(keys))
    rows = await conn.fetch(
        f"SELECT {_CONTACT_COLUMNS} FROM contacts"
        " WHERE (recipient_kind, recipient_id) IN"
        " (SELECT * FROM unnest($1::text[], $2::text[]))",
        [kind for kind, _ in wanted],
        [recipient_id for _, recipient_id in wanted],
    )
    contacts = [_contact(row) for row in rows]
    return {(c.recipient_kind, c.recipient_id): c for c in contacts}


async def put_contact(
    conn: Connection,
    kind: str,
    recipient_id: str,
    *,
    email: str | None,
    phone: str | None,
    preferred_channel: Channel | None,
) -> Contact:
    """Replace the address and phone; a channel given here wins over one from an assessment,
    an omitted channel keeps what is stored."""
    row = await conn.fetchrow(
        "INSERT INTO contacts AS c (recipient_kind, recipient_id, email, phone,"
        " preferred_channel, channel_source)"
        " VALUES ($1, $2, $3, $4, COALESCE($5, 'email'),"
        " CASE WHEN $5::text IS NULL THEN 'default' ELSE 'api' END)"
        " ON CONFLICT (recipient_kind, recipient_id) DO UPDATE SET"
        " email = excluded.email, phone = excluded.phone,"
        " preferred_channel = COALESCE($5, c.preferred_channel),"
        " channel_source = CASE WHEN $5::text IS NULL THEN c.channel_source ELSE 'api' END,"
        " updated_at = now()"
        f" RETURNING {_CONTACT_COLUMNS}",
        kind,
        recipient_id,
        email,
        phone,
        preferred_channel,
    )
    if row is None:
        raise RuntimeError("INSERT ... RETURNING returned no row")
    return _contact(row)


async def delete_contact(conn: Connection, kind: str, recipient_id: str) -> bool:
    deleted = await conn.fetchval(
        "DELETE FROM contacts WHERE recipient_kind = $1 AND recipient_id = $2 RETURNING true",
        kind,
        recipient_id,
    )
    return bool(deleted)


async def channel_from_assessment(conn: Connection, patient_id: str, channel: Channel) -> None:
    """Remember the channel the patient chose at intake, unless one was set through the API."""
    await conn.execute(
        "INSERT INTO contacts AS c (recipient_kind, recipient_id, preferred_channel,"
        " channel_source) VALUES ('patient', $1, $2, 'assessment')"
        " ON CONFLICT (recipient_kind, recipient_id) DO UPDATE SET"
        " preferred_channel = excluded.preferred_channel, channel_source = 'assessment',"
        " updated_at = now() WHERE c.channel_source <> 'api'",
        patient_id,
        channel,
    )


# --- the on-call route (ops only) -----------------------------------------------------------


@dataclass(frozen=True)
class OnCallRoute:
    primary_email: str
    escalation_email: str
    set_by_sub: str
    set_by_role: str
    updated_at: datetime


_ROUTE_COLUMNS = "primary_email, escalation_email, set_by_sub, set_by_role, updated_at"


async def get_on_call_route(conn: Connection, *, lock: bool = False) -> OnCallRoute | None:
    row = await conn.fetchrow(
        f"SELECT {_ROUTE_COLUMNS} FROM on_call_route" + (" FOR UPDATE" if lock else "")
    )
    return OnCallRoute(**dict(row.items())) if row else None


async def put_on_call_route(
    conn: Connection,
    primary_email: str,
    escalation_email: str,
    *,
    set_by_sub: str,
    set_by_role: str,
    only_if_missing: bool = False,
) -> OnCallRoute | None:
    """Set the route (None when `only_if_missing` and one exists)."""
    conflict = (
        "DO NOTHING"
        if only_if_missing
        else (
            "DO UPDATE SET primary_email = excluded.primary_email,"
            " escalation_email = excluded.escalation_email, set_by_sub = excluded.set_by_sub,"
            " set_by_role = excluded.set_by_role, updated_at = now()"
        )
    )
    row = await conn.fetchrow(
        "INSERT INTO on_call_route (singleton, primary_email, escalation_email, set_by_sub,"
        f" set_by_role) VALUES (true, $1, $2, $3, $4) ON CONFLICT (singleton) {conflict}"
        f" RETURNING {_ROUTE_COLUMNS}",
        primary_email,
        escalation_email,
        set_by_sub,
        set_by_role,
    )
    return OnCallRoute(**dict(row.items())) if row else None


async def delete_on_call_route(conn: Connection) -> bool:
    return bool(await conn.fetchval("DELETE FROM on_call_route RETURNING true"))


# --- deliveries -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Cause:
    event_id: uuid.UUID
    event_type: str
    correlation_id: uuid.UUID
    patient_id: str
    appointment_id: uuid.UUID | None


@dataclass(frozen=True)
class Delivery:
    id: uuid.UUID
    cause_event_id: uuid.UUID
    cause_event_type: str
    correlation_id: uuid.UUID
    patient_id: str
    appointment_id: uuid.UUID | None
    recipient_kind: RecipientKind
    recipient_id: str
    channel: Channel
    template: str
    kind: DeliveryKind
    params: dict[str, str]
    status: DeliveryStatus
    priority: int
    due_at: datetime
    attempts: int
    next_attempt_at: datetime
    last_error_code: str | None
    sent_at: datetime | None
    failed_at: datetime | None
    created_at: datetime
    traceparent: str | None  # trace of the transaction that queued it


_DELIVERY_COLUMNS = (
    "id, cause_event_id, cause_event_type, correlation_id, patient_id, appointment_id,"
    " recipient_kind, recipient_id, channel, template, kind, params, status, priority, due_at,"
    " attempts, next_attempt_at, last_error_code, sent_at, failed_at, created_at, traceparent"
)


def _delivery(row: asyncpg.Record) -> Delivery:
    values: dict[str, Any] = dict(row.items())
    values["params"] = cast(dict[str, str], json.loads(values["params"]))
    return Delivery(**values)


async def add_deliveries(
    conn: Connection,
    cause: Cause,
    planned: Sequence[tuple[PlannedDelivery, Channel]],
) -> int:
    """Insert the planned deliveries in one statement; a second copy of the same cause adds
    nothing. Returns how many were added."""
    if not planned:
        return 0
    rows = await conn.fetch(
        "INSERT INTO deliveries (id, cause_event_id, cause_event_type, correlation_id,"
        " patient_id, appointment_id, recipient_kind, recipient_id, channel, template, kind,"
        " params, priority, due_at, next_attempt_at, traceparent)"
        " SELECT d.id, $1, $2, $3, $4, $5, d.recipient_kind, d.recipient_id, d.channel,"
        " d.template, d.kind, d.params::jsonb, d.priority, d.due_at, d.due_at, $6"
        " FROM unnest($7::uuid[], $8::text[], $9::text[], $10::text[], $11::text[], $12::text[],"
        " $13::text[], $14::int[], $15::timestamptz[])"
        " AS d(id, recipient_kind, recipient_id, channel, template, kind, params, priority, due_at)"
        " ON CONFLICT (cause_event_id, recipient_kind, recipient_id, channel, template)"
        " DO NOTHING RETURNING true",
        cause.event_id,
        cause.event_type,
        cause.correlation_id,
        cause.patient_id,
        cause.appointment_id,
        tracing.current_traceparent(),
        [uuid.uuid4() for _ in planned],
        [delivery.recipient_kind for delivery, _ in planned],
        [delivery.recipient_id for delivery, _ in planned],
        [channel for _, channel in planned],
        [delivery.template for delivery, _ in planned],
        [delivery.kind for delivery, _ in planned],
        [json.dumps(dict(delivery.params)) for delivery, _ in planned],
        [delivery.priority for delivery, _ in planned],
        [delivery.due_at for delivery, _ in planned],
    )
    if rows:
        await notify_dispatchers(conn)
    return len(rows)


# A commit that queued deliveries wakes a dispatcher worker of this process at once (an
# in-process wake-up, not a NOTIFY: that serialised commits cluster-wide); the poll interval
# still runs, for reminders falling due and deliveries another replica queued.
DISPATCH_CHANNEL = "notification_deliveries"


async def notify_dispatchers(conn: Connection) -> None:
    """Wake one of this process's dispatcher workers once the current transaction is over."""
    wakeup.after_release(conn, DISPATCH_CHANNEL)


async def cancel_pending(
    conn: Connection, appointment_id: uuid.UUID, cancelled_by: uuid.UUID
) -> int:
    """Cancel what is still queued for an appointment, except what `cancelled_by` itself queued
    (so a re-applied event cannot cancel its own deliveries)."""
    result = await conn.execute(
        "UPDATE deliveries SET status = 'cancelled', cancelled_by_event_id = $2,"
        " updated_at = now()"
        " WHERE appointment_id = $1 AND status = 'pending' AND cause_event_id <> $2",
        appointment_id,
        cancelled_by,
    )
    return int(result.split()[-1])


async def claim_due(conn: Connection, now: datetime, limit: int) -> list[Delivery]:
    """Lock up to `limit` due deliveries, most urgent first; other replicas skip them while
    this transaction lasts, and a handler cancelling one waits for it to end."""
    if not conn.is_in_transaction():
        raise RuntimeError("claim_due must run inside the transaction that records the outcomes")
    rows = await conn.fetch(
        f"SELECT {_DELIVERY_COLUMNS} FROM deliveries"
        " WHERE status = 'pending' AND due_at <= $1 AND next_attempt_at <= $1"
        " ORDER BY priority, due_at, id LIMIT $2 FOR UPDATE SKIP LOCKED",
        now,
        limit,
    )
    return [_delivery(row) for row in rows]


@dataclass(frozen=True)
class Outcome:
    """What one attempt at a claimed delivery came to: sent, failed for good, or still pending
    with the time of its next attempt."""

    delivery_id: uuid.UUID
    status: Literal["sent", "failed", "pending"]
    at: datetime
    error_code: str | None = None
    next_attempt_at: datetime | None = None


async def record_outcomes(conn: Connection, outcomes: Sequence[Outcome]) -> None:
    """Record a claimed set's outcomes in one statement; each counts one attempt."""
    if not outcomes:
        return
    await conn.execute(
        "UPDATE deliveries AS d SET status = o.status, attempts = d.attempts + 1,"
        " last_error_code = o.error_code,"
        " next_attempt_at = coalesce(o.next_attempt_at, d.next_attempt_at),"
        " sent_at = CASE WHEN o.status = 'sent' THEN o.at ELSE d.sent_at END,"
        " failed_at = CASE WHEN o.status = 'failed' THEN o.at ELSE d.failed_at END,"
        " updated_at = now()"
        " FROM unnest($1::uuid[], $2::text[], $3::timestamptz[], $4::text[], $5::timestamptz[])"
        " AS o(id, status, at, error_code, next_attempt_at)"
        " WHERE d.id = o.id",
        [o.delivery_id for o in outcomes],
        [o.status for o in outcomes],
        [o.at for o in outcomes],
        [o.error_code for o in outcomes],
        [o.next_attempt_at for o in outcomes],
    )


async def list_deliveries(
    conn: Connection,
    *,
    patient_id: str | None,
    appointment_id: uuid.UUID | None,
    limit: int,
) -> list[Delivery]:
    rows = await conn.fetch(
        f"SELECT {_DELIVERY_COLUMNS} FROM deliveries"
        " WHERE ($1::text IS NULL OR patient_id = $1)"
        " AND ($2::uuid IS NULL OR appointment_id = $2)"
        " ORDER BY created_at, due_at, template, id LIMIT $3",
        patient_id,
        appointment_id,
        limit,
    )
    return [_delivery(row) for row in rows]


# --- care teams -----------------------------------------------------------------------------


async def lock_care_team(conn: Connection, patient_id: str) -> None:
    """Serialise, per patient, the handlers that read or change the care team and plan changes.

    Team events (referrals topic) and plan changes (care-plans topic) come through different
    subscriptions and may be applied at the same moment; without this lock a plan change could
    miss a member whose CareTeamFormed commits concurrently, and the catch-up of that member
    could miss the change. Held until the handler's transaction ends.
    """
    if not conn.is_in_transaction():
        raise RuntimeError("lock_care_team must run inside the handler's transaction")
    await conn.execute(
        "SELECT pg_advisory_xact_lock(hashtext('notification.care_team'), hashtext($1))",
        patient_id,
    )


def _member(row: asyncpg.Record) -> Member:
    return Member(row["clinician_id"], row["role"], row["care_team_id"], row["joined_at"])


async def care_team(conn: Connection, patient_id: str) -> list[Member]:
    """The patient's current care-team members."""
    rows = await conn.fetch(
        "SELECT clinician_id, role, care_team_id, joined_at FROM care_team_members"
        " WHERE patient_id = $1 ORDER BY role, clinician_id",
        patient_id,
    )
    return [_member(row) for row in rows]


async def add_member(
    conn: Connection, patient_id: str, member: Member, event_id: uuid.UUID
) -> datetime:
    """Add (or confirm) a member; a confirmed member keeps the earlier joining time.
    Returns the joining time in effect."""
    joined: datetime | None = await conn.fetchval(
        "INSERT INTO care_team_members AS m"
        " (patient_id, clinician_id, role, care_team_id, joined_at, joined_event_id)"
        " VALUES ($1, $2, $3, $4, $5, $6)"
        " ON CONFLICT (patient_id, clinician_id) DO UPDATE SET"
        " role = excluded.role, care_team_id = excluded.care_team_id,"
        " joined_at = LEAST(m.joined_at, excluded.joined_at),"
        " joined_event_id = CASE WHEN excluded.joined_at < m.joined_at"
        " THEN excluded.joined_event_id ELSE m.joined_event_id END,"
        " updated_at = now()"
        " RETURNING joined_at",
        patient_id,
        member.clinician_id,
        member.role,
        member.care_team_id,
        member.joined_at,
        event_id,
    )
    if joined is None:
        raise RuntimeError("INSERT ... RETURNING returned no row")
    return joined


async def remove_member(
    conn: Connection, patient_id: str, clinician_id: str, removed_by: uuid.UUID
) -> int:
    """Remove a member and cancel their plan-change notices about this patient that are still
    queued (they can no longer open the plan). Returns how many notices were cancelled."""
    await conn.execute(
        "DELETE FROM care_team_members WHERE patient_id = $1 AND clinician_id = $2",
        patient_id,
        clinician_id,
    )
    result = await conn.execute(
        "UPDATE deliveries SET status = 'cancelled', cancelled_by_event_id = $3,"
        " updated_at = now()"
        " WHERE patient_id = $1 AND recipient_kind = 'clinician' AND recipient_id = $2"
        " AND template = $4 AND status = 'pending'",
        patient_id,
        clinician_id,
        removed_by,
        CARE_PLAN_UPDATED,
    )
    return int(result.split()[-1])


async def cancel_match_notices(
    conn: Connection, patient_id: str, referral_id: uuid.UUID, cancelled_by: uuid.UUID
) -> int:
    """Cancel the still-queued "therapist matched" messages of a referral whose team ended, and
    the match's education message (a revoked referral must not invite the patient to book after
    the fact)."""
    result = await conn.execute(
        "UPDATE deliveries SET status = 'cancelled', cancelled_by_event_id = $3,"
        " updated_at = now()"
        " WHERE patient_id = $1 AND status = 'pending' AND template = ANY($4::text[])"
        " AND params ->> 'referral_id' = $2",
        patient_id,
        str(referral_id),
        cancelled_by,
        [THERAPIST_MATCHED_PATIENT, THERAPIST_MATCHED_THERAPIST, EDUCATION_TEMPLATES["match"]],
    )
    return int(result.split()[-1])


# --- plan changes ---------------------------------------------------------------------------


_PLAN_CHANGE_COLUMNS = (
    "event_id, correlation_id, plan_version, changed_sections, author_id, author_role, occurred_at"
)


def _plan_change(row: asyncpg.Record) -> PlanChange:
    return PlanChange(
        event_id=row["event_id"],
        correlation_id=row["correlation_id"],
        plan_version=row["plan_version"],
        changed_sections=tuple(row["changed_sections"]),
        author_id=row["author_id"],
        author_role=row["author_role"],
        occurred_at=row["occurred_at"],
    )


async def record_plan_change(conn: Connection, patient_id: str, change: PlanChange) -> None:
    await conn.execute(
        f"INSERT INTO care_plan_changes (patient_id, {_PLAN_CHANGE_COLUMNS})"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (event_id) DO NOTHING",
        patient_id,
        change.event_id,
        change.correlation_id,
        change.plan_version,
        list(change.changed_sections),
        change.author_id,
        change.author_role,
        change.occurred_at,
    )


async def plan_changes_since(
    conn: Connection, patient_id: str, since: datetime
) -> list[PlanChange]:
    """The patient's plan changes that happened at or after `since`, oldest first."""
    rows = await conn.fetch(
        f"SELECT {_PLAN_CHANGE_COLUMNS} FROM care_plan_changes"
        " WHERE patient_id = $1 AND occurred_at >= $2 ORDER BY occurred_at, event_id",
        patient_id,
        since,
    )
    return [_plan_change(row) for row in rows]


# --- consents -------------------------------------------------------------------------------


async def get_consent(conn: Connection, patient_id: str, scope: str) -> Consent | None:
    """The latest consent state seen for the patient and scope; None before any consent event."""
    row = await conn.fetchrow(
        "SELECT granted, updated_at FROM consents WHERE patient_id = $1 AND scope = $2",
        patient_id,
        scope,
    )
    return Consent(row["granted"], row["updated_at"]) if row else None


async def set_consent(
    conn: Connection, patient_id: str, scope: str, granted: bool, occurred_at: datetime
) -> bool:
    """Record a grant or a revocation unless a later-happened one is already recorded.
    Returns whether it took effect."""
    applied = await conn.fetchval(
        "INSERT INTO consents AS c (patient_id, scope, granted, updated_at)"
        " VALUES ($1, $2, $3, $4)"
        " ON CONFLICT (patient_id, scope) DO UPDATE SET"
        " granted = excluded.granted, updated_at = excluded.updated_at"
        " WHERE excluded.updated_at >= c.updated_at"
        " RETURNING true",
        patient_id,
        scope,
        granted,
        occurred_at,
    )
    return bool(applied)


async def cancel_plan_notices(
    conn: Connection, patient_id: str, clinician_ids: Sequence[str], cancelled_by: uuid.UUID
) -> int:
    """Cancel the still-queued plan-change notices about this patient to these clinicians.
    Returns how many were cancelled."""
    if not clinician_ids:
        return 0
    result = await conn.execute(
        "UPDATE deliveries SET status = 'cancelled', cancelled_by_event_id = $3,"
        " updated_at = now()"
        " WHERE patient_id = $1 AND recipient_kind = 'clinician' AND recipient_id = ANY($2::text[])"
        " AND template = $4 AND status = 'pending'",
        patient_id,
        list(clinician_ids),
        cancelled_by,
        CARE_PLAN_UPDATED,
    )
    return int(result.split()[-1])


# --- patient education ---------------------------------------------------------------------


async def record_education(
    conn: Connection,
    patient_id: str,
    step: str,
    template: str,
    template_version: int,
    cause_event_id: uuid.UUID,
) -> bool:
    """Record that the patient is taught this step with this template version; False when
    they already were (by this event or an earlier one)."""
    inserted = await conn.fetchval(
        "INSERT INTO education_records (patient_id, step, template, template_version,"
        " cause_event_id) VALUES ($1, $2, $3, $4, $5)"
        " ON CONFLICT (patient_id, step) DO NOTHING RETURNING true",
        patient_id,
        step,
        template,
        template_version,
        cause_event_id,
    )
    return bool(inserted)


@dataclass(frozen=True)
class EducationRecord:
    step: str
    template: str
    template_version: int
    cause_event_id: uuid.UUID
    recorded_at: datetime


async def education_of(conn: Connection, patient_id: str) -> list[EducationRecord]:
    rows = await conn.fetch(
        "SELECT step, template, template_version, cause_event_id, recorded_at"
        " FROM education_records WHERE patient_id = $1 ORDER BY recorded_at, step",
        patient_id,
    )
    return [EducationRecord(**dict(row)) for row in rows]
