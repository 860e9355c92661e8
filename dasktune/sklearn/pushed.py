"""Scores pushed from the workers to the driver as soon as they are computed.

A ``partial_fit`` search's score task ends by sending its score, in the form
a ``Search``'s trials report in (``[number, step, value, time, worker]``,
then the task's result dict), on the driver's direct line
(:mod:`dasktune.run.line`: one TCP connection per worker process, from the
task's own thread, read on the driver's event loop). The driver decides from
it at once, without waiting for the task's end to travel worker -> scheduler
-> client and for its result to be fetched (the path ``as_completed`` takes,
slowed while ``partial_fit`` holds the worker's threads). Without a line (a
TLS cluster, a worker that could not connect) the score travels as a Dask
event on the search's report topic
(:func:`dasktune.run.report.report_topic`): the worker's batched stream takes
it to the scheduler, which pushes it to the driver's client, subscribed to
the topic.

The task's result still comes back through Dask, and the driver judges each
``(model, calls)`` once, whichever arrives first: a score whose event was
lost (its worker died before the event left) is judged from its result, a
score pushed again by a re-run of its task elsewhere is not judged again.
"""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any, Self

import distributed

from dasktune.run.line import Line, worker_end
from dasktune.run.line_server import Connection, LineServer
from dasktune.run.report import report_topic
from dasktune.run.submit import Window

__all__ = ["Pushed", "push"]


def push(key: str | Line, number: int, result: dict[str, Any]) -> None:
    """On a worker: send model ``number``'s score ``result`` (as the score
    task returns it) to the driver listening at ``key`` (its line, or the
    key of its topic); returns at once."""
    worker = distributed.get_worker()
    message = [
        number,
        result["partial_fit_calls"],
        result["score"],
        time.time(),
        worker.address,
        result,
    ]
    if isinstance(key, Line):
        if worker_end(key).send(message):
            return
        key = key.key  # the line is down: as an event
    worker.log_event(report_topic(key), message)


def _score_frame(message: Any) -> tuple[int, dict[str, Any]]:
    """A score from the line, ``[number, calls, score, time, worker,
    result]``, checked: ``(number, result)``.

    >>> _score_frame([2, 3, 0.5, 0.0, "w", {"partial_fit_calls": 3, "score": 0.5}])
    (2, {'partial_fit_calls': 3, 'score': 0.5})
    >>> _score_frame([2, 3, 0.5, 0.0, "w", {"score": 0.5}])
    Traceback (most recent call last):
    ...
    ValueError: not a score [number, calls, score, time, worker, result]: [2, 3, 0.5, 0.0, 'w', {'score': 0.5}]
    """
    number, _, _, _, _, result = message
    if not (
        isinstance(number, int)
        and not isinstance(number, bool)
        and number >= 0
        and isinstance(result, dict)
        and isinstance(result.get("partial_fit_calls"), int)
        and isinstance(result.get("score"), float | int)
    ):
        msg = f"not a score [number, calls, score, time, worker, result]: {message!r:.200}"
        raise ValueError(msg)
    return number, result


class Pushed:
    """The driver's end: the scores pushed, kept until taken.

    Each arrival wakes ``window``'s :meth:`~dasktune.run.submit.Window.next_batch`
    (given ``until=pushed.waiting``), so one loop waits on both the scores
    pushed and the tasks' results.

    Parameters
    ----------
    client : distributed.Client
    window : Window
        The window the score tasks are harvested from.

    Attributes
    ----------
    route : Line or str
        What the score tasks are given to :func:`push` to: the driver's line,
        or the key of the event topic when it has none.
    line_scores : int
        The scores that came on the line.

    Examples
    --------
    >>> with Window(client) as window, Pushed(client, window) as pushed:  # doctest: +SKIP
    ...     window.add([client.submit(score, ..., pushed.route, number)], [number])
    ...     while len(window):
    ...         results = window.next_batch(until=pushed.waiting)
    ...         for number, result in pushed.take():
    ...             ...
    """

    def __init__(self, client: distributed.Client, window: Window[Any]) -> None:
        self.client = client
        self.key = uuid.uuid4().hex
        self._window = window
        self._lock = threading.Lock()
        self._scores: list[tuple[int, dict[str, Any]]] = []
        self.line_scores = 0
        self.closed = False
        client.subscribe_topic(report_topic(self.key), self._on_event)
        self._server = LineServer(client, self.key, _score_frame, self._on_line)

    @property
    def route(self) -> Line | str:
        """Where the score tasks push to (:func:`push`)."""
        return self._server.line or self.key

    def _on_event(self, event: tuple[float, Any]) -> None:
        # on the client's event loop: kept, and the driver's loop woken
        _, message = event
        with self._lock:
            self._scores.append((int(message[0]), dict(message[5])))
        self._window.wake()

    def _on_line(self, score: tuple[int, dict[str, Any]], _: Connection) -> None:
        with self._lock:
            self._scores.append(score)
            self.line_scores += 1
        self._window.wake()

    def waiting(self) -> bool:
        """Whether scores arrived that :meth:`take` would give."""
        with self._lock:
            return bool(self._scores)

    def take(self) -> list[tuple[int, dict[str, Any]]]:
        """The ``(model, result)`` pushed since the last call, in arrival order."""
        with self._lock:
            scores, self._scores = self._scores, []
        return scores

    def close(self) -> None:
        """Stop listening, close the line (scores still on their way are
        dropped: their results come back through Dask)."""
        if not self.closed:
            self.closed = True
            # a client closed (the error being raised) took its topics with it
            if self.client.status not in ("closing", "closed"):
                self.client.unsubscribe_topic(report_topic(self.key))
            self._server.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
