"""The dispatcher: sends due deliveries, most urgent first, each at most once per replica set.

One delivery = one transaction: lock the row (FOR UPDATE SKIP LOCKED, so another replica
skips it), hand the message to SMTP, then record the outcome and its NotificationSent or
NotificationFailed outbox row, and commit. The one residual window: if the process dies after
the SMTP server accepted the message and before the commit, the row is still pending and the
message is sent once more, with the same Message-ID (the delivery id) so an MTA can drop it.
SMTP has no way to close that window; keeping the transaction to one message keeps it small.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

from prometheus_client import Counter

from carebridge_contracts import NotificationFailed, NotificationSent
from carebridge_notification import domain, mailer, on_call, store
from carebridge_notification.settings import NotificationSettings
from carebridge_shared import tracing, wakeup
from carebridge_shared.context import ServiceContext
from carebridge_shared.db import Connection
from carebridge_shared.logging import get_logger
from carebridge_shared.metrics import note_error

log = get_logger(__name__)

DELIVERY_TIMEOUT_S = 30.0  # one claim, SMTP conversation and commit

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


def retry_policy(settings: NotificationSettings) -> domain.RetryPolicy:
    return domain.RetryPolicy(
        max_attempts=settings.delivery_max_attempts,
        initial_backoff=timedelta(seconds=settings.delivery_backoff_initial_seconds),
        max_backoff=timedelta(seconds=settings.delivery_backoff_max_seconds),
    )


async def dispatch_once(
    ctx: ServiceContext[NotificationSettings], *, limit: int | None = None
) -> int:
    """One round: handle due deliveries one by one, in queue order, over one SMTP connection;
    returns how many."""
    settings = ctx.settings
    handled = 0
    session = mailer.Session(
        host=settings.smtp_host, port=settings.smtp_port, timeout_s=settings.smtp_timeout_seconds
    )
    try:
        for _ in range(limit or settings.dispatch_batch_size):
            # A delivery that hangs (a connection that died without an error, seen after a
            # PostgreSQL crash) must not hold its worker, and the rows it locked, for ever.
            async with asyncio.timeout(DELIVERY_TIMEOUT_S):
                if not await _dispatch_next(ctx, settings, session):
                    break
            handled += 1
    finally:
        await session.close()
    return handled


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
    while not stop.is_set():
        woken.clear()  # deliveries committed from here on set it again
        handled = 0
        try:
            handled = await dispatch_once(ctx)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            note_error("dispatcher", type(exc).__name__)
            log.warning("dispatch_round_failed", error=type(exc).__name__)
        if handled < settings.dispatch_batch_size:
            await _wait_for_any(stop, woken, interval)


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


async def _dispatch_next(
    ctx: ServiceContext[NotificationSettings],
    settings: NotificationSettings,
    session: mailer.Session,
) -> bool:
    async with ctx.pool.acquire() as conn, conn.transaction():
        delivery = await store.claim_next(conn, ctx.clock.now())
        if delivery is None:
            return False
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
        ):
            await _deliver(ctx, settings, conn, delivery, session)
        return True


async def _deliver(
    ctx: ServiceContext[NotificationSettings],
    settings: NotificationSettings,
    conn: Connection,
    delivery: store.Delivery,
    session: mailer.Session,
) -> None:
    """Send one claimed delivery and record its outcome on `conn` (the claim's transaction)."""
    route = domain.route(await _contact(conn, settings, delivery))
    if isinstance(route, domain.Undeliverable):
        if delivery.kind == "alert":  # never dropped: retried and escalated like an SMTP failure
            await _after_send_failure(ctx, settings, conn, delivery, route.error_code)
        else:
            await _fail(ctx, conn, delivery, route.error_code)
        return
    try:
        rendered = domain.render(
            delivery.template,
            delivery.params,
            settings.link_base_url,
            outcome_measure_url=settings.outcome_measure_url,
        )
    except (KeyError, ValueError):
        await _fail(ctx, conn, delivery, domain.TEMPLATE_ERROR)
        return
    try:
        await _send(ctx, settings, delivery, route.address, rendered, session)
    except mailer.SendFailed as exc:
        note_error("smtp", exc.error_code)
        await _after_send_failure(ctx, settings, conn, delivery, exc.error_code)
        return
    now = ctx.clock.now()
    await store.mark_sent(conn, delivery.id, now)
    await ctx.outbox.add(
        conn,
        NotificationSent(
            patient_id=delivery.patient_id,
            notification_id=delivery.id,
            cause_event_id=delivery.cause_event_id,
            cause_event_type=delivery.cause_event_type,
            recipient_kind=delivery.recipient_kind,
            recipient_id=delivery.recipient_id,
            channel="email",
            template=delivery.template,
            sent_at=now,
        ),
        correlation_id=delivery.correlation_id,
        causation_id=delivery.cause_event_id,
    )
    log.info(
        "notification_sent",
        notification_id=str(delivery.id),
        template=delivery.template,
        recipient_kind=delivery.recipient_kind,
    )


async def _contact(
    conn: Connection, settings: NotificationSettings, delivery: store.Delivery
) -> domain.ContactInfo | None:
    """The recipient's address as it is now: the on-call route's for the on-call ids."""
    if delivery.recipient_kind == "clinician" and delivery.recipient_id in settings.on_call_ids:
        return await on_call.contact_of(conn, settings, delivery.recipient_id)
    contact = await store.get_contact(conn, delivery.recipient_kind, delivery.recipient_id)
    return contact.info if contact else None


async def _send(
    ctx: ServiceContext[NotificationSettings],
    settings: NotificationSettings,
    delivery: store.Delivery,
    address: str,
    rendered: domain.Rendered,
    session: mailer.Session,
) -> None:
    message = mailer.build_email(
        delivery.id,
        sender=settings.smtp_sender,
        to=address,
        rendered=rendered,
        template=delivery.template,
        date=ctx.clock.now(),
    )
    with tracing.span(
        "smtp send", kind=tracing.SpanKind.CLIENT, attributes={"server.port": settings.smtp_port}
    ):
        await session.send(message)


async def _after_send_failure(
    ctx: ServiceContext[NotificationSettings],
    settings: NotificationSettings,
    conn: Connection,
    delivery: store.Delivery,
    error_code: str,
) -> None:
    now = ctx.clock.now()
    attempts = delivery.attempts + 1
    if delivery.kind == "alert" and delivery.recipient_id == settings.on_call_clinician_id:
        await _escalate(ctx, settings, conn, delivery, error_code, attempts)
    decision = domain.after_failure(attempts, error_code, retry_policy(settings), now)
    if isinstance(decision, domain.GiveUp):
        await _fail(ctx, conn, delivery, error_code)
        if delivery.kind == "alert":
            SAFETY_ALERTS_UNDELIVERED.labels(_on_call_role(settings, delivery), error_code).inc()
            log.error(
                "safety_alert_undelivered",
                notification_id=str(delivery.id),
                recipient=_on_call_role(settings, delivery),
                error_code=error_code,
                attempts=attempts,
            )
        return
    await store.mark_retry(conn, delivery.id, error_code, decision.next_attempt_at)
    log.warning(
        "notification_retry",
        notification_id=str(delivery.id),
        error_code=error_code,
        attempt=attempts,
        retry_in_s=(decision.next_attempt_at - now).total_seconds(),
    )


async def _escalate(
    ctx: ServiceContext[NotificationSettings],
    settings: NotificationSettings,
    conn: Connection,
    delivery: store.Delivery,
    error_code: str,
    attempt: int,
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
    escalation = domain.PlannedDelivery(
        "clinician",
        settings.on_call_escalation_id,
        delivery.template,
        "alert",
        domain.PRIORITY_URGENT,
        ctx.clock.now(),
        delivery.params,
    )
    if not await store.add_deliveries(conn, cause, [(escalation, "email")]):
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


async def _fail(
    ctx: ServiceContext[NotificationSettings],
    conn: Connection,
    delivery: store.Delivery,
    error_code: str,
) -> None:
    now: datetime = ctx.clock.now()
    await store.mark_failed(conn, delivery.id, error_code, now)
    await ctx.outbox.add(
        conn,
        NotificationFailed(
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
        ),
        correlation_id=delivery.correlation_id,
        causation_id=delivery.cause_event_id,
    )
    log.warning(
        "notification_failed",
        notification_id=str(delivery.id),
        template=delivery.template,
        error_code=error_code,
        attempts=delivery.attempts + 1,
    )
