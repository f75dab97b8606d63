"""The at_risk model: the probability that a customer's next rating is dissatisfied (1-2).

Features are computed point-in-time in DuckDB (only what was known before each rating), the
held-out set is the latest 20% of ratings, and the report compares AUC and calibration with a
constant predictor. Models are versioned files; their scores per as-of date live in
``model_scores``, which the ``at_risk`` rule reads.
"""

from __future__ import annotations

import json
import pickle
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import polars as pl
from sklearn.calibration import calibration_curve
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import brier_score_loss, roc_auc_score
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from core.errors import UserError
from core.files import path_inside, write_private_bytes
from core.progress import tracked
from warehouse.db import query_frame, register_frame

MODEL = "at_risk"
NUMERIC = [
    "tenure_years",
    "visits_90d",
    "prior_ratings",
    "prior_mean",
    "prior_min",
    "prior_complaints",
    "recent_complaints",
    "days_since_last",
    "contacts_90d",
]
CATEGORICAL = ["tier", "locale"]
MIN_TRAINING_ROWS = 200
SCORE_CHUNK = 500_000

# Features as of a moment ``at`` per row of ``feature_points(subscriber_id, point_at)``.
FEATURES_SQL = """
WITH ratings AS (
    SELECT subscriber_id, received_at, score FROM action_ratings
), prior AS (
    SELECT p.subscriber_id, p.point_at, count(r.score) AS prior_ratings,
           coalesce(avg(r.score), 0) AS prior_mean, coalesce(min(r.score), 0) AS prior_min,
           count(r.score) FILTER (r.score <= 2) AS prior_complaints,
           count(r.score) FILTER (r.score <= 2 AND r.received_at >= p.point_at - INTERVAL 60 DAY)
               AS recent_complaints,
           coalesce(date_diff('day', max(r.received_at), p.point_at), 9999) AS days_since_last
    FROM feature_points p
    LEFT JOIN ratings r ON r.subscriber_id = p.subscriber_id AND r.received_at < p.point_at
    GROUP BY p.subscriber_id, p.point_at
), visits_recent AS (
    SELECT p.subscriber_id, p.point_at, count(v.visit_id) AS visits_90d
    FROM feature_points p
    LEFT JOIN store_visits v ON v.subscriber_id = p.subscriber_id
     AND v.visited_at < p.point_at AND v.visited_at >= p.point_at - INTERVAL 90 DAY
    GROUP BY p.subscriber_id, p.point_at
), contacts AS (
    SELECT p.subscriber_id, p.point_at, count(a.action_id) AS contacts_90d
    FROM feature_points p
    LEFT JOIN care_actions a ON a.subscriber_id = p.subscriber_id
     AND a.sent_at < p.point_at AND a.sent_at >= p.point_at - INTERVAL 90 DAY
    GROUP BY p.subscriber_id, p.point_at
)
SELECT p.subscriber_id, p.point_at, s.tier, s.locale,
       date_diff('day', s.joined_on, CAST(p.point_at AS DATE)) / 365.25 AS tenure_years,
       v.visits_90d, p.prior_ratings, p.prior_mean, p.prior_min, p.prior_complaints,
       p.recent_complaints, p.days_since_last, c.contacts_90d
FROM prior p
JOIN visits_recent v USING (subscriber_id, point_at)
JOIN contacts c USING (subscriber_id, point_at)
JOIN subscribers s USING (subscriber_id)
"""


class ModelError(UserError, RuntimeError):
    pass


@dataclass(frozen=True)
class TrainedModel:
    version: int
    path: Path
    metrics: dict[str, Any]


def training_frame(con: duckdb.DuckDBPyConnection) -> pl.DataFrame:
    """One row per rating: features known just before it, and whether it was dissatisfied."""
    con.execute(
        "CREATE OR REPLACE TEMP TABLE feature_points AS "
        "SELECT DISTINCT subscriber_id, received_at AS point_at FROM action_ratings"
    )
    return query_frame(
        con,
        f"""
        SELECT f.*, (r.score <= 2)::INTEGER AS dissatisfied
        FROM ({FEATURES_SQL}) f
        JOIN action_ratings r
          ON r.subscriber_id = f.subscriber_id AND r.received_at = f.point_at
        ORDER BY f.point_at, f.subscriber_id""",
    )


def _pipeline() -> Pipeline:
    columns = ColumnTransformer(
        [
            ("numeric", StandardScaler(), NUMERIC),
            ("categorical", OneHotEncoder(handle_unknown="ignore"), CATEGORICAL),
        ]
    )
    return Pipeline(
        [("features", columns), ("model", LogisticRegression(max_iter=1000, class_weight=None))]
    )


def evaluate(y_true: np.ndarray, probability: np.ndarray, base_rate: float) -> dict[str, Any]:
    """AUC and calibration on held-out data, next to a constant predictor of the base rate."""
    constant = np.full_like(probability, base_rate)
    predicted, observed = calibration_curve(y_true, probability, n_bins=5, strategy="quantile")[
        ::-1
    ]
    return {
        "held_out_rows": len(y_true),
        "held_out_dissatisfied_rate": float(y_true.mean()),
        "auc": float(roc_auc_score(y_true, probability)),
        "auc_constant": 0.5,
        "brier": float(brier_score_loss(y_true, probability)),
        "brier_constant": float(brier_score_loss(y_true, constant)),
        "calibration": [
            {"predicted": round(float(p), 3), "observed": round(float(o), 3)}
            for p, o in zip(predicted, observed, strict=True)
        ],
    }


def train(con: duckdb.DuckDBPyConnection, models_dir: Path) -> TrainedModel:
    with tracked("at_risk: features known before each rating"):
        frame = training_frame(con).to_pandas()
    if len(frame) < MIN_TRAINING_ROWS or frame["dissatisfied"].nunique() < 2:
        raise ModelError(
            f"not enough rated care to train {MODEL}: {len(frame)} ratings "
            f"(need {MIN_TRAINING_ROWS}, with both satisfied and dissatisfied)"
        )
    cut = int(len(frame) * 0.8)  # by time: the model is judged on ratings after its training
    train_rows, held_out = frame.iloc[:cut], frame.iloc[cut:]
    with tracked(f"at_risk: fitting on {cut:,} ratings, judging on {len(held_out):,}"):
        pipeline = _pipeline().fit(train_rows[NUMERIC + CATEGORICAL], train_rows["dissatisfied"])
        probability = pipeline.predict_proba(held_out[NUMERIC + CATEGORICAL])[:, 1]
        metrics = evaluate(
            held_out["dissatisfied"].to_numpy(),
            probability,
            float(train_rows["dissatisfied"].mean()),
        )
    metrics["training_rows"] = cut
    with tracked(f"at_risk: final fit on all {len(frame):,} ratings"):
        pipeline.fit(frame[NUMERIC + CATEGORICAL], frame["dissatisfied"])
    return _save(con, models_dir, pipeline, metrics)


def _save(
    con: duckdb.DuckDBPyConnection, models_dir: Path, pipeline: Pipeline, metrics: dict[str, Any]
) -> TrainedModel:
    row = con.execute(
        "SELECT coalesce(max(version), 0) + 1 FROM models WHERE model = ?", [MODEL]
    ).fetchall()
    version = int(row[0][0])
    path = path_inside(models_dir / MODEL, f"v{version}", ".pkl")
    write_private_bytes(path, pickle.dumps(pipeline))
    con.execute(
        "INSERT INTO models VALUES (?, ?, ?, ?, now())",
        [MODEL, version, str(path), json.dumps(metrics)],
    )
    return TrainedModel(version, path, metrics)


def latest(con: duckdb.DuckDBPyConnection) -> tuple[int, Pipeline] | None:
    rows = con.execute(
        "SELECT version, path FROM models WHERE model = ? ORDER BY version DESC LIMIT 1", [MODEL]
    ).fetchall()
    if not rows:
        return None
    version, path = rows[0]
    # Our own files, written by train(); never load a pickle from elsewhere.
    return int(version), pickle.loads(Path(path).read_bytes())


def score(con: duckdb.DuckDBPyConnection, as_of: date) -> int:
    """Score every subscriber as of the end of ``as_of`` with the latest model; return count."""
    found = latest(con)
    if found is None:
        raise ModelError(f"no trained {MODEL} model: run 'careloop model train' first")
    version, pipeline = found
    at = datetime.combine(as_of + timedelta(days=1), time(), tzinfo=UTC)
    con.execute("DELETE FROM model_scores WHERE model = ? AND as_of = ?", [MODEL, as_of])
    total = int(con.execute("SELECT count(*) FROM subscribers").fetchall()[0][0])
    with tracked("at_risk: scoring subscribers", total) as advance:
        for offset in range(0, total, SCORE_CHUNK):
            _score_chunk(con, pipeline, version, as_of, at, offset)
            advance(min(SCORE_CHUNK, total - offset))
    return total


def _score_chunk(
    con: duckdb.DuckDBPyConnection,
    pipeline: Pipeline,
    version: int,
    as_of: date,
    at: datetime,
    offset: int,
) -> None:
    """Score one chunk of subscribers (in id order) and keep the scores."""
    con.execute(
        "CREATE OR REPLACE TEMP TABLE feature_points AS SELECT subscriber_id, "
        "?::TIMESTAMPTZ AS point_at FROM subscribers ORDER BY subscriber_id "
        "LIMIT ? OFFSET ?",
        [at, SCORE_CHUNK, offset],
    )
    features = query_frame(con, FEATURES_SQL).to_pandas()
    probability = pipeline.predict_proba(features[NUMERIC + CATEGORICAL])[:, 1]
    register_frame(
        con,
        "scores",
        pl.DataFrame({"subscriber_id": features["subscriber_id"], "probability": probability}),
    )
    con.execute(
        "INSERT INTO model_scores SELECT ?, ?, ?, subscriber_id, probability FROM scores",
        [MODEL, version, as_of],
    )
    con.unregister("scores")
