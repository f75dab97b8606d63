-- Documented views that segment rules read. Rules use these, not the raw tables, so the raw
-- schema can evolve without breaking the data team's rules.

-- One row per subscriber, with the calendar fields rules need.
CREATE VIEW subscriber_profile AS
SELECT
    s.subscriber_id, s.tier, s.locale, s.timezone, s.home_store_id,
    s.birthday, s.joined_on,
    s.phone IS NOT NULL AS has_phone,
    s.email IS NOT NULL AS has_email
FROM subscribers s;

-- Store visits with the store's timezone and the visit's local calendar date.
CREATE VIEW visits AS
SELECT
    v.visit_id, v.subscriber_id, v.store_id, v.visited_at, v.service_type,
    st.timezone AS store_timezone,
    CAST(timezone(st.timezone, v.visited_at) AS DATE) AS visit_local_date
FROM store_visits v
JOIN stores st USING (store_id);

-- Evaluation requests already made: any care action that carried a survey and was not suppressed.
CREATE VIEW survey_requests AS
SELECT action_id, campaign_id, subscriber_id, occasion, round, store_id, channel, sent_at, status
FROM care_actions
WHERE survey AND status NOT IN ('suppressed', 'held_out');

-- One rating per care action: the latest in-window reply that is a rating. A customer who
-- replies "4" and then "5" has rated the action 5.
CREATE VIEW action_ratings AS
SELECT evaluation_id, action_id, subscriber_id, campaign_id, round, store_id, channel,
       score, comment, received_at
FROM (
    SELECT *, row_number() OVER (
        PARTITION BY action_id ORDER BY received_at DESC, evaluation_id DESC
    ) AS rn
    FROM evaluations
    WHERE intent = 'rating' AND attribution = 'matched'
)
WHERE rn = 1;
