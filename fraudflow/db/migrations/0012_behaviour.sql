-- Behaviour features (schema version 2 events): the device id they are keyed on, the vector the transaction
-- was scored with (by name, null where unknown), and whether the online store failed to give it. Rows of
-- version 1 events have none of them (NULL). Adding nullable columns rewrites nothing.
ALTER TABLE fraud_predictions
    ADD COLUMN device_id text,
    ADD COLUMN behaviour jsonb,
    ADD COLUMN features_degraded boolean;

-- The dashboard's device page and the analysts' "other users of this device".
CREATE INDEX fraud_predictions_device_idx ON fraud_predictions (device_id, received_at DESC)
    WHERE device_id IS NOT NULL;
