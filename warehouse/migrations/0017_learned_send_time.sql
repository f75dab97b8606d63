-- Where a planned contact's send time came from, for campaigns with send_time: learned
-- (campaigns/send_time.py): learned (the customer's best hour), fallback (no history: the
-- campaign's fixed time) or explore (a random hour of the window, the honest comparison the
-- insights send-time report reads). NULL when the campaign's fixed time or a due time set it.
ALTER TABLE care_actions ADD COLUMN send_time_source VARCHAR;
