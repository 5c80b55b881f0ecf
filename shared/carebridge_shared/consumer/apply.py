"""Applying a delivery: its inbox claims and its handlers' effects in one transaction.

A poll's records and a record on its own take this same path; what differs is the policy
around it (`runtime`: a poll falls back to its records one by one; `retries`: a record alone
is retried, then dead-lettered).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import asyncpg

from carebridge_shared import inbox
from carebridge_shared.consumer.delivery import APPLIED, DUPLICATE, IGNORED, Delivery, Item
from carebridge_shared.consumer.subscriptions import EventContext, Subscriptions
from carebridge_shared.context import ServiceContext
from carebridge_shared.db import Connection


class Applier:
    """Claims a delivery's events in the group's inbox and hands the fresh ones to their
    handlers, in offset order, all in one transaction."""

    def __init__(
        self, group_id: str, service: ServiceContext[Any], subscriptions: Subscriptions[Any]
    ) -> None:
        self._group_id = group_id
        self._service = service
        self._subscriptions = subscriptions

    def handles(self, item: Item) -> bool:
        return item.key in self._subscriptions.handlers

    async def apply(self, delivery: Delivery) -> None:
        """Sets the delivery's outcomes once its transaction committed. Raises (nothing
        applied) when a record is unreadable or a handler fails."""
        for item in delivery.items:
            item.parsed()  # an unreadable record raises why
        if not any(self.handles(item) for item in delivery.items):
            delivery.outcomes = [IGNORED] * len(delivery.items)
            return
        pool: asyncpg.Pool = self._service.pool
        async with pool.acquire() as conn, conn.transaction():
            outcomes = await self._claim_and_dispatch(conn, delivery)
        delivery.outcomes = outcomes

    async def _claim_and_dispatch(self, conn: Connection, delivery: Delivery) -> list[str]:
        fresh = await inbox.claim_many(conn, self._group_id, self._claims(delivery.items))
        outcomes: list[str] = []
        run: list[int] = []  # consecutive fresh events for one batch handler
        for index, item in enumerate(delivery.items):
            outcome = self._outcome(item, fresh)
            outcomes.append(outcome)
            if outcome != APPLIED:
                continue
            if item.key in self._subscriptions.batch_handlers:
                if run and delivery.items[run[0]].key != item.key:
                    await self._call_batch(conn, delivery, run)
                    run = []
                run.append(index)
                continue
            if run:
                await self._call_batch(conn, delivery, run)
                run = []
            await self._call_one(conn, delivery, index)
        if run:
            await self._call_batch(conn, delivery, run)
        return outcomes

    def _claims(self, items: Sequence[Item]) -> list[inbox.Claim]:
        claims: list[inbox.Claim] = []
        for item in items:
            if self.handles(item):
                record = item.record
                event_id = item.parsed()[0].event_id
                claims.append(inbox.Claim(event_id, record.topic, record.partition, record.offset))
        return claims

    def _outcome(self, item: Item, fresh: set[Any]) -> str:
        if not self.handles(item):
            return IGNORED  # a known event this group does not care about
        event_id = item.parsed()[0].event_id
        if event_id not in fresh:
            return DUPLICATE
        fresh.discard(event_id)  # a second copy in this delivery is a duplicate
        return APPLIED

    async def _call_one(self, conn: Connection, delivery: Delivery, index: int) -> None:
        item = delivery.items[index]
        handler = self._subscriptions.handlers[item.key]
        with delivery.handler_scope(index):
            await handler(item.parsed()[1], self._context(conn, item))

    async def _call_batch(self, conn: Connection, delivery: Delivery, run: list[int]) -> None:
        items = [delivery.items[index] for index in run]
        handler = self._subscriptions.batch_handlers[items[0].key]
        with delivery.handler_scope(run[0]):
            await handler([(item.parsed()[1], self._context(conn, item)) for item in items])

    def _context(self, conn: Connection, item: Item) -> EventContext[Any]:
        record = item.record
        return EventContext(
            item.parsed()[0],
            conn,
            self._service,
            record.topic,
            record.partition,
            record.offset,
            record.headers or (),
        )
