"""Embedded services for laptops and tests (the `local` extra): PostgreSQL and Kinesis emulators."""
