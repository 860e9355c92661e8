"""The one typed way into the driver: :func:`run`.

Every ask/tell run goes through here: ``Search.run`` (and through it the
scikit-learn searches of :mod:`dasktune.sklearn`), ``minimize`` and ``SPSA``
(through :func:`dasktune.run.vector.run_vector`). Nothing outside ``run/``
makes a :class:`~dasktune.run.driver.Driver`; a test in
``tests/test_layers.py`` checks it.

What a run is told besides its optimizer, objective, recorder and client is
one frozen :class:`~dasktune.run.options.RunOptions`, checked when it was
made, so that bad arguments raise before a cluster starts. ``async_map`` is
the other primitive of ``run/``: a map returning its results in order, with
no optimizer and no recorder (:mod:`dasktune.run.mapping`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import distributed

from dasktune.optim.base import AskTell
from dasktune.records import Recorder
from dasktune.run.base import BatchObjective
from dasktune.run.driver import Driver
from dasktune.run.here import HereWindow
from dasktune.run.options import RunOptions
from dasktune.run.summary import RunReport

__all__ = ["run"]


def run(
    optimizer: AskTell,
    objective: Callable[[Any], Any] | BatchObjective,
    recorder: Recorder,
    options: RunOptions,
    *,
    client: distributed.Client | None,
    here: HereWindow[Any] | None = None,
) -> RunReport:
    """Drive ``optimizer`` against ``objective`` on ``client`` to the end.

    Parameters
    ----------
    optimizer : AskTell
        Proposes the trials and is told their values (minimised).
    objective : callable or BatchObjective
        Evaluates one trial's parameters, or a whole batch of them.
    recorder : Recorder
        Claims the trials and keeps their outcomes (the trial store's
        ``StoreRecorder``, or a ``MemoryRecorder``).
    options : RunOptions
        Everything else the run is told, checked when it was made.
    client : distributed.Client or None
        Where the trials run; ``None`` with ``here``.
    here : HereWindow, optional
        Runs the trials in the caller's process first, while the execution
        policy keeps them there (:mod:`dasktune.run.here`).

    Returns
    -------
    RunReport
        What this run did: its counts, why it stopped, its best.

    Raises
    ------
    TypeError
        For ``options`` that are not a ``RunOptions``, or a ``pruner`` with an
        objective that takes no ``trial`` argument (before any work).
    ValueError
        For ``resources`` no worker declared, or an ``execution`` or
        ``trial_timeout`` the objective cannot run with (before any work).

    Examples
    --------
    >>> from dasktune.optim.base import IterableSource
    >>> from dasktune.records import MemoryRecorder
    >>> report = run(
    ...     IterableSource([{"x": 1}, {"x": 2}]),
    ...     lambda p: p["x"] ** 2,
    ...     MemoryRecorder(),
    ...     RunOptions(name="squares"),
    ...     client=client,
    ... )  # doctest: +SKIP
    >>> report.best_value  # doctest: +SKIP
    1.0
    """
    return Driver(optimizer, objective, client, recorder, options, here).run()
