"""The trials table: its public names, kept where the README names them.

The table and the snapshot format the store keeps of it live in
:mod:`dasktune.store.table`.
"""

from __future__ import annotations

from dasktune.store.table import COLUMNS, TrialTable

__all__ = ["COLUMNS", "TrialTable"]
