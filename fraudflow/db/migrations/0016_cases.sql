-- The review queue (docs/reviews.md): every transaction decided `review` joins its user's open case, or opens
-- one, in the consumer's flush transaction (the rows the flush actually inserted: a replay adds nothing, and
-- case_events.event_id is unique besides). One open case per user at most.
CREATE TABLE cases (
    id bigserial PRIMARY KEY,
    user_id text NOT NULL,
    state text NOT NULL DEFAULT 'open' CHECK (state IN ('open', 'in_review', 'closed')),
    outcome text CHECK (outcome IN ('fraud', 'legitimate', 'unsure')),
    opened_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    transactions integer NOT NULL DEFAULT 0,
    amount real NOT NULL DEFAULT 0,          -- the sum of its transactions' amounts: the value at stake
    expected_loss real NOT NULL DEFAULT 0,   -- the sum of p(fraud) x amount
    claimed_by text,
    claimed_at timestamptz,
    claim_expires_at timestamptz,
    closed_by text,
    closed_at timestamptz,
    CHECK ((state = 'closed') = (outcome IS NOT NULL))
);
CREATE UNIQUE INDEX cases_one_open_per_user ON cases (user_id) WHERE state <> 'closed';
CREATE INDEX cases_queue_idx ON cases (state, opened_at);

CREATE TABLE case_events (
    event_id uuid PRIMARY KEY,
    case_id bigint NOT NULL REFERENCES cases (id),
    added_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX case_events_case_idx ON case_events (case_id);

-- Every change of a case: opened, transaction added, claimed, released, note, closed; who and when.
CREATE TABLE case_audit (
    id bigserial PRIMARY KEY,
    case_id bigint NOT NULL REFERENCES cases (id),
    at timestamptz NOT NULL DEFAULT now(),
    actor text NOT NULL,
    change text NOT NULL,
    detail jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX case_audit_case_idx ON case_audit (case_id, id);

-- Called by the consumer with the table holding the rows its flush inserted (as fraudflow_add_to_rollups).
CREATE OR REPLACE FUNCTION fraudflow_open_cases(source regclass) RETURNS void
    LANGUAGE plpgsql AS
$$
BEGIN
    -- Two statements: the second must see the cases another flush committed while this one waited on them.
    EXECUTE format(
        $q$
        WITH opened AS (
            -- In user order, so two flushes opening cases for the same users lock them in the same order.
            INSERT INTO cases (user_id)
            SELECT DISTINCT user_id FROM %s WHERE decision = 'review' ORDER BY user_id
            ON CONFLICT (user_id) WHERE state <> 'closed' DO NOTHING
            RETURNING id
        )
        INSERT INTO case_audit (case_id, actor, change) SELECT id, 'consumer', 'opened' FROM opened
        $q$, source);
    EXECUTE format(
        $q$
        WITH reviewed AS (
            SELECT event_id, user_id, coalesce(amount, 0) AS amount, fraud_proba
            FROM %s WHERE decision = 'review'
        ),
        added AS (
            INSERT INTO case_events (event_id, case_id)
            SELECT r.event_id, c.id FROM reviewed r JOIN cases c ON c.user_id = r.user_id AND c.state <> 'closed'
            ON CONFLICT (event_id) DO NOTHING
            RETURNING event_id, case_id
        ),
        totals AS (
            SELECT a.case_id, count(*) AS n, sum(r.amount) AS amount, sum(r.amount * r.fraud_proba) AS loss,
                   array_agg(a.event_id) AS events
            FROM added a JOIN reviewed r USING (event_id) GROUP BY a.case_id
        ),
        updated AS (
            UPDATE cases c SET transactions = c.transactions + t.n, amount = c.amount + t.amount,
                               expected_loss = c.expected_loss + t.loss, updated_at = now()
            FROM totals t WHERE c.id = t.case_id
            RETURNING c.id
        )
        INSERT INTO case_audit (case_id, actor, change, detail)
        SELECT case_id, 'consumer', 'transactions added', jsonb_build_object('event_ids', events) FROM totals
        $q$, source);
END
$$;

GRANT SELECT, INSERT, UPDATE ON cases TO fraudflow_writer, fraudflow_policy;
GRANT SELECT, INSERT ON case_events, case_audit TO fraudflow_writer, fraudflow_policy;
GRANT USAGE ON SEQUENCE cases_id_seq, case_audit_id_seq TO fraudflow_writer, fraudflow_policy;
GRANT SELECT ON cases, case_events, case_audit TO fraudflow_reader;
