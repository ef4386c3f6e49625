-- Quarter-hour aggregates of fraud_predictions, for the dashboard's long ranges (cost follows the number of
-- quarter hours, not of rows). The consumer adds each flush's new rows in the same transaction that stores
-- them, so the aggregates are exactly as current, and as exactly-once, as the rows.

CREATE FUNCTION fraudflow_quarter(ts timestamptz) RETURNS timestamptz
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN date_bin('15 minutes', ts, '2000-01-01 00:00:00+00');

-- End-to-end latency (processed_at - received_at, seconds) bins: 0 below 10 ms, i for edge[i] <= x < edge[i+1]
-- (1-based edges), the last bin for 300 s and more. dash_app/queries.py holds the same edges to estimate
-- percentiles, and a test checks that the two agree.
CREATE FUNCTION fraudflow_latency_edges() RETURNS double precision[]
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN '{0.01,0.02,0.05,0.1,0.15,0.2,0.3,0.5,0.75,1,1.5,2,3,5,10,30,60,300}'::double precision[];

-- Counts and probability sums per quarter hour, decision and model.
CREATE TABLE fraud_stats_15m (
    bucket        timestamptz      NOT NULL,
    decision      text             NOT NULL,
    model_version text             NOT NULL,
    transactions  bigint           NOT NULL,
    frauds        bigint           NOT NULL,
    sum_proba     double precision NOT NULL,
    PRIMARY KEY (bucket, decision, model_version)
);

-- Histograms per quarter hour and decision: fraud_proba and anomaly_score in 20 bins of 0.05 (1..20, as
-- width_bucket numbers them), latency in the bins above.
CREATE TABLE fraud_histograms_15m (
    bucket   timestamptz NOT NULL,
    metric   text        NOT NULL CHECK (metric IN ('fraud_proba', 'anomaly_score', 'latency')),
    decision text        NOT NULL,
    bin      integer     NOT NULL,
    n        bigint      NOT NULL,
    PRIMARY KEY (bucket, metric, decision, bin)
);

-- Breakdowns per quarter hour by country, source and device type ('(unknown)' for a missing value).
CREATE TABLE fraud_dimensions_15m (
    bucket       timestamptz      NOT NULL,
    dimension    text             NOT NULL CHECK (dimension IN ('country', 'source', 'device_type')),
    value        text             NOT NULL,
    transactions bigint           NOT NULL,
    frauds       bigint           NOT NULL,
    sum_proba    double precision NOT NULL,
    PRIMARY KEY (bucket, dimension, value)
);

-- Places per quarter hour, on the dashboard map's 0.1 degree grid.
CREATE TABLE fraud_places_15m (
    bucket       timestamptz      NOT NULL,
    latitude     double precision NOT NULL,
    longitude    double precision NOT NULL,
    transactions bigint           NOT NULL,
    sum_proba    double precision NOT NULL,
    PRIMARY KEY (bucket, latitude, longitude)
);

-- Add the rows of `source` (a table shaped like fraud_predictions) to the aggregates. Every statement feeds
-- its rows in primary-key order, and the tables are always visited in the same order, so concurrent flushes
-- of different shards wait for each other instead of deadlocking.
CREATE FUNCTION fraudflow_add_to_rollups(source regclass) RETURNS void
    LANGUAGE plpgsql AS
$$
BEGIN
    EXECUTE format(
        $q$INSERT INTO fraud_stats_15m AS t (bucket, decision, model_version, transactions, frauds, sum_proba)
           SELECT fraudflow_quarter(received_at), decision, model_version, count(*),
                  count(*) FILTER (WHERE fraud_prediction = 1), sum(fraud_proba)
             FROM %s WHERE received_at IS NOT NULL
            GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
           ON CONFLICT (bucket, decision, model_version) DO UPDATE
              SET transactions = t.transactions + excluded.transactions,
                  frauds = t.frauds + excluded.frauds,
                  sum_proba = t.sum_proba + excluded.sum_proba$q$, source);

    EXECUTE format(
        $q$INSERT INTO fraud_histograms_15m AS t (bucket, metric, decision, bin, n)
           SELECT bucket, metric, decision, bin, count(*)
             FROM (SELECT fraudflow_quarter(received_at) AS bucket, 'anomaly_score' AS metric, decision,
                          least(width_bucket(anomaly_score, 0, 1, 20), 20) AS bin
                     FROM %1$s WHERE received_at IS NOT NULL
                   UNION ALL
                   SELECT fraudflow_quarter(received_at), 'fraud_proba', decision,
                          least(width_bucket(fraud_proba, 0, 1, 20), 20)
                     FROM %1$s WHERE received_at IS NOT NULL
                   UNION ALL
                   SELECT fraudflow_quarter(received_at), 'latency', decision,
                          width_bucket(extract(epoch FROM processed_at - received_at)::double precision,
                                       fraudflow_latency_edges())
                     FROM %1$s WHERE received_at IS NOT NULL) AS binned
            GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4
           ON CONFLICT (bucket, metric, decision, bin) DO UPDATE SET n = t.n + excluded.n$q$, source);

    EXECUTE format(
        $q$INSERT INTO fraud_dimensions_15m AS t (bucket, dimension, value, transactions, frauds, sum_proba)
           SELECT bucket, dimension, value, count(*), count(*) FILTER (WHERE fraud_prediction = 1), sum(fraud_proba)
             FROM (SELECT fraudflow_quarter(received_at) AS bucket, 'country' AS dimension,
                          coalesce(country, '(unknown)') AS value, fraud_prediction, fraud_proba
                     FROM %1$s WHERE received_at IS NOT NULL
                   UNION ALL
                   SELECT fraudflow_quarter(received_at), 'device_type', coalesce(device_type, '(unknown)'),
                          fraud_prediction, fraud_proba
                     FROM %1$s WHERE received_at IS NOT NULL
                   UNION ALL
                   SELECT fraudflow_quarter(received_at), 'source', coalesce(source, '(unknown)'),
                          fraud_prediction, fraud_proba
                     FROM %1$s WHERE received_at IS NOT NULL) AS dimensions
            GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
           ON CONFLICT (bucket, dimension, value) DO UPDATE
              SET transactions = t.transactions + excluded.transactions,
                  frauds = t.frauds + excluded.frauds,
                  sum_proba = t.sum_proba + excluded.sum_proba$q$, source);

    EXECUTE format(
        $q$INSERT INTO fraud_places_15m AS t (bucket, latitude, longitude, transactions, sum_proba)
           SELECT fraudflow_quarter(received_at), round(latitude::numeric, 1)::float,
                  round(longitude::numeric, 1)::float, count(*), sum(fraud_proba)
             FROM %s WHERE received_at IS NOT NULL AND latitude IS NOT NULL AND longitude IS NOT NULL
            GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
           ON CONFLICT (bucket, latitude, longitude) DO UPDATE
              SET transactions = t.transactions + excluded.transactions,
                  sum_proba = t.sum_proba + excluded.sum_proba$q$, source);
END
$$;

-- The flagged table's default order (received_at DESC NULLS LAST, id DESC), so its first page reads 15 index
-- entries instead of sorting every flagged row of the range.
DROP INDEX fraud_predictions_flagged_idx;
CREATE INDEX fraud_predictions_flagged_idx ON fraud_predictions (received_at DESC NULLS LAST, id DESC)
    WHERE decision <> 'approve';

-- The rows stored before this migration.
SELECT fraudflow_add_to_rollups('fraud_predictions');
