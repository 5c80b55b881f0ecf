"""Two replicas on one database never assign a therapist beyond capacity."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import pytest

from carebridge_contracts import Topic
from carebridge_devstack.testing import read_topic

if TYPE_CHECKING:
    from conftest import Referral

pytestmark = pytest.mark.integration

PATIENTS = 12
CAPACITY = 3


async def test_concurrent_referrals_on_two_replicas_respect_capacity(
    replicas: list[Referral],
) -> None:
    first, second = replicas
    therapists = [await first.put_therapist(capacity=CAPACITY) for _ in range(2)]
    patients = [first.new_id("p") for _ in range(PATIENTS)]
    # consents and referrals race each other on both replicas
    await asyncio.gather(*(replicas[i % 2].grant(p) for i, p in enumerate(patients)))
    responses = await asyncio.gather(
        *(replicas[i % 2].refer(p) for i, p in enumerate(reversed(patients)))
    )
    assert all(r.status_code == 201 for r in responses), [r.text for r in responses]

    referrals = [r.json() for r in responses]
    matched = [r for r in referrals if r["therapist_id"] is not None]
    held = [r for r in referrals if r["therapist_id"] is None]
    assert len(matched) == 2 * CAPACITY
    assert {r["hold_reason"] for r in held} == {"no_capacity"}
    for therapist in therapists:
        view = (await second.client.get(f"/v1/therapists/{therapist}")).json()
        assert (view["active_patients"], view["free_places"]) == (CAPACITY, 0)
        assert sum(r["therapist_id"] == therapist for r in matched) == CAPACITY

    # what the topic says agrees: one TherapistMatched per matched patient, none for the rest
    wanted = {p.encode() for p in patients}
    records = await read_topic(
        first.kafka,
        str(Topic.REFERRALS),
        where=lambda r: r.key in wanted and r.headers.get("ce-type") == b"TherapistMatched",
        expect=2 * CAPACITY,
        settle=2.0,
    )
    assert sorted(r.key or b"" for r in records) == sorted(
        r["patient_id"].encode() for r in matched
    )

    # both replicas serve the same waitlist: freeing places anywhere matches the rest in order
    await second.put_therapist(therapists[0], capacity=CAPACITY + len(held), expect=200)
    after = [await first.referral(r["id"]) for r in held]
    assert all(r["therapist_id"] == therapists[0] for r in after)
