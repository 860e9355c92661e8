"""The trial store: SQL (SQLite, PostgreSQL) and the driver's recorder on it.

No Dask here: the store only ever sees records (:mod:`dasktune.records`).
"""

from __future__ import annotations

from dasktune.store.recorder import StoreRecorder
from dasktune.store.sql import (
    HEARTBEAT_SECONDS,
    SCHEMA_VERSION,
    STALE_AFTER_SECONDS,
    TRIAL_FIELDS,
    TrialStore,
)

__all__ = [
    "HEARTBEAT_SECONDS",
    "SCHEMA_VERSION",
    "STALE_AFTER_SECONDS",
    "TRIAL_FIELDS",
    "StoreRecorder",
    "TrialStore",
]
