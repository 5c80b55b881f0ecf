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
import contextlib
from datetime import datetime, timedelta

from carebridge_contracts import NotificationFailed, NotificationSent
from carebridge_notification import domain, mailer, store
from carebridge_notification.settings import NotificationSettings, settings_of
from carebridge_shared.db import Connection
from carebridge_shared.logging import get_logger
from carebridge_shared.service import ServiceContext

log = get_logger(__name__)


def retry_policy(settings: NotificationSettings) -> domain.RetryPolicy:
    return domain.RetryPolicy(
        max_attempts=settings.delivery_max_attempts,
        initial_backoff=timedelta(seconds=settings.delivery_backoff_initial_seconds),
        max_backoff=timedelta(seconds=settings.delivery_backoff_max_seconds),
    )


async def dispatch_once(ctx: ServiceContext, *, limit: int | None = None) -> int:
    """One round: handle due deliveries one by one, in queue order; returns how many."""
    settings = settings_of(ctx)
    handled = 0
    for _ in range(limit or settings.dispatch_batch_size):
        if not await _dispatch_next(ctx, settings):
            break
        handled += 1
    return handled


async def dispatch(ctx: ServiceContext, stop: asyncio.Event) -> None:
    """Background task: dispatch rounds until `stop`; survives SMTP and database outages."""
    settings = settings_of(ctx)
    interval = settings.dispatch_interval_ms / 1000
    while not stop.is_set():
        handled = 0
        try:
            handled = await dispatch_once(ctx)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("dispatch_round_failed", error=type(exc).__name__)
        if handled < settings.dispatch_batch_size:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=interval)


async def _dispatch_next(ctx: ServiceContext, settings: NotificationSettings) -> bool:
    async with ctx.pool.acquire() as conn, conn.transaction():
        delivery = await store.claim_next(conn, ctx.clock.now())
        if delivery is None:
            return False
        contact = await store.get_contact(conn, delivery.recipient_kind, delivery.recipient_id)
        route = domain.route(contact.info if contact else None)
        if isinstance(route, domain.Undeliverable):
            await _fail(ctx, conn, delivery, route.error_code)
            return True
        try:
            rendered = domain.render(delivery.template, delivery.params, settings.link_base_url)
        except (KeyError, ValueError):
            await _fail(ctx, conn, delivery, domain.TEMPLATE_ERROR)
            return True
        try:
            await _send(ctx, settings, delivery, route.address, rendered)
        except mailer.SendFailed as exc:
            await _after_send_failure(ctx, settings, conn, delivery, exc.error_code)
            return True
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
        return True


async def _send(
    ctx: ServiceContext,
    settings: NotificationSettings,
    delivery: store.Delivery,
    address: str,
    rendered: domain.Rendered,
) -> None:
    message = mailer.build_email(
        delivery.id,
        sender=settings.smtp_sender,
        to=address,
        rendered=rendered,
        template=delivery.template,
        date=ctx.clock.now(),
    )
    await mailer.send(
        message,
        host=settings.smtp_host,
        port=settings.smtp_port,
        timeout_s=settings.smtp_timeout_seconds,
    )


async def _after_send_failure(
    ctx: ServiceContext,
    settings: NotificationSettings,
    conn: Connection,
    delivery: store.Delivery,
    error_code: str,
) -> None:
    now = ctx.clock.now()
    attempts = delivery.attempts + 1
    decision = domain.after_failure(attempts, error_code, retry_policy(settings), now)
    if isinstance(decision, domain.GiveUp):
        await _fail(ctx, conn, delivery, error_code)
        return
    await store.mark_retry(conn, delivery.id, error_code, decision.next_attempt_at)
    log.warning(
        "notification_retry",
        notification_id=str(delivery.id),
        error_code=error_code,
        attempt=attempts,
        retry_in_s=(decision.next_attempt_at - now).total_seconds(),
    )


async def _fail(
    ctx: ServiceContext, conn: Connection, delivery: store.Delivery, error_code: str
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
