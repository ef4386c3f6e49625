-- Least privilege inside the database. Two roles without LOGIN, granted to the users the services log in as:
-- fraudflow_writer (the consumer) stores events, dead letters, aggregates and its leases, and can change
-- nothing else; fraudflow_reader (the dashboard) only reads. The schema stays the migrating user's.
-- On RDS (where the rds_iam role exists) the consumer and dashboard users are created here too, logging in
-- with IAM database authentication: no password exists for them.
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'fraudflow_writer') THEN
        CREATE ROLE fraudflow_writer NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'fraudflow_reader') THEN
        CREATE ROLE fraudflow_reader NOLOGIN;
    END IF;
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'rds_iam') THEN
        IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'fraudflow_consumer') THEN
            CREATE ROLE fraudflow_consumer LOGIN IN ROLE fraudflow_writer, rds_iam;
        END IF;
        IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'fraudflow_dashboard') THEN
            CREATE ROLE fraudflow_dashboard LOGIN IN ROLE fraudflow_reader, rds_iam;
        END IF;
    END IF;
END
$$;

REVOKE CREATE ON SCHEMA public FROM PUBLIC;
GRANT USAGE ON SCHEMA public TO fraudflow_writer, fraudflow_reader;
GRANT SELECT ON ALL TABLES IN SCHEMA public TO fraudflow_writer, fraudflow_reader;
GRANT INSERT ON fraud_predictions, rejected_records TO fraudflow_writer;
GRANT INSERT, UPDATE ON fraud_stats_15m, fraud_histograms_15m, fraud_dimensions_15m, fraud_places_15m
    TO fraudflow_writer;
GRANT INSERT, UPDATE, DELETE ON kinesis_leases TO fraudflow_writer;
GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO fraudflow_writer;
-- Tables of later migrations are readable by both; what the writer may change there, each migration grants.
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON TABLES TO fraudflow_writer, fraudflow_reader;
