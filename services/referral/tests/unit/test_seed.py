"""The packaged roster is booking's therapists: same ids, licence states and modalities."""

from __future__ import annotations

import json
from pathlib import Path

from carebridge_booking.settings import DEFAULT_SEED_FILE as BOOKING_SEED
from carebridge_referral.roster import load_seed
from carebridge_referral.settings import DEFAULT_SEED_FILE, ReferralSettings


def test_seed_matches_the_booking_directory() -> None:
    booking = json.loads(Path(BOOKING_SEED).read_text())["clinicians"]
    expected = {
        c["id"]: ({lic["state"] for lic in c["licences"]}, set(c["modalities"]), c["active"])
        for c in booking
        if c["role"] == "therapist"
    }
    seed = load_seed(DEFAULT_SEED_FILE).therapists
    assert {t.id: (set(t.licence_states), set(t.modalities), t.active) for t in seed} == expected
    assert all(t.capacity > 0 for t in seed)


def test_settings_default_to_the_packaged_seed_and_cbt() -> None:
    settings = ReferralSettings()
    assert Path(settings.therapist_seed_file) == DEFAULT_SEED_FILE
    assert settings.default_modality == "CBT"
    assert settings.http_port == 8003
