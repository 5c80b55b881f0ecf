"""HTTP API of the referral service (referrals and care plans arrive with the referral issue)."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(prefix="/v1", tags=["referral"])
