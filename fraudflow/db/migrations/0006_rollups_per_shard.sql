-- Aggregate rows per shard: before, every flush of every shard updated the same quarter-hour rows, so one
-- worker paused inside a flush (a frozen host, SIGSTOP) held row locks that stopped every shard on every
-- worker. Now a flush touches only its own shard's rows; the dashboard sums them at read time (its queries
-- already sum over the primary key's other columns). Rows stored before this migration keep shard ''.
ALTER TABLE fraud_stats_15m ADD COLUMN shard_id text NOT NULL DEFAULT '';
ALTER TABLE fraud_stats_15m DROP CONSTRAINT fraud_stats_15m_pkey,
    ADD PRIMARY KEY (bucket, decision, model_version, shard_id);
ALTER TABLE fraud_histograms_15m ADD COLUMN shard_id text NOT NULL DEFAULT '';
ALTER TABLE fraud_histograms_15m DROP CONSTRAINT fraud_histograms_15m_pkey,
    ADD PRIMARY KEY (bucket, metric, decision, bin, shard_id);
ALTER TABLE fraud_dimensions_15m ADD COLUMN shard_id text NOT NULL DEFAULT '';
ALTER TABLE fraud_dimensions_15m DROP CONSTRAINT fraud_dimensions_15m_pkey,
    ADD PRIMARY KEY (bucket, dimension, value, shard_id);
ALTER TABLE fraud_places_15m ADD COLUMN shard_id text NOT NULL DEFAULT '';
ALTER TABLE fraud_places_15m DROP CONSTRAINT fraud_places_15m_pkey,
    ADD PRIMARY KEY (bucket, latitude, longitude, shard_id);

CREATE OR REPLACE FUNCTION fraudflow_add_to_rollups(source regclass) RETURNS void
    LANGUAGE plpgsql AS
$$
BEGIN
    EXECUTE format(
        $q$INSERT INTO fraud_stats_15m AS t (bucket, decision, model_version, shard_id, transactions, frauds,
                                             sum_proba)
           SELECT fraudflow_quarter(received_at), decision, model_version, coalesce(shard_id, ''), count(*),
                  count(*) FILTER (WHERE fraud_prediction = 1), sum(fraud_proba)
             FROM %s WHERE received_at IS NOT NULL
            GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4
           ON CONFLICT (bucket, decision, model_version, shard_id) DO UPDATE
              SET transactions = t.transactions + excluded.transactions,
                  frauds = t.frauds + excluded.frauds,
                  sum_proba = t.sum_proba + excluded.sum_proba$q$, source);

    EXECUTE format(
        $q$INSERT INTO fraud_histograms_15m AS t (bucket, metric, decision, bin, shard_id, n)
           SELECT bucket, metric, decision, bin, shard, count(*)
             FROM (SELECT fraudflow_quarter(received_at) AS bucket, 'anomaly_score' AS metric, decision,
                          least(width_bucket(anomaly_score, 0, 1, 20), 20) AS bin, coalesce(shard_id, '') AS shard
                     FROM %1$s WHERE received_at IS NOT NULL
                   UNION ALL
                   SELECT fraudflow_quarter(received_at), 'fraud_proba', decision,
                          least(width_bucket(fraud_proba, 0, 1, 20), 20), coalesce(shard_id, '')
                     FROM %1$s WHERE received_at IS NOT NULL
                   UNION ALL
                   SELECT fraudflow_quarter(received_at), 'latency', decision,
                          width_bucket(extract(epoch FROM processed_at - received_at)::double precision,
                                       fraudflow_latency_edges()), coalesce(shard_id, '')
                     FROM %1$s WHERE received_at IS NOT NULL) AS binned
            GROUP BY 1, 2, 3, 4, 5 ORDER BY 1, 2, 3, 4, 5
           ON CONFLICT (bucket, metric, decision, bin, shard_id) DO UPDATE SET n = t.n + excluded.n$q$, source);

    EXECUTE format(
        $q$INSERT INTO fraud_dimensions_15m AS t (bucket, dimension, value, shard_id, transactions, frauds,
                                                  sum_proba)
           SELECT bucket, dimension, value, shard, count(*), count(*) FILTER (WHERE fraud_prediction = 1),
                  sum(fraud_proba)
             FROM (SELECT fraudflow_quarter(received_at) AS bucket, 'country' AS dimension,
                          coalesce(country, '(unknown)') AS value, coalesce(shard_id, '') AS shard,
                          fraud_prediction, fraud_proba
                     FROM %1$s WHERE received_at IS NOT NULL
                   UNION ALL
                   SELECT fraudflow_quarter(received_at), 'device_type', coalesce(device_type, '(unknown)'),
                          coalesce(shard_id, ''), fraud_prediction, fraud_proba
                     FROM %1$s WHERE received_at IS NOT NULL
                   UNION ALL
                   SELECT fraudflow_quarter(received_at), 'source', coalesce(source, '(unknown)'),
                          coalesce(shard_id, ''), fraud_prediction, fraud_proba
                     FROM %1$s WHERE received_at IS NOT NULL) AS dimensions
            GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4
           ON CONFLICT (bucket, dimension, value, shard_id) DO UPDATE
              SET transactions = t.transactions + excluded.transactions,
                  frauds = t.frauds + excluded.frauds,
                  sum_proba = t.sum_proba + excluded.sum_proba$q$, source);

    EXECUTE format(
        $q$INSERT INTO fraud_places_15m AS t (bucket, latitude, longitude, shard_id, transactions, sum_proba)
           SELECT fraudflow_quarter(received_at), round(latitude::numeric, 1)::float,
                  round(longitude::numeric, 1)::float, coalesce(shard_id, ''), count(*), sum(fraud_proba)
             FROM %s WHERE received_at IS NOT NULL AND latitude IS NOT NULL AND longitude IS NOT NULL
            GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4
           ON CONFLICT (bucket, latitude, longitude, shard_id) DO UPDATE
              SET transactions = t.transactions + excluded.transactions,
                  sum_proba = t.sum_proba + excluded.sum_proba$q$, source);
END
$$;
