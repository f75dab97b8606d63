-- Staff mail is claimed before it leaves and recorded after, like customers' messages: a
-- row is 'sending' from the claim until the mailer answers (or a later run settles it), then
-- 'sent' or 'unconfirmed'. An escalation's row names the cases it tells about, so a pending
-- one keeps them out of the next mail.
ALTER TABLE staff_mail_log ALTER COLUMN sent_at DROP NOT NULL;
ALTER TABLE staff_mail_log ADD COLUMN status VARCHAR DEFAULT 'sent';
ALTER TABLE staff_mail_log ADD COLUMN claimed_at TIMESTAMPTZ;
ALTER TABLE staff_mail_log ADD COLUMN evaluation_ids VARCHAR[];
