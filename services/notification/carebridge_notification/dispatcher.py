"""The dispatcher: sends due deliveries, most urgent first, each at most once per replica set.

A round claims due deliveries as a set (FOR UPDATE SKIP LOCKED, so another replica or worker
skips them) of at most CLAIM_SIZE, reads their contacts in one statement, hands each message to
SMTP over the round's one connection, then records every outcome in one statement and stages
their NotificationSent / NotificationFailed rows together, and commits; then the next set.
The residual window: if the process dies after the SMTP server accepted a message and before
the set's commit, that delivery is still pending and is sent once more, with the same
Message-ID (the delivery id) so an MTA can drop it. SMTP has no way to close that window;
CLAIM_SIZE bounds it (today's one delivery per transaction was a set of one).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta

from opentelemetry.context import Context
from prometheus_client import Counter

from carebridge_contracts import NotificationFailed, NotificationSent
from carebridge_notification import mailer, on_call, store
from carebridge_notification.domain import planning, rendering, retry, routing
from carebridge_notification.settings import NotificationSettings
from carebridge_notification.templates import Rendered
from carebridge_shared import tracing, wakeup
from carebridge_shared.context import ServiceContext
from carebridge_shared.db import Connection
from carebridge_shared.logging import get_logger
from carebridge_shared.metrics import note_error
from carebridge_shared.outbox import Staged

log = get_logger(__name__)

# Deliveries claimed, sent and recorded in one transaction: fewer round trips per e-mail, and
# at most this many e-mails sent again if the process dies before the set's commit.
CLAIM_SIZE = 10
# A step (the claim, one delivery's SMTP conversation, the set's record and commit) that hangs
# (a connection that died without an error, seen after a PostgreSQL crash) must not hold its
# worker, and the rows its set locked, for ever.
STEP_TIMEOUT_S = 30.0

# Bounded labels: SMTP/route error codes, and which on-call recipient (primary, escalation).
SAFETY_ALERT_ESCALATIONS = Counter(
    "carebridge_safety_alert_escalations_total",
    "Safety alerts the primary on-call recipient could not be sent, passed to the escalation one",
    ["error_code"],
)
SAFETY_ALERTS_UNDELIVERED = Counter(
    "carebridge_safety_alerts_undelivered_total",
    "Safety alert deliveries that failed for good (after every retry)",
    ["recipient", "error_code"],
)


def retry_policy(settings: NotificationSettings) -> retry.RetryPolicy:
    return retry.RetryPolicy(
        max_attempts=settings.delivery_max_attempts,
        initial_backoff=timedelta(seconds=settings.delivery_backoff_initial_seconds),
        max_backoff=timedelta(seconds=settings.delivery_backoff_max_seconds),
    )


async def dispatch_once(
    ctx: ServiceContext[NotificationSettings],
    *,
    limit: int | None = None,
    session: mailer.Session | None = None,
) -> int:
    """One round: claimed sets of due deliveries, in queue order, over one SMTP connection
    (`session`'s, kept open for the caller; without one, a connection of the round's own),
    until none is due or `limit` (default `dispatch_batch_size`) are handled; returns how many."""
    settings = ctx.settings
    budget = limit or settings.dispatch_batch_size
    handled = 0
    own = session is None
    smtp = _session(settings) if session is None else session
    try:
        while handled < budget:
            size = min(CLAIM_SIZE, budget - handled)
            claimed = await _dispatch_set(ctx, smtp, size)
            handled += claimed
            if claimed < size:
                break
    finally:
        if own:
            await smtp.close()
    return handled


def _session(settings: NotificationSettings) -> mailer.Session:
    return mailer.Session(
        host=settings.smtp_host, port=settings.smtp_port, timeout_s=settings.smtp_timeout_seconds
    )


async def dispatch(ctx: ServiceContext[NotificationSettings], stop: asyncio.Event) -> None:
    """Background task: `dispatch_concurrency` workers run dispatch rounds until `stop`;
    survives SMTP and database outages. Workers claim rows as replicas do (SKIP LOCKED), so
    each delivery is still sent by one of them, in its own transaction.

    A round starts when a transaction of this process that queued deliveries is over (one
    worker is woken in-process: a round sends everything due), or after the poll interval
    (reminders falling due; deliveries another replica queued).
    """
    settings = ctx.settings
    workers = _Workers()
    wakeup.listen(store.DISPATCH_CHANNEL, workers.wake_one)
    try:
        await asyncio.gather(
            *(
                _work(ctx, settings, stop, workers.subscribe())
                for _ in range(settings.dispatch_concurrency)
            )
        )
    finally:
        wakeup.unlisten(store.DISPATCH_CHANNEL, workers.wake_one)


async def _work(
    ctx: ServiceContext[NotificationSettings],
    settings: NotificationSettings,
    stop: asyncio.Event,
    woken: asyncio.Event,
) -> None:
    interval = settings.dispatch_interval_ms / 1000
    # The worker's SMTP connection lasts while there is mail to send: opening one costs a
    # connect, the greeting and EHLO, more than a message; the first round with nothing due
    # closes it (a connection the server dropped meanwhile is opened again, `mailer.Session`).
    session = _session(settings)
    try:
        while not stop.is_set():
            woken.clear()  # deliveries committed from here on set it again
            handled = 0
            try:
                handled = await dispatch_once(ctx, session=session)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                note_error("dispatcher", type(exc).__name__)
                log.warning("dispatch_round_failed", error=type(exc).__name__)
            if handled == 0:
                await session.close()
            if handled < settings.dispatch_batch_size:
                await _wait_for_any(stop, woken, interval)
    finally:
        await session.close()


class _Workers:
    """The dispatcher's workers; a wake-up goes to one that is idle (its event not yet set),
    in turn, so one delivery does not start four rounds that find one row between them."""

    def __init__(self) -> None:
        self._events: list[asyncio.Event] = []
        self._next = 0

    def subscribe(self) -> asyncio.Event:
        event = asyncio.Event()
        self._events.append(event)
        return event

    def wake_one(self) -> None:
        count = len(self._events)
        for step in range(count):
            event = self._events[(self._next + step) % count]
            if not event.is_set():
                event.set()
                self._next = (self._next + step + 1) % count
                return


async def _wait_for_any(stop: asyncio.Event, wake: asyncio.Event, timeout: float) -> None:  # noqa: ASYNC109
    waiters = {asyncio.ensure_future(stop.wait()), asyncio.ensure_future(wake.wait())}
    try:
        await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()


@dataclass
class _ClaimedSet:
    """Deliveries claimed together on one transaction, and what each came to: recorded in one
    statement and staged in one outbox write when the set is done."""

    ctx: ServiceContext[NotificationSettings]
    conn: Connection
    session: mailer.Session
    contacts: Mapping[store.ContactKey, routing.ContactInfo | None]
    outcomes: list[store.Outcome] = field(default_factory=list)
    events: list[Staged] = field(default_factory=list)

    @property
    def settings(self) -> NotificationSettings:
        return self.ctx.settings

    def contact(self, delivery: store.Delivery) -> routing.ContactInfo | None:
        return self.contacts.get((delivery.recipient_kind, delivery.recipient_id))

    def sent(self, delivery: store.Delivery, trace: Context) -> None:
        now = self.ctx.clock.now()
        self.outcomes.append(store.Outcome(delivery.id, "sent", now))
        event = NotificationSent(
            patient_id=delivery.patient_id,
            notification_id=delivery.id,
            cause_event_id=delivery.cause_event_id,
            cause_event_type=delivery.cause_event_type,
            recipient_kind=delivery.recipient_kind,
            recipient_id=delivery.recipient_id,
            channel="email",
            template=delivery.template,
            sent_at=now,
        )
        self.events.append(_caused_by(delivery, event, trace))
        log.info(
            "notification_sent",
            notification_id=str(delivery.id),
            template=delivery.template,
            recipient_kind=delivery.recipient_kind,
        )

    def failed(self, delivery: store.Delivery, error_code: str, trace: Context) -> None:
        now = self.ctx.clock.now()
        self.outcomes.append(store.Outcome(delivery.id, "failed", now, error_code))
        event = NotificationFailed(
            patient_id=delivery.patient_id,
            notification_id=delivery.id,
            cause_event_id=delivery.cause_event_id,
            cause_event_type=delivery.cause_event_type,
            recipient_kind=delivery.recipient_kind,
            recipient_id=delivery.recipient_id,
            channel=delivery.channel,
            template=delivery.template,
            attempts=delivery.attempts + 1,
            error_code=error_code,
            failed_at=now,
        )
        self.events.append(_caused_by(delivery, event, trace))
        log.warning(
            "notification_failed",
            notification_id=str(delivery.id),
            template=delivery.template,
            error_code=error_code,
            attempts=delivery.attempts + 1,
        )

    def retry_at(self, delivery: store.Delivery, error_code: str, decision: retry.RetryAt) -> None:
        now = self.ctx.clock.now()
        outcome = store.Outcome(delivery.id, "pending", now, error_code, decision.next_attempt_at)
        self.outcomes.append(outcome)
        log.warning(
            "notification_retry",
            notification_id=str(delivery.id),
            error_code=error_code,
            attempt=delivery.attempts + 1,
            retry_in_s=(decision.next_attempt_at - now).total_seconds(),
        )

    async def record(self) -> None:
        await store.record_outcomes(self.conn, self.outcomes)
        await self.ctx.outbox.add_many(self.conn, self.events)


def _caused_by(
    delivery: store.Delivery, event: NotificationSent | NotificationFailed, trace: Context
) -> Staged:
    return Staged(
        event,
        correlation_id=delivery.correlation_id,
        causation_id=delivery.cause_event_id,
        trace=trace,
    )


async def _dispatch_set(
    ctx: ServiceContext[NotificationSettings], session: mailer.Session, size: int
) -> int:
    """Claim up to `size` due deliveries, send each, record them all and commit."""
    loop = asyncio.get_running_loop()
    async with asyncio.timeout(STEP_TIMEOUT_S) as deadline:
        async with ctx.pool.acquire() as conn, conn.transaction():
            claimed = await store.claim_due(conn, ctx.clock.now(), size)
            if not claimed:
                return 0
            contacts = await _contacts(conn, ctx.settings, claimed)
            batch = _ClaimedSet(ctx, conn, session, contacts)
            for delivery in claimed:
                deadline.reschedule(loop.time() + STEP_TIMEOUT_S)
                await _deliver_traced(batch, delivery)
            deadline.reschedule(loop.time() + STEP_TIMEOUT_S)
            await batch.record()
    return len(claimed)


async def _contacts(
    conn: Connection, settings: NotificationSettings, claimed: Sequence[store.Delivery]
) -> dict[store.ContactKey, routing.ContactInfo | None]:
    """Each recipient's address as it is now, in two statements at most: the on-call route's
    for the on-call ids, the contacts table's for everyone else."""
    keys = {(d.recipient_kind, d.recipient_id) for d in claimed}
    on_call_keys = {key for key in keys if _is_on_call(settings, *key)}
    found = await store.get_contacts(conn, keys - on_call_keys) if keys - on_call_keys else {}
    contacts: dict[store.ContactKey, routing.ContactInfo | None] = {
        key: contact.info for key, contact in found.items()
    }
    if on_call_keys:
        route = await store.get_on_call_route(conn)
        for key in on_call_keys:
            contacts[key] = on_call.contact_on_route(route, settings, key[1])
    return contacts


def _is_on_call(settings: NotificationSettings, recipient_kind: str, recipient_id: str) -> bool:
    return recipient_kind == "clinician" and recipient_id in settings.on_call_ids


async def _deliver_traced(batch: _ClaimedSet, delivery: store.Delivery) -> None:
    # The delivery continues the trace of the event that queued it, so the e-mail and the
    # NotificationSent/Failed it publishes belong to the patient's request.
    with tracing.span(
        "notification deliver",
        parent=tracing.context_of(delivery.traceparent),
        attributes={
            "carebridge.notification_id": str(delivery.id),
            "carebridge.template": delivery.template,
            "carebridge.channel": delivery.channel,
            "carebridge.attempt": delivery.attempts + 1,
        },
    ) as span:
        await _deliver(batch, delivery, tracing.context_of(tracing.format_traceparent(span)))


async def _deliver(batch: _ClaimedSet, delivery: store.Delivery, trace: Context) -> None:
    """Send one claimed delivery and note its outcome in `batch`."""
    settings = batch.settings
    route = routing.route(batch.contact(delivery))
    if isinstance(route, routing.Undeliverable):
        if delivery.kind == "alert":  # never dropped: retried and escalated like an SMTP failure
            await _after_send_failure(batch, delivery, route.error_code, trace)
        else:
            batch.failed(delivery, route.error_code, trace)
        return
    try:
        rendered = rendering.render(
            delivery.template,
            delivery.params,
            settings.link_base_url,
            outcome_measure_url=settings.outcome_measure_url,
        )
    except (KeyError, ValueError):
        batch.failed(delivery, rendering.TEMPLATE_ERROR, trace)
        return
    try:
        await _send(batch, delivery, route.address, rendered)
    except mailer.SendFailed as exc:
        note_error("smtp", exc.error_code)
        await _after_send_failure(batch, delivery, exc.error_code, trace)
        return
    batch.sent(delivery, trace)


async def _send(
    batch: _ClaimedSet, delivery: store.Delivery, address: str, rendered: Rendered
) -> None:
    settings = batch.settings
    message = mailer.build_email(
        delivery.id,
        sender=settings.smtp_sender,
        to=address,
        rendered=rendered,
        template=delivery.template,
        date=batch.ctx.clock.now(),
    )
    with tracing.span(
        "smtp send", kind=tracing.SpanKind.CLIENT, attributes={"server.port": settings.smtp_port}
    ):
        await batch.session.send(message)


async def _after_send_failure(
    batch: _ClaimedSet, delivery: store.Delivery, error_code: str, trace: Context
) -> None:
    settings = batch.settings
    attempts = delivery.attempts + 1
    if delivery.kind == "alert" and delivery.recipient_id == settings.on_call_clinician_id:
        await _escalate(batch, delivery, error_code, attempts)
    policy = retry_policy(settings)
    decision = retry.after_failure(attempts, error_code, policy, batch.ctx.clock.now())
    if isinstance(decision, retry.RetryAt):
        batch.retry_at(delivery, error_code, decision)
        return
    batch.failed(delivery, error_code, trace)
    if delivery.kind == "alert":
        SAFETY_ALERTS_UNDELIVERED.labels(_on_call_role(settings, delivery), error_code).inc()
        log.error(
            "safety_alert_undelivered",
            notification_id=str(delivery.id),
            recipient=_on_call_role(settings, delivery),
            error_code=error_code,
            attempts=attempts,
        )


async def _escalate(
    batch: _ClaimedSet, delivery: store.Delivery, error_code: str, attempt: int
) -> None:
    """A safety alert the primary on-call recipient could not be sent: queue the same alert for
    the escalation recipient (once per cause), count it, and say so at ERROR level."""
    cause = store.Cause(
        event_id=delivery.cause_event_id,
        event_type=delivery.cause_event_type,
        correlation_id=delivery.correlation_id,
        patient_id=delivery.patient_id,
        appointment_id=delivery.appointment_id,
    )
    escalation = planning.PlannedDelivery(
        "clinician",
        batch.settings.on_call_escalation_id,
        delivery.template,
        "alert",
        planning.PRIORITY_URGENT,
        batch.ctx.clock.now(),
        delivery.params,
    )
    if not await store.add_deliveries(batch.conn, cause, [(escalation, "email")]):
        return  # escalated at an earlier attempt
    SAFETY_ALERT_ESCALATIONS.labels(error_code).inc()
    log.error(
        "safety_alert_escalated",
        notification_id=str(delivery.id),
        template=delivery.template,
        error_code=error_code,
        attempt=attempt,
    )


def _on_call_role(settings: NotificationSettings, delivery: store.Delivery) -> str:
    if delivery.recipient_id == settings.on_call_clinician_id:
        return "primary"
    return "escalation" if delivery.recipient_id == settings.on_call_escalation_id else "other"
