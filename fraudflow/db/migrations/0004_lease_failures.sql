-- A shard consumer that fails is counted on its lease, with the error, so `fraudflow consume status` shows a
-- shard that keeps failing instead of one that looks owned and healthy.
ALTER TABLE kinesis_leases
    ADD COLUMN failures      bigint NOT NULL DEFAULT 0,
    ADD COLUMN last_error    text,
    ADD COLUMN last_error_at timestamptz;
