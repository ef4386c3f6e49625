-- Leases belong to one stream, not to a name: a stream deleted and created again under the same name (an
-- emulator restarted, a stream recreated on AWS) has new shards whose sequence numbers mean nothing to the
-- old checkpoints. The identity is the stream's ARN and creation time; NULL for leases older than this column.
ALTER TABLE kinesis_leases ADD COLUMN stream_identity text;
