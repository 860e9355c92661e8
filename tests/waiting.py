"""Waiting for a state in tests: poll a condition with a bound, never sleep a
fixed time.

A fixed sleep is either too short on a busy machine (the test fails) or too
long on a quiet one (the suite is slow). These wait for the condition itself,
as long as it takes up to ``timeout``, and fail saying what they waited for::

    poll_until(lambda: not client.futures, what="the futures to be released")
    await async_poll_until(lambda: pc.rebuilds > 0, what="the rebuild to start")

The default bound is generous: it is only reached when the awaited state never
comes, and then the test fails rather than hangs.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

__all__ = ["TIMEOUT", "async_poll_until", "poll_until"]

#: seconds a test waits for a state before failing (far above what a loaded
#: machine needs, below the tests' own timeout)
TIMEOUT = 30.0
_INTERVAL = 0.01


def _failure(what: str, waited: float, state: Callable[[], Any] | None) -> str:
    msg = f"waited {waited:.3g} s for {what}, in vain"
    if state is not None:
        msg += f"; last seen: {state()!r}"
    return msg


def poll_until(
    condition: Callable[[], object],
    *,
    what: str,
    timeout: float = TIMEOUT,
    state: Callable[[], Any] | None = None,
    interval: float = _INTERVAL,
) -> None:
    """Return as soon as ``condition()`` is true; fail after ``timeout`` s.

    Parameters
    ----------
    condition : callable
        Looked at every ``interval`` seconds.
    what : str
        What is awaited, for the failure's message ("the actors to leave").
    timeout : float
    state : callable, optional
        Shows the state reached in the failure's message.
    interval : float

    Raises
    ------
    AssertionError
        Naming ``what``, after how long, and the state (``state()``).
    """
    started = time.monotonic()
    while not condition():
        waited = time.monotonic() - started
        if waited > timeout:
            raise AssertionError(_failure(what, waited, state))
        time.sleep(interval)


async def async_poll_until(
    condition: Callable[[], object],
    *,
    what: str,
    timeout: float = TIMEOUT,
    state: Callable[[], Any] | None = None,
    interval: float = _INTERVAL,
) -> None:
    """:func:`poll_until` on an event loop (``gen_cluster`` tests): the loop
    runs the cluster meanwhile."""
    started = time.monotonic()
    while not condition():
        waited = time.monotonic() - started
        if waited > timeout:
            raise AssertionError(_failure(what, waited, state))
        await asyncio.sleep(interval)
