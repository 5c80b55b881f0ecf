"""Matching: licence, modality, capacity, least loaded first, ties by id; the waitlist order."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from uuid import UUID

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from carebridge_referral.domain import (
    Decision,
    Hold,
    Match,
    Therapist,
    WaitingReferral,
    allocate,
    choose_therapist,
    queue_order,
)

T0 = datetime(2030, 1, 7, 9, 0, tzinfo=UTC)


def therapist(
    tid: str,
    states: str = "NY",
    modalities: str = "CBT",
    capacity: int = 5,
    active: bool = True,
) -> Therapist:
    return Therapist(
        tid, frozenset(states.split()), frozenset(modalities.split()), capacity, active
    )


def waiting(
    n: int,
    *,
    urgency: str = "routine",
    minutes: int = 0,
    state: str = "NY",
    modality: str = "CBT",
    consent: bool = True,
) -> WaitingReferral:
    return WaitingReferral(
        id=UUID(int=n),
        state=state,
        modality=modality,
        urgency="urgent" if urgency == "urgent" else "routine",
        created_at=T0 + timedelta(minutes=minutes),
        consent_granted=consent,
    )


@pytest.mark.parametrize(
    ("therapists", "loads", "state", "modality", "expected"),
    [
        # licence: only a therapist licensed in the patient's state
        ([therapist("a", "CA"), therapist("b", "NY")], {}, "NY", "CBT", Match("b")),
        ([therapist("a", "CA")], {}, "NY", "CBT", Hold("no_licensed_therapist")),
        # several licences
        ([therapist("a", "CA NJ NY")], {}, "NJ", "CBT", Match("a")),
        # modality: licensed but not offering it counts as nobody licensed to take it
        ([therapist("a", "NY", "DBT")], {}, "NY", "CBT", Hold("no_licensed_therapist")),
        (
            [therapist("a", "NY", "DBT"), therapist("b", "NY", "CBT EMDR")],
            {},
            "NY",
            "EMDR",
            Match("b"),
        ),
        # inactive therapists take nobody
        ([therapist("a", active=False)], {}, "NY", "CBT", Hold("no_licensed_therapist")),
        # capacity: full therapists are skipped; all full is no_capacity
        (
            [therapist("a", capacity=2), therapist("b", capacity=2)],
            {"a": 2},
            "NY",
            "CBT",
            Match("b"),
        ),
        (
            [therapist("a", capacity=2), therapist("b", capacity=1)],
            {"a": 2, "b": 1},
            "NY",
            "CBT",
            Hold("no_capacity"),
        ),
        ([therapist("a", capacity=0)], {}, "NY", "CBT", Hold("no_capacity")),
        # over capacity (capacity lowered below the load) is simply full
        ([therapist("a", capacity=1)], {"a": 3}, "NY", "CBT", Hold("no_capacity")),
        # fairness: least loaded first, whatever the capacity
        (
            [therapist("a", capacity=10), therapist("b", capacity=3)],
            {"a": 2, "b": 1},
            "NY",
            "CBT",
            Match("b"),
        ),
        # ties by id
        ([therapist("b"), therapist("a"), therapist("c")], {}, "NY", "CBT", Match("a")),
        ([therapist("b"), therapist("a")], {"a": 1, "b": 1}, "NY", "CBT", Match("a")),
        ([therapist("b"), therapist("a")], {"a": 1}, "NY", "CBT", Match("b")),
        ([], {}, "NY", "CBT", Hold("no_licensed_therapist")),
    ],
)
def test_choose_therapist(
    therapists: list[Therapist],
    loads: Mapping[str, int],
    state: str,
    modality: str,
    expected: Decision,
) -> None:
    assert choose_therapist(state, modality, therapists, loads) == expected


def test_queue_order_is_urgent_first_then_oldest_then_id() -> None:
    old_routine = waiting(1, minutes=0)
    new_urgent = waiting(2, urgency="urgent", minutes=30)
    old_urgent = waiting(3, urgency="urgent", minutes=10)
    new_routine = waiting(4, minutes=20)
    same_time_a = waiting(6, minutes=40)
    same_time_b = waiting(5, minutes=40)
    ordered = queue_order(
        [new_routine, old_routine, same_time_a, new_urgent, same_time_b, old_urgent]
    )
    assert [w.id.int for w in ordered] == [3, 2, 1, 4, 5, 6]


def test_one_free_place_goes_to_the_urgent_referral_even_if_a_routine_one_is_older() -> None:
    routine = waiting(1, minutes=0)
    urgent = waiting(2, urgency="urgent", minutes=60)
    decisions = dict(
        (w.id.int, d) for w, d in allocate([routine, urgent], [therapist("a", capacity=1)], {})
    )
    assert decisions == {2: Match("a"), 1: Hold("no_capacity")}


def test_places_are_taken_in_queue_order_and_spread_over_therapists() -> None:
    queue = [waiting(n, minutes=n) for n in range(1, 6)]
    roster = [therapist("a", capacity=2), therapist("b", capacity=2)]
    decisions = allocate(queue, roster, {"a": 0, "b": 1})
    assert [(w.id.int, d) for w, d in decisions] == [
        (1, Match("a")),  # a has 0, b has 1
        (2, Match("a")),  # a 1, b 1: tie, by id
        (3, Match("b")),  # a full
        (4, Hold("no_capacity")),
        (5, Hold("no_capacity")),
    ]


def test_referrals_without_consent_wait_and_take_no_place() -> None:
    first = waiting(1, urgency="urgent", consent=False)
    second = waiting(2, minutes=5)
    decisions = allocate([first, second], [therapist("a", capacity=1)], {})
    assert [(w.id.int, d) for w, d in decisions] == [
        (1, Hold("awaiting_consent")),
        (2, Match("a")),
    ]


def test_referrals_of_other_states_and_modalities_do_not_compete() -> None:
    ny = waiting(1, minutes=0)
    ca = waiting(2, minutes=1, state="CA")
    emdr = waiting(3, minutes=2, modality="EMDR")
    roster = [therapist("ny", capacity=1), therapist("ca", "CA", capacity=1)]
    decisions = allocate([emdr, ca, ny], roster, {})
    assert [(w.id.int, d) for w, d in decisions] == [
        (1, Match("ny")),
        (2, Match("ca")),
        (3, Hold("no_licensed_therapist")),
    ]


def test_allocate_does_not_change_the_loads_it_was_given() -> None:
    loads = {"a": 0}
    allocate([waiting(1)], [therapist("a")], loads)
    assert loads == {"a": 0}


_states = st.sampled_from(["NY", "CA"])
_modalities = st.sampled_from(["CBT", "DBT"])
_referrals = st.builds(
    lambda n, urgent, minutes, state, modality, consent: waiting(
        n,
        urgency="urgent" if urgent else "routine",
        minutes=minutes,
        state=state,
        modality=modality,
        consent=consent,
    ),
    st.integers(0, 10_000),
    st.booleans(),
    st.integers(0, 500),
    _states,
    _modalities,
    st.booleans(),
)
_therapists = st.lists(
    st.builds(
        lambda i, states, modalities, capacity: therapist(f"t{i}", states, modalities, capacity),
        st.integers(0, 5),
        st.sampled_from(["NY", "CA", "NY CA"]),
        st.sampled_from(["CBT", "DBT", "CBT DBT"]),
        st.integers(0, 3),
    ),
    max_size=4,
    unique_by=lambda t: t.id,
)


@given(
    therapists=_therapists,
    queue=st.lists(_referrals, max_size=12, unique_by=lambda r: r.id),
    newcomer=_referrals,
)
def test_a_newcomer_decided_alone_gets_what_serving_the_whole_queue_gives(
    therapists: list[Therapist], queue: list[WaitingReferral], newcomer: WaitingReferral
) -> None:
    """`matching.serve_newcomer` decides only the referral that just joined: after a serve,
    no waiting referral can be matched, and a newcomer only takes a place. Here the queue
    is served first (its matches take their places), then the newcomer joins."""
    assume(newcomer.id not in {r.id for r in queue})
    loads: dict[str, int] = {}
    held: dict[UUID, Decision] = {}
    for referral, decision in allocate(queue, therapists, loads):
        if isinstance(decision, Match):
            loads[decision.therapist_id] = loads.get(decision.therapist_id, 0) + 1
        else:
            held[referral.id] = decision
    still_waiting = [r for r in queue if r.id in held]

    whole = dict((r.id, d) for r, d in allocate([*still_waiting, newcomer], therapists, loads))
    alone = dict((r.id, d) for r, d in allocate([newcomer], therapists, loads))

    assert alone[newcomer.id] == whole[newcomer.id]
    assert {rid: d for rid, d in whole.items() if rid != newcomer.id} == held
