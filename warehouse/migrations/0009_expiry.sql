-- A care action stops being worth sending at expires_at (a birthday greeting is not sent the
-- day after); dispatch marks an expired one 'expired' instead of sending it. Actions planned
-- before this migration get 72 hours from their planned time.
ALTER TABLE care_actions ADD COLUMN expires_at TIMESTAMPTZ;
UPDATE care_actions SET expires_at = scheduled_at + INTERVAL 72 HOUR
WHERE status = 'queued' AND scheduled_at IS NOT NULL;
