"""KCL-style Kinesis consumer: leases in PostgreSQL, per-shard retrieval, exactly-once COPY into PostgreSQL.

Parts, named as in the Kinesis Client Library: `leases/` (who owns which shard), `retrieval/` (GetRecords),
`lifecycle/` (one shard from start to end), `processor/` (the PostgreSQL sink, where checkpoints are
written), `coordinator/` (the scheduler tying them together).
"""
