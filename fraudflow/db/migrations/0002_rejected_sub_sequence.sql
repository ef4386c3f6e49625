-- A KPL aggregated record carries several user records under one sequence number: dead letters are
-- unique per (stream, shard, sequence number, sub-sequence), so a replay never stores one twice.
ALTER TABLE rejected_records ADD COLUMN sub_sequence integer NOT NULL DEFAULT 0;
DROP INDEX rejected_records_position_idx;
CREATE UNIQUE INDEX rejected_records_position_idx
    ON rejected_records (stream, shard_id, sequence_number, sub_sequence)
    WHERE sequence_number IS NOT NULL;
