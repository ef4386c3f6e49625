-- The reference design's fraud rate by city, and city names on the dashboard map: cities become a breakdown
-- dimension, and each place of the map's 0.1 degree grid is kept per city.

ALTER TABLE fraud_dimensions_15m DROP CONSTRAINT fraud_dimensions_15m_dimension_check,
    ADD CONSTRAINT fraud_dimensions_15m_dimension_check
        CHECK (dimension IN ('country', 'source', 'device_type', 'city'));

-- '' marks the aggregates of rows stored before this migration that no longer exist (a retention job deleted
-- them): their cities are unknown. The others are split by city below.
ALTER TABLE fraud_places_15m ADD COLUMN city text NOT NULL DEFAULT '';
ALTER TABLE fraud_places_15m DROP CONSTRAINT fraud_places_15m_pkey,
    ADD PRIMARY KEY (bucket, latitude, longitude, shard_id, city);

CREATE OR REPLACE FUNCTION fraudflow_dimensions_of(source regclass, lo timestamptz, hi timestamptz)
    RETURNS SETOF fraud_dimensions_15m LANGUAGE plpgsql STABLE AS
$$
BEGIN
    RETURN QUERY EXECUTE format(
        $q$SELECT bucket, dimension, value, count(*), count(*) FILTER (WHERE fraud_prediction = 1),
                  sum(fraud_proba::double precision), shard
             FROM (SELECT fraudflow_quarter(received_at) AS bucket, dimension,
                          coalesce(value, '(unknown)') AS value, coalesce(shard_id, '') AS shard,
                          fraud_prediction, fraud_proba
                     FROM %1$s
                    CROSS JOIN LATERAL (VALUES ('country', country), ('device_type', device_type),
                                               ('source', source), ('city', city)) AS d (dimension, value)
                    WHERE received_at >= $1 AND received_at < $2) AS dimensions
            GROUP BY 1, 2, 3, 7 ORDER BY 1, 2, 3, 7$q$, source) USING lo, hi;
END
$$;

CREATE OR REPLACE FUNCTION fraudflow_places_of(source regclass, lo timestamptz, hi timestamptz)
    RETURNS SETOF fraud_places_15m LANGUAGE plpgsql STABLE AS
$$
BEGIN
    RETURN QUERY EXECUTE format(
        $q$SELECT fraudflow_quarter(received_at), round(latitude::numeric, 1)::float,
                  round(longitude::numeric, 1)::float, count(*), sum(fraud_proba::double precision),
                  coalesce(shard_id, ''), coalesce(city, '(unknown)')
             FROM %s WHERE received_at >= $1 AND received_at < $2
                       AND latitude IS NOT NULL AND longitude IS NOT NULL
            GROUP BY 1, 2, 3, 6, 7 ORDER BY 1, 2, 3, 6, 7$q$, source) USING lo, hi;
END
$$;

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
        ON CONFLICT (bucket, latitude, longitude, shard_id, city) DO UPDATE
           SET transactions = t.transactions + excluded.transactions,
               sum_proba = t.sum_proba + excluded.sum_proba;
END
$$;

-- The stored rows' cities: added as a dimension, and moved out of each place's city-less aggregate.
INSERT INTO fraud_dimensions_15m
SELECT * FROM fraudflow_dimensions_of('fraud_predictions', '-infinity', 'infinity') WHERE dimension = 'city';

CREATE TEMPORARY TABLE places_by_city ON COMMIT DROP AS
SELECT * FROM fraudflow_places_of('fraud_predictions', '-infinity', 'infinity');
INSERT INTO fraud_places_15m SELECT * FROM places_by_city;
UPDATE fraud_places_15m AS t
   SET transactions = t.transactions - c.transactions, sum_proba = t.sum_proba - c.sum_proba
  FROM (SELECT bucket, latitude, longitude, shard_id, sum(transactions) AS transactions, sum(sum_proba) AS sum_proba
          FROM places_by_city GROUP BY 1, 2, 3, 4) AS c
 WHERE t.city = '' AND (t.bucket, t.latitude, t.longitude, t.shard_id) = (c.bucket, c.latitude, c.longitude, c.shard_id);
DELETE FROM fraud_places_15m WHERE city = '' AND transactions <= 0;
