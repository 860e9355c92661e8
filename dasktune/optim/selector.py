"""Choosing which of several optimizers proposes the next trial.

:class:`LCBSelector` treats the optimizers as arms of a bandit and asks the one
with the lowest confidence bound (LCB) on its score, with Gumbel noise, as
cotengra's hyper-optimizer does — fixing two of its flaws: pending asks count
as visits, so the trials pre-dispatched before any result spread over the
optimizers; and scores are the mean *rank* of an optimizer's results among all
results so far (0 best, 1 worst), so the exploration term means the same for
any objective scale and one lucky trial does not lock a method in.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from dasktune.optim.base import AskTell, Optimizer, missing_members
from dasktune.space import Space

__all__ = ["LCBSelector"]

_NOISE_SCALE = 0.05


class LCBSelector(Optimizer):
    """Pick which named optimizer proposes each trial (see the module notes).

    Parameters
    ----------
    samplers : mapping of str to ask/tell optimizer
        Optimizers proposing parameter dicts (``HyperScipySampler``,
        ``RandomSampler``, ...), by name.
    exploration : float, default 1.0
        Weight of the confidence term ``sqrt(log N / n)``.
    temperature : float, default 1.0
        Scale of the Gumbel noise (times 0.05, on the rank scale) breaking ties.
    seed : int, optional
    key : str, default "method"
        The parameter under which the chosen name is stored with each trial.

    Notes
    -----
    For optimizer ``m`` with ``n_m`` visits (told and pending) of ``N`` in all,
    and mean rank ``r_m`` of its told values among all told values, the score is
    ``r_m - exploration * sqrt(log(N) / n_m) - temperature * 0.05 * G`` with G a
    Gumbel sample; the lowest score is asked first, and unvisited optimizers
    before any other. When the chosen optimizer has nothing to propose, the next
    one is asked.
    """

    def __init__(
        self,
        samplers: Mapping[str, AskTell],
        exploration: float = 1.0,
        temperature: float = 1.0,
        seed: int | None = None,
        *,
        key: str = "method",
    ) -> None:
        super().__init__()
        if not isinstance(samplers, Mapping) or not samplers:
            msg = f"samplers must be a non-empty dict of named optimizers, got {samplers!r}"
            raise ValueError(msg)
        for name, sampler in samplers.items():
            if not isinstance(sampler, AskTell):
                msg = (
                    f"sampler {name!r} is not an ask/tell optimizer (it lacks "
                    f"{missing_members(sampler)}): {sampler!r}"
                )
                raise TypeError(msg)
        for label, value in (
            ("exploration", exploration),
            ("temperature", temperature),
        ):
            if not isinstance(value, int | float) or value < 0:
                msg = f"{label} must be a number >= 0, got {value!r}"
                raise ValueError(msg)
        self.samplers = dict(samplers)
        self.names = list(self.samplers)
        self.exploration, self.temperature = float(exploration), float(temperature)
        self.seed = seed
        self.key = key
        self.rng = np.random.default_rng(seed)
        self.pending = dict.fromkeys(self.names, 0)
        self.told: dict[str, list[float]] = {name: [] for name in self.names}
        self._owner: dict[int, tuple[str, int]] = {}
        self._given_up: set[int] = set()  # numbers asked before a pause

    def scores(self) -> dict[str, float]:
        """Each optimizer's current LCB score, without noise (lower is asked first)."""
        values = [(v, name) for name in self.names for v in self.told[name]]
        ranks: dict[str, list[float]] = {name: [] for name in self.names}
        if values:
            order = np.argsort([v for v, _ in values], kind="stable")
            scale = max(len(values) - 1, 1)
            for rank, i in enumerate(order):
                ranks[values[i][1]].append(rank / scale)
        visits = {n: len(self.told[n]) + self.pending[n] for n in self.names}
        total = max(sum(visits.values()), 1)
        out = {}
        for name in self.names:
            if visits[name] == 0:
                out[name] = -math.inf
                continue
            mean = float(np.mean(ranks[name])) if ranks[name] else 0.5
            bonus = (
                self.exploration * math.sqrt(math.log(total) / visits[name])
                if total > 1
                else 0.0
            )
            out[name] = mean - bonus
        return out

    def _ask(self) -> dict[str, Any] | None:
        scores = self.scores()
        noise = self.rng.gumbel(size=len(self.names)) * self.temperature * _NOISE_SCALE
        order = sorted(
            range(len(self.names)), key=lambda i: scores[self.names[i]] - noise[i]
        )
        for i in order:
            name = self.names[i]
            sampler = self.samplers[name]
            if sampler.finished:
                continue
            trial = sampler.ask()
            if trial is None:
                continue
            if not isinstance(trial.params, Mapping):
                msg = (
                    f"sampler {name!r} proposed {trial.params!r}; LCBSelector needs "
                    "samplers of parameter dicts (HyperScipySampler, RandomSampler)"
                )
                raise TypeError(msg)
            if self.key in trial.params:
                msg = f"sampler {name!r} proposes a parameter named {self.key!r}, the selector's key"
                raise ValueError(msg)
            self._owner[self._next_number] = (name, trial.number)
            self.pending[name] += 1
            return {**trial.params, self.key: name}
        return None

    def _tell(self, number: int, params: Any, value: float) -> None:
        name, inner = self._owner.pop(number)
        if number in self._given_up:  # asked before a pause: no longer counted
            self._given_up.discard(number)
        else:
            self.pending[name] -= 1
        self.told[name].append(value)
        self.samplers[name].tell(inner, value)

    @property
    def finished(self) -> bool:
        return all(s.finished for s in self.samplers.values())

    @property
    def batch_size(self) -> int:
        return sum(s.batch_size for s in self.samplers.values())

    def close(self) -> None:
        """Close every sampler."""
        for sampler in self.samplers.values():
            sampler.close()
        super().close()

    def adopt_space(self, space: Space | None) -> None:
        """Give the search's space to the samplers made without one (an
        ``OptunaSampler(sampler)``), as a search gives its own optimizer."""
        for sampler in self.samplers.values():
            if isinstance(sampler, Optimizer):  # others take the default
                sampler.adopt_space(space)

    def spaces(self) -> list[tuple[Space, Optimizer]]:
        """The samplers' spaces, each with the sampler holding it."""
        return [
            pair
            for sampler in self.samplers.values()
            if isinstance(sampler, Optimizer)
            for pair in sampler.spaces()
        ]

    def pause(self) -> None:
        """Pause every sampler (see :meth:`Optimizer.pause`); trials asked and
        not told are given up, and no longer count as visits."""
        for name, sampler in self.samplers.items():
            if isinstance(sampler, Optimizer):  # others take the default
                sampler.pause()
            self.pending[name] = 0
        self._given_up.update(self._owner)

    def describe(self) -> str:
        return f"LCBSelector({self.names}, exploration={self.exploration}, seed={self.seed})"
