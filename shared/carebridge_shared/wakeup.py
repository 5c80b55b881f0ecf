"""In-process wake-ups after a transaction: what a PostgreSQL NOTIFY did, without its cost.

A NOTIFY takes a cluster-wide lock at commit, which serialises every committing transaction
of the cluster (issue 16). A writer instead marks its connection (`after_release`), and the
pool's release hook (`pool_reset`, given to every pool by `db.create_pool`) calls the
callbacks listening on that topic (`listen`) once the connection comes back, i.e. after its
transaction committed or rolled back. Only listeners in the same process are woken: another
replica finds the work by polling.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from typing import Any

import asyncpg

Callback = Callable[[], None]
Receiver = Callable[[list[Any]], None]

_listeners: dict[str, set[Callback]] = defaultdict(set)
_receivers: dict[str, Receiver] = {}
# server process id of a checked-out connection -> topics to announce when it is released
_pending: dict[int, set[str]] = defaultdict(set)
# server process id of a checked-out connection -> topic -> what its transaction handed over
_handed: dict[int, dict[str, list[Any]]] = defaultdict(lambda: defaultdict(list))


def listen(topic: str, callback: Callback) -> None:
    _listeners[topic].add(callback)


def unlisten(topic: str, callback: Callback) -> None:
    _listeners[topic].discard(callback)


def after_release(conn: asyncpg.Connection | asyncpg.pool.PoolConnectionProxy, topic: str) -> None:
    """Wake `topic`'s listeners once `conn` (a pool connection) is released."""
    _pending[conn.get_server_pid()].add(topic)


def receive(topic: str, receiver: Receiver) -> None:
    """`receiver` gets what transactions hand over on `topic` (one receiver per topic)."""
    _receivers[topic] = receiver


def stop_receiving(topic: str, receiver: Receiver) -> None:
    if _receivers.get(topic) == receiver:
        del _receivers[topic]


def hand_over(
    conn: asyncpg.Connection | asyncpg.pool.PoolConnectionProxy, topic: str, items: Iterable[Any]
) -> None:
    """Give `items` to `topic`'s receiver once `conn` is released, whether its transaction
    committed or rolled back (the receiver must tell the two apart; the outbox relay does by
    claiming rows in the table). With no receiver in this process they are dropped."""
    _handed[conn.get_server_pid()][topic].extend(items)


def wake(topic: str) -> None:
    for callback in list(_listeners.get(topic, ())):
        callback()


def released(conn: asyncpg.Connection) -> None:
    pid = conn.get_server_pid()
    for topic, items in _handed.pop(pid, {}).items():
        receiver = _receivers.get(topic)
        if receiver is not None:
            receiver(items)
    for topic in _pending.pop(pid, ()):
        wake(topic)


async def pool_reset(conn: asyncpg.Connection) -> None:
    """The pool's release hook: the wake-ups (the transaction is over), then asyncpg's own
    reset. A rolled back transaction wakes its listeners too; they find nothing new."""
    released(conn)
    await conn.execute(conn.get_reset_query())
