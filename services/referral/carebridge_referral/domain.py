"""Pure rules of the referral service (therapist matching arrives with the referral issue)."""
