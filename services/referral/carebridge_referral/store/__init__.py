"""SQL of the referral service (asyncpg; tables live in the `referral` schema), one module per
table group. Use cases call it as `store.<function>`; nothing else here but SQL.

Every transaction that may assign a therapist or change capacity, licences, modalities,
consent or the queue takes the matching lock first (`lock_matching`).
"""

from __future__ import annotations

from carebridge_referral.store.care_plans import get_plan, plan_team, save_plan
from carebridge_referral.store.care_teams import (
    active_care_team,
    end_care_team,
    insert_care_team,
    set_team_psychiatrist,
)
from carebridge_referral.store.consents import PLAN_SCOPE, get_consent, list_consents, save_consent
from carebridge_referral.store.outcomes import (
    outcome_trend,
    record_intake_measure,
    record_repeat_measure,
)
from carebridge_referral.store.projection import PROJECTION
from carebridge_referral.store.psychiatrists import (
    PSYCHIATRISTS,
    current_psychiatrist,
    is_psychiatrist_of,
    psychiatrists_of,
    record_visit,
    treats,
)
from carebridge_referral.store.queue import (
    lock_matching,
    mark_held,
    mark_matched,
    waiting_referrals,
)
from carebridge_referral.store.referrals import (
    close_referral,
    get_referral,
    insert_referral,
    list_referrals,
    open_referral_for,
    referral_for_assessment,
    take_over_referral,
)
from carebridge_referral.store.therapists import (
    get_therapist,
    list_therapists,
    loads_of,
    upsert_therapist,
)

__all__ = [
    "PLAN_SCOPE",
    "PROJECTION",
    "PSYCHIATRISTS",
    "active_care_team",
    "close_referral",
    "current_psychiatrist",
    "end_care_team",
    "get_consent",
    "get_plan",
    "get_referral",
    "get_therapist",
    "insert_care_team",
    "insert_referral",
    "is_psychiatrist_of",
    "list_consents",
    "list_referrals",
    "list_therapists",
    "loads_of",
    "lock_matching",
    "mark_held",
    "mark_matched",
    "open_referral_for",
    "outcome_trend",
    "plan_team",
    "psychiatrists_of",
    "record_intake_measure",
    "record_repeat_measure",
    "record_visit",
    "referral_for_assessment",
    "save_consent",
    "save_plan",
    "set_team_psychiatrist",
    "take_over_referral",
    "treats",
    "upsert_therapist",
    "waiting_referrals",
]
