-- The model lifecycle (docs/models.md). challenger_scores: the challenger's shadow scores of transactions the
-- champion decided (with the champion's model score and decision, so a comparison needs no join); a record
-- read twice stores once. drift_reports: per hour and model version, population stability (PSI) of the score
-- and of each input against the version's training reference, the decision shares and the degraded share.
CREATE TABLE challenger_scores (
    event_id uuid NOT NULL,
    challenger_version text NOT NULL,
    champion_version text NOT NULL,
    champion_proba real NOT NULL,
    champion_decision text NOT NULL CHECK (champion_decision IN ('approve', 'review', 'decline')),
    fraud_proba real NOT NULL,
    anomaly_score real NOT NULL,
    decision text NOT NULL CHECK (decision IN ('approve', 'review', 'decline')),
    scored_at timestamptz NOT NULL,
    PRIMARY KEY (event_id, challenger_version)
);
CREATE INDEX challenger_scores_scored_at_idx ON challenger_scores (scored_at);

CREATE TABLE drift_reports (
    window_start timestamptz NOT NULL,
    window_end timestamptz NOT NULL,
    model_version text NOT NULL,
    transactions bigint NOT NULL,
    score_psi real,
    features_psi jsonb NOT NULL DEFAULT '{}',
    max_feature text,
    max_feature_psi real,
    approve_share real NOT NULL,
    review_share real NOT NULL,
    decline_share real NOT NULL,
    degraded_share real NOT NULL,
    computed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (window_start, model_version)
);

GRANT INSERT ON challenger_scores TO fraudflow_writer;
GRANT INSERT, UPDATE ON drift_reports TO fraudflow_writer;
GRANT SELECT ON challenger_scores, drift_reports TO fraudflow_reader, fraudflow_writer, fraudflow_policy;
