"""Settings of the notification service (environment variables prefixed CAREBRIDGE_)."""

from __future__ import annotations

from pydantic import Field, field_validator

from carebridge_contracts.services import service_port
from carebridge_shared.settings import ServiceSettings, database_url_field

SERVICE = "notification"


class NotificationSettings(ServiceSettings):
    http_port: int = service_port(SERVICE)
    database_url: str = database_url_field(SERVICE)
    smtp_host: str = Field(default="127.0.0.1", description="SMTP server (relay) host.")
    smtp_port: int = Field(default=2525, description="SMTP server port.")
    smtp_sender: str = Field(default="carebridge@localhost", description="From address.")
    smtp_timeout_seconds: float = Field(
        default=10.0, description="Bound on one SMTP conversation (the row stays locked meanwhile)."
    )
    reminder_offsets_minutes: list[int] = Field(
        default=[1440, 60], description="Reminders go out this many minutes before a visit."
    )
    delivery_max_attempts: int = Field(
        default=5, ge=1, description="SMTP attempts before a delivery is failed."
    )
    delivery_backoff_initial_seconds: float = Field(
        default=2.0, gt=0, description="First retry delay after an SMTP failure; doubles."
    )
    delivery_backoff_max_seconds: float = Field(
        default=600.0, gt=0, description="Ceiling of the SMTP retry delay."
    )
    dispatch_interval_ms: int = Field(
        default=500,
        ge=1,
        description="Dispatcher poll interval (reminders falling due, deliveries another "
        "replica queued); a commit in this process that queues deliveries wakes a worker at once.",
    )
    dispatch_concurrency: int = Field(
        default=4,
        ge=1,
        description="Dispatcher workers of one replica; each sends one claimed set of due "
        "deliveries at a time (rows claimed with SKIP LOCKED as between replicas; a commit that "
        "queues deliveries wakes one of them); keep below the pool size.",
    )
    dispatch_batch_size: int = Field(
        default=50, ge=1, description="Most deliveries one dispatch round handles."
    )
    dispatcher_enabled: bool = Field(
        default=True, description="Run the background dispatcher (tests may drive it by hand)."
    )
    on_call_clinician_id: str = Field(
        default="on-call",
        description="Recipient id of urgent safety alerts: the primary of the on-call route "
        "(PUT /v1/on-call-route, ops only); the contact routes refuse it.",
    )
    on_call_escalation_id: str = Field(
        default="on-call-escalation",
        description="Recipient id of the on-call route's escalation recipient, who gets a safety "
        "alert the primary could not be sent (no route, SMTP failure).",
    )
    on_call_bootstrap_primary_email: str = Field(
        default="",
        description="Bootstrap: when no on-call route exists at start, set one with this primary "
        "address (audit log: set by the bootstrap). Empty: none; /readyz stays 503 "
        "(on_call_route) until ops set the route.",
    )
    on_call_bootstrap_escalation_email: str = Field(
        default="",
        description="Bootstrap: the escalation address of that route (default: the primary's).",
    )
    care_plan_notice_delay_seconds: float = Field(
        default=10.0,
        ge=0,
        description="How long a care-plan change notice waits before it is sent, so that a "
        "member's removal applied a moment later (another topic) can still cancel it.",
    )
    link_base_url: str = Field(
        default="https://carebridge.invalid", description="Base of the links put in messages."
    )
    outcome_measure_url: str = Field(
        default="http://127.0.0.1:8001/v1/outcome-measures",
        description="Where a patient takes their repeat PHQ-9 / GAD-7 (intake's POST "
        "/v1/outcome-measures); a psychiatric follow-up's reminder links here with the visit's "
        "appointment_id.",
    )
    dev_clock: bool = Field(
        default=False, description="Expose /v1/_dev/clock to move the service's time forward."
    )

    @property
    def on_call_ids(self) -> frozenset[str]:
        """Recipient ids that only the on-call route (ops) may point somewhere."""
        return frozenset({self.on_call_clinician_id, self.on_call_escalation_id})

    @field_validator("reminder_offsets_minutes")
    @classmethod
    def _positive_offsets(cls, value: list[int]) -> list[int]:
        if any(offset <= 0 for offset in value):
            raise ValueError("reminder offsets must be positive minutes")
        return value
