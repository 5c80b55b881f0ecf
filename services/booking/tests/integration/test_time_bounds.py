"""Times at the edges of the calendar are refused with a 422 that names the field, not answered
with a server error (the API fuzz found slot searches and bookings near year 9999 or year 1
overflowing datetime arithmetic)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from conftest import Harness

pytestmark = pytest.mark.integration

EDGES = ["9999-12-31T00:00:00Z", "0001-01-01T00:00:00+14:00", "1899-12-31T23:59:59Z"]


@pytest.mark.parametrize("when", EDGES)
@pytest.mark.parametrize("bound", ["from", "to"])
async def test_slot_search_at_the_edges_of_the_calendar_is_refused(
    booking: Harness, bound: str, when: str
) -> None:
    params = {"state": "NY", "visit_type": "initial_psychiatric_evaluation", bound: when}
    response = await booking.client.get("/v1/slots", params=params)
    assert response.status_code == 422, response.text
    assert [e["field"] for e in response.json()["errors"]] == [f"query.{bound}"]


async def test_booking_at_the_end_of_the_calendar_is_refused(booking: Harness) -> None:
    clinician = await booking.put_clinician()
    patient = await booking.assessed_patient()
    response = await booking.book(patient, clinician, datetime(9999, 12, 31, 23, 30, tzinfo=UTC))
    assert response.status_code == 422, response.text
    assert [e["field"] for e in response.json()["errors"]] == ["starts_at"]
