"""The failures whose message is for the user: every command prints them as one line, without a traceback."""

from __future__ import annotations


class ExpectedError(RuntimeError):
    """A failure the user can act on (a service that did not start, a schema not migrated, ...)."""
