"""The PostgreSQL backend of a pooled deployment (offerhub.postgresql.base). This module holds
what settings need without loading the backend: the pool's `reset` callback."""

import time


def pool_connection_returned(connection) -> None:
    """The pool's `reset` callback: when the connection came back (idle, out of any transaction)."""
    connection._offerhub_returned_at = time.monotonic()
