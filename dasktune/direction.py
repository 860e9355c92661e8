"""An objective's direction: minimised or maximised, and its sign.

One type (as Optuna's ``StudyDirection``) for what every layer reads of a
direction, parsed and checked here only: a search's, a pruner's, a sampler's,
the store's and the plots'. A :class:`Direction` is a string (``"minimize"``
equals ``Direction.MINIMIZE``, and is shown as that string in messages and
lists), so directions given and stored as text keep working.

No Dask, no SQL, no NumPy: every layer imports it.

>>> Direction.parse("maximize").sign
-1.0
>>> parse_directions(["minimize", "maximize"])
['minimize', 'maximize']
>>> Direction.parse("down")
Traceback (most recent call last):
...
ValueError: direction must be 'minimize' or 'maximize', got 'down'
"""

from __future__ import annotations

import enum
from collections.abc import Sequence

__all__ = ["Direction", "parse_directions"]


class Direction(enum.StrEnum):
    """Whether an objective is minimised or maximised."""

    MINIMIZE = "minimize"
    MAXIMIZE = "maximize"

    def __repr__(self) -> str:
        return repr(self.value)  # as the string it equals, in lists and messages

    @property
    def sign(self) -> float:
        """``1.0`` to minimise, ``-1.0`` to maximise: what a value is multiplied
        by so that lower is better."""
        return 1.0 if self is Direction.MINIMIZE else -1.0

    @classmethod
    def parse(cls, value: object) -> Direction:
        """``value`` (``"minimize"`` or ``"maximize"``) as a :class:`Direction`.

        Raises
        ------
        ValueError
            For anything else.
        """
        if isinstance(value, str):
            try:
                return cls(value)
            except ValueError:
                pass
        msg = f"direction must be 'minimize' or 'maximize', got {value!r}"
        raise ValueError(msg)


def parse_directions(directions: object) -> list[Direction]:
    """Every objective's direction, from a non-empty sequence of them.

    Raises
    ------
    TypeError
        If ``directions`` is a string or not a sequence.
    ValueError
        If it is empty or holds anything but ``"minimize"`` and ``"maximize"``.
    """
    if isinstance(directions, str) or not isinstance(directions, Sequence):
        msg = (
            "directions must be a list of 'minimize' or 'maximize', one per "
            f"objective, got {type(directions).__name__}: {directions!r}"
        )
        raise TypeError(msg)
    wanted = list(directions)
    if not wanted or not all(
        isinstance(d, str) and d in Direction._value2member_map_ for d in wanted
    ):
        msg = (
            "directions must be a non-empty list of 'minimize' or 'maximize', one "
            f"per objective, got {wanted!r}"
        )
        raise ValueError(msg)
    return [Direction(d) for d in wanted]
