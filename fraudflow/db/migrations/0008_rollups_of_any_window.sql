-- The quarter-hour aggregates, computed by one set of functions whether they are stored (the consumer adds a
-- flush's rows) or read for the partial quarter hours at either end of a dashboard window (which the stored
-- aggregates would count whole: a window ending at 03:10 counted everything up to 03:15). Each
-- fraudflow_<table>_of(source, lo, hi) returns the rows of <table> that the rows of `source` (shaped like
-- fraud_predictions) received in [lo, hi) amount to; fraudflow_edges(t0, t1) names the partial quarter hours
-- of [t0, t1), so a window's figures are its whole quarters from the tables plus its edges from the rows.

CREATE FUNCTION fraudflow_quarter_ceil(ts timestamptz) RETURNS timestamptz
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN date_bin('15 minutes', ts + interval '15 minutes' - interval '1 microsecond', '2000-01-01 00:00:00+00');

-- [lo, hi) ranges of [t0, t1) outside its whole quarter hours: at most two, empty ones left out.
CREATE FUNCTION fraudflow_edges(t0 timestamptz, t1 timestamptz) RETURNS TABLE (lo timestamptz, hi timestamptz)
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
BEGIN ATOMIC
    SELECT edge.lo, edge.hi
      FROM (VALUES (t0, least(fraudflow_quarter_ceil(t0), t1)),
                   (greatest(fraudflow_quarter(t1), fraudflow_quarter_ceil(t0), t0), t1)) AS edge (lo, hi)
     WHERE edge.lo < edge.hi;
END;

CREATE FUNCTION fraudflow_stats_of(source regclass, lo timestamptz, hi timestamptz)
    RETURNS SETOF fraud_stats_15m LANGUAGE plpgsql STABLE AS
$$
BEGIN
    RETURN QUERY EXECUTE format(
        $q$SELECT fraudflow_quarter(received_at), decision, model_version, count(*),
                  count(*) FILTER (WHERE fraud_prediction = 1), sum(fraud_proba::double precision), coalesce(shard_id, '')
             FROM %s WHERE received_at >= $1 AND received_at < $2
            GROUP BY 1, 2, 3, 7 ORDER BY 1, 2, 3, 7$q$, source) USING lo, hi;
END
$$;

CREATE FUNCTION fraudflow_histograms_of(source regclass, lo timestamptz, hi timestamptz)
    RETURNS SETOF fraud_histograms_15m LANGUAGE plpgsql STABLE AS
$$
BEGIN
    RETURN QUERY EXECUTE format(
        $q$SELECT bucket, metric, decision, bin, count(*), shard
             FROM (SELECT fraudflow_quarter(received_at) AS bucket, 'anomaly_score' AS metric, decision,
                          least(width_bucket(anomaly_score, 0, 1, 20), 20) AS bin, coalesce(shard_id, '') AS shard
                     FROM %1$s WHERE received_at >= $1 AND received_at < $2
                   UNION ALL
                   SELECT fraudflow_quarter(received_at), 'fraud_proba', decision,
                          least(width_bucket(fraud_proba, 0, 1, 20), 20), coalesce(shard_id, '')
                     FROM %1$s WHERE received_at >= $1 AND received_at < $2
                   UNION ALL
                   SELECT fraudflow_quarter(received_at), 'latency', decision,
                          width_bucket(extract(epoch FROM processed_at - received_at)::double precision,
                                       fraudflow_latency_edges()), coalesce(shard_id, '')
                     FROM %1$s WHERE received_at >= $1 AND received_at < $2) AS binned
            GROUP BY 1, 2, 3, 4, 6 ORDER BY 1, 2, 3, 4, 6$q$, source) USING lo, hi;
END
$$;

CREATE FUNCTION fraudflow_dimensions_of(source regclass, lo timestamptz, hi timestamptz)
    RETURNS SETOF fraud_dimensions_15m LANGUAGE plpgsql STABLE AS
$$
BEGIN
    RETURN QUERY EXECUTE format(
        $q$SELECT bucket, dimension, value, count(*), count(*) FILTER (WHERE fraud_prediction = 1),
                  sum(fraud_proba::double precision), shard
             FROM (SELECT fraudflow_quarter(received_at) AS bucket, 'country' AS dimension,
                          coalesce(country, '(unknown)') AS value, coalesce(shard_id, '') AS shard,
                          fraud_prediction, fraud_proba
                     FROM %1$s WHERE received_at >= $1 AND received_at < $2
                   UNION ALL
                   SELECT fraudflow_quarter(received_at), 'device_type', coalesce(device_type, '(unknown)'),
                          coalesce(shard_id, ''), fraud_prediction, fraud_proba
                     FROM %1$s WHERE received_at >= $1 AND received_at < $2
                   UNION ALL
                   SELECT fraudflow_quarter(received_at), 'source', coalesce(source, '(unknown)'),
                          coalesce(shard_id, ''), fraud_prediction, fraud_proba
                     FROM %1$s WHERE received_at >= $1 AND received_at < $2) AS dimensions
            GROUP BY 1, 2, 3, 7 ORDER BY 1, 2, 3, 7$q$, source) USING lo, hi;
END
$$;

CREATE FUNCTION fraudflow_places_of(source regclass, lo timestamptz, hi timestamptz)
    RETURNS SETOF fraud_places_15m LANGUAGE plpgsql STABLE AS
$$
BEGIN
    RETURN QUERY EXECUTE format(
        $q$SELECT fraudflow_quarter(received_at), round(latitude::numeric, 1)::float,
                  round(longitude::numeric, 1)::float, count(*), sum(fraud_proba::double precision), coalesce(shard_id, '')
             FROM %s WHERE received_at >= $1 AND received_at < $2
                       AND latitude IS NOT NULL AND longitude IS NOT NULL
            GROUP BY 1, 2, 3, 6 ORDER BY 1, 2, 3, 6$q$, source) USING lo, hi;
END
$$;

-- Every statement feeds its rows in primary-key order, and the tables are always visited in the same order,
-- so concurrent flushes cannot deadlock.
CREATE OR REPLACE FUNCTION fraudflow_add_to_rollups(source regclass) RETURNS void
    LANGUAGE plpgsql AS
$$
BEGIN
    INSERT INTO fraud_stats_15m AS t SELECT * FROM fraudflow_stats_of(source, '-infinity', 'infinity')
        ON CONFLICT (bucket, decision, model_version, shard_id) DO UPDATE
           SET transactions = t.transactions + excluded.transactions,
               frauds = t.frauds + excluded.frauds,
               sum_proba = t.sum_proba + excluded.sum_proba;
    INSERT INTO fraud_histograms_15m AS t SELECT * FROM fraudflow_histograms_of(source, '-infinity', 'infinity')
        ON CONFLICT (bucket, metric, decision, bin, shard_id) DO UPDATE SET n = t.n + excluded.n;
    INSERT INTO fraud_dimensions_15m AS t SELECT * FROM fraudflow_dimensions_of(source, '-infinity', 'infinity')
        ON CONFLICT (bucket, dimension, value, shard_id) DO UPDATE
           SET transactions = t.transactions + excluded.transactions,
               frauds = t.frauds + excluded.frauds,
               sum_proba = t.sum_proba + excluded.sum_proba;
    INSERT INTO fraud_places_15m AS t SELECT * FROM fraudflow_places_of(source, '-infinity', 'infinity')
        ON CONFLICT (bucket, latitude, longitude, shard_id) DO UPDATE
           SET transactions = t.transactions + excluded.transactions,
               sum_proba = t.sum_proba + excluded.sum_proba;
END
$$;
