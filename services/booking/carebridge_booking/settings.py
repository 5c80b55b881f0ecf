"""Settings of the booking service (environment variables, prefix CAREBRIDGE_)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from pydantic import Field

from carebridge_booking.domain import BookingRules, VisitLengths
from carebridge_contracts.services import service_port
from carebridge_shared.settings import ServiceSettings, database_url_field

DEFAULT_SEED_FILE = Path(__file__).parent / "seed" / "clinicians.json"


SERVICE = "booking"


class BookingSettings(ServiceSettings):
    http_port: int = service_port(SERVICE)
    database_url: str = database_url_field(SERVICE)
    clinician_seed_file: str = Field(
        default=str(DEFAULT_SEED_FILE),
        description="JSON file of clinicians upserted at startup; empty disables seeding.",
    )
    initial_evaluation_minutes: int = Field(
        default=60, ge=1, le=480, description="Length of an initial psychiatric evaluation."
    )
    follow_up_minutes: int = Field(
        default=30, ge=1, le=480, description="Length of a psychiatric follow-up."
    )
    therapy_minutes: int = Field(
        default=53, ge=1, le=480, description="Length of therapy intakes and sessions."
    )
    slot_step_minutes: int = Field(
        default=30, ge=5, le=240, description="Slot start times lie on this grid."
    )
    booking_horizon_days: int = Field(
        default=60, ge=1, le=366, description="How far ahead a visit may be booked."
    )
    slot_query_max_days: int = Field(
        default=14, ge=1, le=62, description="Widest from/to range GET /v1/slots accepts."
    )
    allow_outcome_before_start: bool = Field(
        default=False,
        description="Demos only: let a visit be completed or marked no-show before it starts.",
    )

    def rules(self) -> BookingRules:
        return BookingRules(
            lengths=VisitLengths(
                initial_evaluation=timedelta(minutes=self.initial_evaluation_minutes),
                follow_up=timedelta(minutes=self.follow_up_minutes),
                therapy=timedelta(minutes=self.therapy_minutes),
            ),
            slot_step=timedelta(minutes=self.slot_step_minutes),
            horizon=timedelta(days=self.booking_horizon_days),
            max_query_range=timedelta(days=self.slot_query_max_days),
            allow_outcome_before_start=self.allow_outcome_before_start,
        )
