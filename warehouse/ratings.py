"""Each care action's latest rating: the table ``latest_ratings``, read through the view
``action_ratings`` (the segment rules' documented name).

An action's rating is its latest reply that gives a score, a rating or an opt-out that keeps
one ("1 stop": the customer rated, then asked us to stop; their case opens, and its second
round keeps off the channels they opted out of), and came within the reply window
(attribution ``matched``): a customer who replies "4" and then "5" has rated the action 5.
Replies stamped with the same moment go to the larger evaluation id. Rounds are actions of
their own (a second round or a follow-up is a new action), so each has its own rating.

The table exists so that no reader ranks every evaluation ever received: whoever writes
evaluations calls ``record_ratings`` in the same transaction with the rows it wrote, and the
actions those rows name are upserted, set-based, on the table's one key.
"""

from __future__ import annotations

import duckdb

COLUMNS = (
    "action_id, evaluation_id, subscriber_id, campaign_id, round, store_id, channel, score, "
    "comment, received_at"
)
# One row per action among ``{source}`` (rows shaped like evaluations): its latest rating.
LATEST = f"""
SELECT {COLUMNS} FROM {{source}}
WHERE (intent = 'rating' OR (intent = 'opt_out' AND score IS NOT NULL))
  AND attribution = 'matched' AND action_id IS NOT NULL
QUALIFY row_number() OVER (
    PARTITION BY action_id ORDER BY received_at DESC, evaluation_id DESC
) = 1
"""
# The stored rating stands unless the new one is later (or as late, with a larger id), so
# replies collected out of order, twice or late leave the table as the ranking would.
# A new or changed rating takes the next number of ``rated``: the cases read what changed.
UPSERT = f"""
INSERT INTO latest_ratings ({COLUMNS}) {LATEST}
ON CONFLICT (action_id) DO UPDATE SET
    evaluation_id = excluded.evaluation_id, subscriber_id = excluded.subscriber_id,
    campaign_id = excluded.campaign_id, round = excluded.round, store_id = excluded.store_id,
    channel = excluded.channel, score = excluded.score, comment = excluded.comment,
    received_at = excluded.received_at, rated = nextval('rating_order')
WHERE excluded.received_at > latest_ratings.received_at
   OR (excluded.received_at = latest_ratings.received_at
       AND excluded.evaluation_id > latest_ratings.evaluation_id)
"""


def record_ratings(con: duckdb.DuckDBPyConnection, written: str) -> None:
    """Fold the evaluations just written (``written``: a table or view with evaluations'
    columns, only the new rows) into each of their actions' latest rating."""
    con.execute(UPSERT.format(source=written))


def rebuild_ratings(con: duckdb.DuckDBPyConnection) -> None:
    """Every action's latest rating from every evaluation: for bulk writers that also delete
    evaluations (the demo's and the benchmarks' histories), never for a day's work."""
    con.execute("DELETE FROM latest_ratings")
    con.execute(
        f"INSERT INTO latest_ratings ({COLUMNS}) {LATEST.format(source='evaluations')} "
        "ORDER BY received_at"
    )
