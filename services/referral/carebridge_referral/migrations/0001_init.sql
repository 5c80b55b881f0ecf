-- The referral service's schema starts with the shared outbox/inbox tables only.
SELECT 1;
