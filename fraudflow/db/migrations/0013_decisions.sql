-- Decisions a fraud team runs (docs/decisions.md): rules in CEL with versions and an enabled state, allow,
-- deny and named lists with expiring entries, and an audit trail of every change to either. Each change
-- notifies channel fraudflow_policy in its own transaction, so every API process applies it at commit.
CREATE TABLE rules (
    name text PRIMARY KEY CHECK (name ~ '^[a-z][a-z0-9_]{0,62}$'),
    expression text NOT NULL CHECK (length(expression) <= 2000),
    action text NOT NULL CHECK (action IN ('decline', 'review', 'allow')),
    description text NOT NULL DEFAULT '',
    enabled boolean NOT NULL DEFAULT true,
    version integer NOT NULL DEFAULT 1,
    author text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE lists (
    name text PRIMARY KEY CHECK (name ~ '^[a-z][a-z0-9_]{0,62}$'),
    kind text NOT NULL CHECK (kind IN ('user', 'device', 'ip', 'country')),
    action text NOT NULL CHECK (action IN ('allow', 'deny', 'none')),
    description text NOT NULL DEFAULT '',
    author text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE list_entries (
    list_name text NOT NULL REFERENCES lists (name) ON DELETE CASCADE,
    value text NOT NULL,
    reason text,
    author text NOT NULL,
    added_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz,
    PRIMARY KEY (list_name, value)
);

-- One row per change: who, when, what, and the state after it (a removed entry: the state before).
CREATE TABLE policy_audit (
    id bigserial PRIMARY KEY,
    at timestamptz NOT NULL DEFAULT now(),
    author text NOT NULL,
    object text NOT NULL CHECK (object IN ('rule', 'list')),
    name text NOT NULL,
    change text NOT NULL,
    detail jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX policy_audit_name_idx ON policy_audit (object, name, id);

-- fraudflow_policy reads and changes rules and lists: the API (its admin routes) and the dashboard (its rules
-- page). On RDS the API's user is created here, logging in with IAM database authentication, like 0007's.
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'fraudflow_policy') THEN
        CREATE ROLE fraudflow_policy NOLOGIN;
    END IF;
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'rds_iam')
            AND NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'fraudflow_api') THEN
        CREATE ROLE fraudflow_api LOGIN IN ROLE fraudflow_policy, rds_iam;
    END IF;
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'fraudflow_dashboard') THEN
        GRANT fraudflow_policy TO fraudflow_dashboard;
    END IF;
END
$$;
GRANT USAGE ON SCHEMA public TO fraudflow_policy;
GRANT SELECT, INSERT, UPDATE, DELETE ON rules, lists, list_entries TO fraudflow_policy;
GRANT SELECT, INSERT ON policy_audit TO fraudflow_policy;
GRANT USAGE ON SEQUENCE policy_audit_id_seq TO fraudflow_policy;
GRANT SELECT ON fraud_predictions TO fraudflow_policy;

-- What decided each transaction (allow_list, deny_list, rule or model) and why (schema version 3 events).
ALTER TABLE fraud_predictions
    ADD COLUMN decided_by text,
    ADD COLUMN reasons jsonb;
