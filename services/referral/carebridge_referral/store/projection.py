"""What referral's handlers derive from other services' events, for `carebridge projection
rebuild referral`."""

from __future__ import annotations

from carebridge_shared.projection import Compared, Copied, Projection

# What referral's handlers derive from intake's and booking's events (`carebridge projection
# rebuild referral` replays them and compares). The rest of referral's state follows from its
# API, the roster and consents at the time (psychiatrists' referrals, matching, care teams,
# plans), so events alone cannot reproduce it.
PROJECTION = Projection(
    compared=(
        # An intake with therapy interest opens one referral. What happens to it next (a match,
        # a psychiatrist taking it over, closing) is the API's; its id and times are generated.
        Compared(
            "referrals",
            key=("assessment_id",),
            columns=("patient_id",),
            where="assessment_id IS NOT NULL",
        ),
        # Psychiatric visits, one row per appointment, as booking's events left them.
        Compared(
            "psychiatric_visits",
            key=("appointment_id",),
            columns=("patient_id", "psychiatrist_id", "status", "starts_at"),
        ),
        # The outcome trend: intake assessments and repeat measures, as intake scored them.
        Compared(
            "outcome_measures",
            key=("assessment_id",),
            columns=(
                "patient_id",
                "kind",
                "measured_at",
                "phq9_total",
                "gad7_total",
                "phq9_change",
                "gad7_change",
                "phq9_response",
                "phq9_remission",
            ),
        ),
    ),
    copied=(
        Copied("therapists"),  # the roster (seed and API), named by copied referrals
        # Psychiatrists' referrals: an open one keeps an intake from opening a second one.
        Copied("referrals", where="assessment_id IS NULL"),
        # Psychiatrists from before psychiatric visits were kept (migration 0002).
        Copied("carried_over_psychiatrists"),
    ),
)
