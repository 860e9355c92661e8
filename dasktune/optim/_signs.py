"""Rademacher vectors drawn ahead from a seeded stream, a block at a time.

SPSA draws one ±1 vector per gradient estimate. One ``Generator.integers``
call costs a few microseconds, as much as the rest of a cheap iteration's
arithmetic, so :class:`SignStream` draws a block of vectors in one call and
hands them out one by one. The vectors are the very ones single draws give:
numpy buffers the unused 32-bit half of the stream's last 64-bit draw in the
bit generator's state, so ``integers(0, 2, size=n)`` then ``size=m`` draws the
same numbers as ``size=n + m``. What differs is only where the stream stands
between calls; :meth:`SignStream.state` gives the state single draws would
have left (what a checkpoint saves).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from numpy.typing import NDArray

__all__ = ["SIGNS", "SignStream"]

#: the two values of a Rademacher coordinate, indexed by a draw of 0 or 1
SIGNS = np.array([-1.0, 1.0])
#: vectors drawn at once
_BLOCK = 64


class SignStream:
    """Rademacher vectors of ``size`` from ``rng``, as
    ``rng.choice([-1.0, 1.0], size=size)`` draws them one call at a time.

    The caller must draw nothing else from ``rng`` while a block is out (call
    :meth:`settle` first).

    >>> rng = np.random.default_rng(3)
    >>> stream = SignStream(np.random.default_rng(3), 2)
    >>> all((stream.next() == rng.choice(SIGNS, size=2)).all() for _ in range(99))
    True
    >>> stream.state() == rng.bit_generator.state
    True
    """

    def __init__(self, rng: np.random.Generator, size: int) -> None:
        self.rng, self.size = rng, size
        self._block: NDArray[np.float64] | None = None
        self._used = 0
        self._before: Mapping[str, Any] = {}  # the stream's state before the block

    def next(self) -> NDArray[np.float64]:
        """The next vector (a new array)."""
        if self._block is None or self._used == len(self._block):
            self._before = self.rng.bit_generator.state
            draws = self.rng.integers(0, 2, size=(_BLOCK, self.size), dtype=np.int64)
            self._block, self._used = SIGNS[draws], 0
        vector = self._block[self._used]
        self._used += 1
        return vector

    def state(self) -> Mapping[str, Any]:
        """The bit generator's state as if each vector handed out had been
        drawn alone (and none ahead)."""
        if self._block is None:
            return self.rng.bit_generator.state
        replay = np.random.Generator(type(self.rng.bit_generator)())
        replay.bit_generator.state = self._before
        replay.integers(0, 2, size=self._used * self.size, dtype=np.int64)
        return replay.bit_generator.state

    def settle(self) -> None:
        """Put ``rng`` where single draws would have left it, and drop the
        vectors drawn ahead (before something else draws from ``rng``, or
        after its state was set)."""
        if self._block is not None:
            self.rng.bit_generator.state = self.state()
            self._block = None

    def forget(self) -> None:
        """Drop the vectors drawn ahead: ``rng``'s state was set anew."""
        self._block = None
