-- What turned out to be true of a transaction (docs/labels.md): from analysts, chargebacks or imports. Every
-- label is kept; the latest known (then the latest recorded) wins, as the view latest_labels gives it.
CREATE TABLE labels (
    id bigserial PRIMARY KEY,
    event_id uuid NOT NULL,
    label text NOT NULL CHECK (label IN ('fraud', 'legitimate')),
    source text NOT NULL CHECK (source IN ('analyst', 'chargeback', 'import')),
    known_at timestamptz NOT NULL,
    author text NOT NULL,
    note text,
    recorded_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX labels_event_idx ON labels (event_id, known_at DESC, id DESC);

CREATE VIEW latest_labels AS
    SELECT DISTINCT ON (event_id) event_id, label, source, known_at, author, note
    FROM labels
    ORDER BY event_id, known_at DESC, id DESC;

-- The API records chargebacks (POST /labels) as the policy role; the dashboard's analysts too.
GRANT SELECT, INSERT ON labels TO fraudflow_policy;
GRANT SELECT ON latest_labels TO fraudflow_policy, fraudflow_reader, fraudflow_writer;
GRANT USAGE ON SEQUENCE labels_id_seq TO fraudflow_policy;
