"""The matching queue: urgent first then oldest; each referral goes to the least loaded
qualified therapist with a free place, or is held with the reason.

No I/O here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from carebridge_contracts.events.common import Urgency
from carebridge_contracts.events.referral import (
    WaitlistReason,
)
from carebridge_referral.domain.lifecycle import Referral


@dataclass(frozen=True, slots=True)
class Therapist:
    id: str
    licence_states: frozenset[str]
    modalities: frozenset[str]
    capacity: int
    active: bool = True

    def qualified_for(self, state: str, modality: str) -> bool:
        return self.active and state in self.licence_states and modality in self.modalities


@dataclass(frozen=True, slots=True)
class WaitingReferral:
    """An open referral nobody took yet, as the matcher sees it."""

    id: UUID
    state: str
    modality: str
    urgency: Urgency
    created_at: datetime
    consent_granted: bool

    @classmethod
    def of(cls, referral: Referral, *, consent_granted: bool) -> WaitingReferral:
        return cls(
            referral.id,
            referral.state,
            referral.modality,
            referral.urgency,
            referral.created_at,
            consent_granted,
        )


@dataclass(frozen=True, slots=True)
class Match:
    therapist_id: str


@dataclass(frozen=True, slots=True)
class Hold:
    reason: WaitlistReason


Decision = Match | Hold


def queue_key(referral: WaitingReferral) -> tuple[int, datetime, str]:
    """Urgent first, then oldest first; the id breaks ties so the order is total."""
    return (0 if referral.urgency == "urgent" else 1, referral.created_at, str(referral.id))


def queue_order(waiting: Iterable[WaitingReferral]) -> list[WaitingReferral]:
    return sorted(waiting, key=queue_key)


def choose_therapist(
    state: str, modality: str, therapists: Iterable[Therapist], loads: Mapping[str, int]
) -> Decision:
    """The least loaded qualified therapist with a free place (ties by id), or why none.

    `no_licensed_therapist`: no active therapist licensed in `state` offers `modality`;
    `no_capacity`: some do, but all are full.
    """
    qualified = [t for t in therapists if t.qualified_for(state, modality)]
    if not qualified:
        return Hold("no_licensed_therapist")
    free = [t for t in qualified if loads.get(t.id, 0) < t.capacity]
    if not free:
        return Hold("no_capacity")
    best = min(free, key=lambda t: (loads.get(t.id, 0), t.id))
    return Match(best.id)


def allocate(
    waiting: Iterable[WaitingReferral],
    therapists: Sequence[Therapist],
    loads: Mapping[str, int],
) -> list[tuple[WaitingReferral, Decision]]:
    """Decide every waiting referral in queue order; each match takes a place at once."""
    taken = dict(loads)
    decisions: list[tuple[WaitingReferral, Decision]] = []
    for referral in queue_order(waiting):
        if not referral.consent_granted:
            decisions.append((referral, Hold("awaiting_consent")))
            continue
        decision = choose_therapist(referral.state, referral.modality, therapists, taken)
        if isinstance(decision, Match):
            taken[decision.therapist_id] = taken.get(decision.therapist_id, 0) + 1
        decisions.append((referral, decision))
    return decisions
