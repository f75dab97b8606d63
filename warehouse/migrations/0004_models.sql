-- Trained models (files on disk, versioned) and the scores they give per as-of date.

CREATE TABLE models (
    model      VARCHAR NOT NULL,
    version    INTEGER NOT NULL,
    path       VARCHAR NOT NULL,
    metrics    JSON NOT NULL,
    trained_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (model, version)
);

CREATE TABLE model_scores (
    model         VARCHAR NOT NULL,
    version       INTEGER NOT NULL,
    as_of         DATE NOT NULL,
    subscriber_id VARCHAR NOT NULL,
    probability   DOUBLE NOT NULL,
    PRIMARY KEY (model, as_of, subscriber_id)
);
