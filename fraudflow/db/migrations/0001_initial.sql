-- Scored events, dead letters and consumer leases.

-- A superset of the reference design's fraud_predictions table: its columns keep their names and meaning.
CREATE TABLE fraud_predictions (
    id               bigserial PRIMARY KEY,
    "timestamp"      timestamptz NOT NULL,           -- transaction time from the request
    user_id          text        NOT NULL,
    source           text        NOT NULL,
    fraud_prediction smallint    NOT NULL CHECK (fraud_prediction IN (0, 1)),
    fraud_proba      real        NOT NULL,
    anomaly_score    real        NOT NULL,
    ip_address       text,
    device_type      text,
    os_version       text,
    app_version      text,
    country          text,                           -- upper-cased, trimmed
    region           text,
    city             text,
    latitude         double precision,
    longitude        double precision,
    created_at       timestamptz NOT NULL DEFAULT now(),
    processed_at     timestamptz NOT NULL DEFAULT now(),  -- when the consumer wrote the row
    event_id         uuid        NOT NULL UNIQUE,     -- idempotency key: one row per event, whatever retries
    decision         text        NOT NULL CHECK (decision IN ('approve', 'review', 'decline')),
    model_version    text        NOT NULL,
    amount           real,
    features         real[],                          -- the 30 model inputs, for audit and retraining
    received_at      timestamptz,                     -- when the API received the request
    shard_id         text,
    sequence_number  numeric                          -- Kinesis lineage
);

-- The dashboard's time-window queries filter on the API receive time and on the transaction time.
CREATE INDEX fraud_predictions_received_at_idx ON fraud_predictions (received_at);
CREATE INDEX fraud_predictions_timestamp_idx ON fraud_predictions ("timestamp");
CREATE INDEX fraud_predictions_flagged_idx ON fraud_predictions (received_at DESC)
    WHERE decision <> 'approve';

-- Dead letters: anything that could not be stored, with the reason. Nothing is dropped silently.
CREATE TABLE rejected_records (
    id               bigserial PRIMARY KEY,
    rejected_at      timestamptz NOT NULL DEFAULT now(),
    stage            text        NOT NULL,            -- who rejected it: consumer, api, ...
    stream           text,
    shard_id         text,
    sequence_number  numeric,
    partition_key    text,
    payload          bytea       NOT NULL,
    reason           text        NOT NULL
);
CREATE INDEX rejected_records_rejected_at_idx ON rejected_records (rejected_at);
CREATE UNIQUE INDEX rejected_records_position_idx ON rejected_records (stream, shard_id, sequence_number)
    WHERE sequence_number IS NOT NULL;

-- Consumer leases and checkpoints (the KCL's DynamoDB lease table, in PostgreSQL).
CREATE TABLE kinesis_leases (
    application        text        NOT NULL,
    stream             text        NOT NULL,
    shard_id           text        NOT NULL,
    owner              text,                          -- worker id; NULL when free
    lease_counter      bigint      NOT NULL DEFAULT 0,  -- bumped by every renewal: expiry is by counter, not clock
    epoch              bigint      NOT NULL DEFAULT 0,  -- bumped on every change of owner: fences stale writers
    checkpoint         text        NOT NULL DEFAULT 'TRIM_HORIZON',  -- sequence number or a sentinel
    parent_shard_ids   text[]      NOT NULL DEFAULT '{}',
    starting_hash_key  numeric,
    ending_hash_key    numeric,
    millis_behind_latest bigint,
    checkpointed_at    timestamptz,
    updated_at         timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (application, stream, shard_id)
);
