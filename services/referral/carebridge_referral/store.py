"""SQL of the referral service."""
