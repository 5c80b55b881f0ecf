"""In-process wake-ups: a marked connection wakes its topic's listeners when it is released."""

from __future__ import annotations

from carebridge_notification.dispatcher import _Workers
from carebridge_shared import wakeup


class FakeConnection:
    """Only the server process id, which is what a wake-up is keyed by."""

    def __init__(self, pid: int) -> None:
        self.pid = pid

    def get_server_pid(self) -> int:
        return self.pid


def test_a_marked_connection_wakes_its_topics_listeners_once_released() -> None:
    woken: list[str] = []
    wakeup.listen("t1_outbox", lambda: woken.append("t1"))
    wakeup.listen("t2_outbox", lambda: woken.append("t2"))
    marked, other = FakeConnection(7001), FakeConnection(7002)
    wakeup.after_release(marked, "t1_outbox")  # type: ignore[arg-type]
    wakeup.after_release(marked, "t1_outbox")  # type: ignore[arg-type]
    assert woken == []  # not while the transaction may still be open
    wakeup.released(other)  # type: ignore[arg-type]
    assert woken == []
    wakeup.released(marked)  # type: ignore[arg-type]
    assert woken == ["t1"]  # once per release, however many rows
    wakeup.released(marked)  # type: ignore[arg-type]
    assert woken == ["t1"]


def test_one_idle_dispatcher_worker_is_woken_per_wake_up() -> None:
    workers = _Workers()
    events = [workers.subscribe() for _ in range(3)]
    workers.wake_one()
    assert [e.is_set() for e in events] == [True, False, False]
    workers.wake_one()
    assert [e.is_set() for e in events] == [True, True, False]
    events[0].clear()  # the first worker started its round
    workers.wake_one()
    workers.wake_one()
    assert all(e.is_set() for e in events)
