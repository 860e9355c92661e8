"""dasktune's own errors.

Bad arguments raise the built-in types (``ValueError``, ``TypeError``,
``TimeoutError``); the states that are dasktune's own raise from this tree::

    DasktuneError
    ├── StoreError                 the trial store cannot be used as asked
    │   ├── SchemaVersionError     the store was written by a newer dasktune
    │   └── SearchMismatchError    a search re-opened with another space or direction
    ├── NoWorkersError             the cluster had no worker for too long
    ├── TooManyFailuresError       a search stopped after ``max_failures`` failed trials
    ├── TrialTimeoutError          a trial ran past ``trial_timeout`` (a ``TimeoutError`` too)
    └── TrialPruned                raised in an objective to stop a trial a pruner stopped

An exception raised by a user's objective is never wrapped: it reaches the caller
with its own type, and a note (PEP 678) says which element or trial raised it.
"""

from __future__ import annotations

__all__ = [
    "DasktuneError",
    "NoWorkersError",
    "SchemaVersionError",
    "SearchMismatchError",
    "StoreError",
    "TooManyFailuresError",
    "TrialPruned",
    "TrialTimeoutError",
]


class DasktuneError(Exception):
    """Root of dasktune's own errors."""


class StoreError(DasktuneError):
    """The trial store cannot be used as asked.

    Its message never shows a password: any database URL or DSN in it is
    redacted (:func:`dasktune._checks.redact`), whoever built the message.
    """

    def __init__(self, *args: object) -> None:
        from dasktune._checks import redact

        super().__init__(*(redact(a) if isinstance(a, str) else a for a in args))


class SchemaVersionError(StoreError):
    """The store's schema is newer than this version of dasktune understands."""


class SearchMismatchError(StoreError):
    """A search was re-opened with a space or direction other than the stored one."""


class NoWorkersError(DasktuneError):
    """Work waited longer than ``dasktune.no-workers-timeout`` (Dask's
    configuration) while the cluster had no worker at all."""


class TooManyFailuresError(DasktuneError):
    """A search stopped because too many of its trials failed."""


class TrialTimeoutError(DasktuneError, TimeoutError):
    """A trial (or an ``async_map`` element) ran past its ``trial_timeout``.

    Recorded as the trial's error ("timed out after N s"), as a failed trial's
    exception is. ``stuck`` says that the call did not stop when interrupted
    (blocked outside Python) and was left running on ``worker``, which dasktune
    then restarts (:mod:`dasktune.run.timelimit`).
    """

    def __init__(
        self,
        message: str,
        *,
        seconds: float | None = None,
        stuck: bool = False,
        worker: str | None = None,
    ) -> None:
        super().__init__(message)
        self.seconds = seconds
        self.stuck = stuck
        self.worker = worker


class TrialPruned(DasktuneError):
    """Raised inside an objective to stop a trial early.

    ``trial.should_prune()`` says when the search's pruner stopped the trial;
    raising this then (``raise dasktune.TrialPruned``) records the trial as
    ``pruned`` with the last value it reported, instead of ``failed``.
    """
