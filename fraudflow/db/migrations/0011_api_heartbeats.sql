-- Each API process's counts per minute of receipt, from the heartbeats it publishes on the stream
-- (fraudflow/heartbeats.py): the dashboard compares the records published for a minute with the rows stored.
CREATE TABLE api_heartbeats (
    process     text        NOT NULL,  -- host:pid of one API process
    minute      timestamptz NOT NULL,  -- the minute its transactions were received in
    answered    bigint      NOT NULL,  -- transactions answered (200 or 503)
    published   bigint      NOT NULL,  -- records Kinesis acknowledged
    unavailable bigint      NOT NULL,  -- transactions answered 503
    reported_at timestamptz NOT NULL,  -- the newest heartbeat that reported this minute
    PRIMARY KEY (process, minute)
);
CREATE INDEX api_heartbeats_minute_idx ON api_heartbeats (minute);

GRANT INSERT, UPDATE, DELETE ON api_heartbeats TO fraudflow_writer;
