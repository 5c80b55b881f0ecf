"""Settings of the referral service (environment variables, prefix CAREBRIDGE_)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from carebridge_contracts.events.common import Modality
from carebridge_contracts.services import service_port
from carebridge_shared.settings import ServiceSettings, database_url_field

DEFAULT_SEED_FILE = Path(__file__).parent / "seed" / "therapists.json"


SERVICE = "referral"


class ReferralSettings(ServiceSettings):
    http_port: int = service_port(SERVICE)
    database_url: str = database_url_field(SERVICE)
    default_modality: Modality = Field(
        default="CBT", description="Modality of referrals opened from an intake assessment."
    )
    therapist_seed_file: str = Field(
        default=str(DEFAULT_SEED_FILE),
        description="JSON file of therapists (matching view) added at startup when missing; "
        "empty disables seeding.",
    )
