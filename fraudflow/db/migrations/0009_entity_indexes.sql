-- The dashboard's user and IP pages read an entity's recent transactions (and the analyst's review queue
-- will too): without these, each is a scan of the whole table.
CREATE INDEX fraud_predictions_user_idx ON fraud_predictions (user_id, received_at DESC);
CREATE INDEX fraud_predictions_ip_idx ON fraud_predictions (ip_address, received_at DESC) WHERE ip_address IS NOT NULL;
