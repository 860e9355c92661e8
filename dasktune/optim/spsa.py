"""SPSA whose evaluations of one iteration run as one batch of futures.

Simultaneous perturbation stochastic approximation (Spall 1992; J. C. Spall,
"Implementation of the simultaneous perturbation algorithm for stochastic
optimization", IEEE Trans. Aerospace and Electronic Systems 34(3), 1998)
estimates the gradient from two evaluations at θ ± c_k Δ, whatever the
dimension. :class:`SPSAOptimizer` is batch-synchronous: every point an
iteration needs — both sides of each of ``n_perturbations`` perturbations, and
the blocking evaluation at θ_k — is asked at once, and the update waits for all
of them, so with a ``seed`` the iterates depend neither on the number of workers
nor on the order in which results arrive.

Gains: a_k = a / (k + 1 + A)^α, c_k = c / (k + 1)^γ. An explicit ``a`` is used
as given, with A = 10% of ``maxiter`` by default. With ``a=None`` the first batch
calibrates ``a`` (Spall's rule, as Qiskit's ``calibrate``): ``n_calibration``
gradient estimates at θ_0 give their mean ĝ and the mean magnitude G of a
gradient coordinate; Spall's first gain a_0 = target_step / G moves each
parameter by about ``target_step`` (default: 10% of the median bound width, or
0.1 · max(1, max|θ_0|) without bounds). Started near a minimum, G is tiny; it is
bounded below by 10⁻³ · max(1, mean|f|) / scale so that the gain stays finite.

That first step is timid for short runs. With ``adaptive=True`` (the default
when ``a=None``) two things change:

- a line search in one batch: the points θ_0 − t · a_0 ĝ for t = 1/4, 1/2, …, 32
  are evaluated together, θ moves to the best of them (if it beats the
  calibration's mean f), and the first gain becomes
  t* · a_0 · (1 + (d − 1)/n_calibration) / (1 + (d − 1)/n_perturbations): the
  inverse curvature along ĝ, corrected for the noise a mean of Rademacher
  estimates carries in d dimensions (E‖ĝ‖² = (1 + (d − 1)/n) ‖∇f‖²), which on a
  quadratic is the gain that contracts fastest;
- Kesten's rule (H. Kesten, "Accelerated stochastic approximation", Ann. Math.
  Statist. 29, 1958): the gain a_k = a / (s_k + 1 + A), with A = 2d by default,
  decreases only with s_k, the number of times the new gradient estimate pointed
  against the recent ones (their running mean, each older estimate weighted by
  half); far from a minimum the gain stays large, in the noise around one it
  decays harmonically;
- unless ``max_step`` is given, a step is at most twice as long as the line
  search's best step (a trust region that keeps SPSA stable on stiff problems,
  e.g. Rosenbrock from (0, 0), where Spall's gains diverge).

``adaptive=False`` restores Spall's calibration and schedule: a = a_0 (A + 1)^α,
A = 10% of ``maxiter``.

Each gradient coordinate divides the difference of the pair by the actual
distance between the evaluated points, so points clipped at a bound give an
unbiased estimate (a coordinate whose two points coincide gets 0).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, fields
from enum import StrEnum
from typing import Any, NamedTuple

import numpy as np
from numpy.typing import NDArray
from scipy.optimize import OptimizeResult

from dasktune._checks import check_int
from dasktune.optim._signs import SIGNS, SignStream
from dasktune.optim.base import Optimizer
from dasktune.optim.bounds import as_pairs

__all__ = ["Phase", "SPSAOptimizer", "SPSAPoint", "SPSAState", "check_bounds"]

_MAX_REJECTIONS = 100
_SEED_HIGH = 2**31 - 1
# Kesten's rule compares each estimate with the running mean of the earlier ones
_MOMENTUM = 0.5
# the adaptive trust region: this many times the line search's best step
_TRUST = 2.0


class Phase(StrEnum):
    """Where an :class:`SPSAOptimizer` is: what its next batch evaluates."""

    INIT = "init"  # calibration pairs (and repeated evaluations for blocking)
    PROBE = "probe"  # the line search along the calibration gradient
    ITERATE = "iterate"
    FINAL = "final"  # one evaluation at the final x
    DONE = "done"


def _plain(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    msg = f"cannot save {type(value).__name__} in an SPSA checkpoint"
    raise TypeError(msg)


def _array(value: Any) -> NDArray[np.float64] | None:
    return None if value is None else np.array(value, dtype=float)


def _norm(x: NDArray[np.float64]) -> float:
    """``np.linalg.norm(x)`` of a vector (its very arithmetic: the square root
    of ``x.dot(x)``), without its wrapper's cost."""
    return math.sqrt(x.dot(x))


def _mean(values: list[float]) -> float:
    """``float(np.mean(values))``, the same number, cheaper for a pair: numpy
    sums from +0.0 (its identity), so that -0.0 + -0.0 is 0.0 there too."""
    if len(values) == 2:
        return (0.0 + values[0] + values[1]) / 2
    return float(np.mean(values))


def _pair(value: Any) -> tuple[NDArray[np.float64], float] | None:
    return None if value is None else (np.array(value[0], dtype=float), value[1])


@dataclass
class SPSAState:
    """What an SPSA run has learnt: the one list of what a checkpoint holds.

    Each field is the :class:`SPSAOptimizer` attribute of the same name, except
    ``rng``, the state of its bit generator.
    """

    x: NDArray[np.float64]
    k: int = 0
    a: float | None = None
    allowed_increase: float | None = None
    nfev: int = 0
    small_steps: int = 0
    rejections: int = 0
    prev: tuple[NDArray[np.float64], float] | None = None
    history_x: list[list[float]] = field(default_factory=list)
    history_f: list[float] = field(default_factory=list)
    phase: Phase = Phase.INIT
    message: str = ""
    success: bool = False
    sign_changes: int = 0
    momentum: NDArray[np.float64] | None = None
    probe: tuple[NDArray[np.float64], float] | None = None
    trust_radius: float | None = None
    rng: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, opt: SPSAOptimizer) -> SPSAState:
        """The state of ``opt`` (copied when serialised)."""
        values = {f.name: getattr(opt, f.name) for f in fields(cls) if f.name != "rng"}
        return cls(**values, rng=dict(opt.stream_state()))

    def restore(self, opt: SPSAOptimizer) -> None:
        """Put this state into ``opt``."""
        for f in fields(self):
            if f.name != "rng":
                setattr(opt, f.name, getattr(self, f.name))
        opt.rng.bit_generator.state = self.rng
        opt.stream_restored()

    def to_json(self) -> str:
        """The state as JSON text (arrays as lists)."""
        return json.dumps(asdict(self), default=_plain)

    @classmethod
    def from_json(cls, text: str) -> SPSAState:
        """The state saved by :meth:`to_json` (fields it lacks take defaults)."""
        raw = json.loads(text)
        names = {f.name for f in fields(cls)}
        state = cls(**{key: value for key, value in raw.items() if key in names})
        state.x = np.array(raw["x"], dtype=float)
        state.momentum = _array(state.momentum)
        state.prev, state.probe = _pair(state.prev), _pair(state.probe)
        state.phase = Phase(state.phase)
        return state


def _vector(name: str, values: Any) -> NDArray[np.float64]:
    try:
        out = np.array(values, dtype=float).reshape(-1)
    except (TypeError, ValueError) as err:
        msg = f"{name} must be a sequence of numbers, got {values!r}"
        raise ValueError(msg) from err
    if out.size == 0 or not np.all(np.isfinite(out)):
        msg = f"{name} must be a non-empty sequence of finite numbers, got {values!r}"
        raise ValueError(msg)
    return out


def check_bounds(
    bounds: Any, x0: NDArray[np.float64]
) -> tuple[NDArray[np.float64], NDArray[np.float64]] | None:
    """Validate ``bounds`` against ``x0``: one finite (low, high) pair per
    parameter, or a ``scipy.optimize.Bounds``."""
    if bounds is None:
        return None
    pairs = as_pairs(bounds, finite="SPSA (its steps are scaled to the box)")
    if len(pairs) != len(x0):
        msg = (
            f"bounds has {len(pairs)} pairs but initparams has {len(x0)} values; "
            "give one (low, high) pair per parameter"
        )
        raise ValueError(msg)
    low, high = pairs[:, 0], pairs[:, 1]
    outside = np.flatnonzero((x0 < low) | (x0 > high))
    if outside.size:
        i = int(outside[0])
        msg = (
            f"initparams[{i}] = {x0[i]} is outside its bounds {tuple(pairs[i])}; "
            "start inside the bounds"
        )
        raise ValueError(msg)
    return low, high


class SPSAPoint(NamedTuple):
    """A point to evaluate, with the seed of its pair and a unique tag.

    The tag makes every asked point a distinct trial, so that a noisy objective
    evaluated twice at the same ``x`` is evaluated twice.
    """

    x: NDArray[np.float64]
    seed: int | None
    tag: int

    def __repr__(self) -> str:
        """The point as a user reads it in an error: ``x = [0.5, 1.] (seed 3)``."""
        x = np.array2string(np.asarray(self.x), separator=", ", max_line_width=10**9)
        return f"x = {x}" + ("" if self.seed is None else f" (seed {self.seed})")


class SPSAOptimizer(Optimizer):
    """SPSA as an ask/tell optimizer (see the module notes).

    Parameters
    ----------
    x0 : array_like
        The start θ_0 (integers and zeros are fine).
    bounds : sequence of (low, high), optional
    a : float, optional
        The step gain, used as given; ``None`` calibrates it in the first batch.
    c : float, default 0.01
        The perturbation size.
    A : float, optional
        Stability constant; default 10% of ``maxiter``, or 2 × the number of
        parameters under Kesten's rule.
    alpha, gamma : float
        Gain exponents (Spall's 0.602 and 0.101).
    maxiter : int, default 10000
    n_perturbations : int, default 1
        Gradient estimates averaged per iteration (2 evaluations each).
    maxgrad : float, optional
        Clip the difference f(θ+) − f(θ−) of each pair to ±maxgrad.
    param_tol : float, optional
        Reject a step that moves any parameter by more than this, and retry the
        iteration with a new perturbation.
    max_step : float, optional
        A trust region: a step longer than this (Euclidean norm) is shortened to
        it. Keeps SPSA stable on stiff problems such as Rosenbrock. Default:
        none, or twice the line search's best step with ``adaptive``.
    ftol : float, default 1e-8
        Convergence: stop when the relative change of the parameters,
        ‖θ_{k+1} − θ_k‖ / max(‖θ_k‖, 1), stays below ``ftol`` for ``n_small``
        consecutive iterations (OptimTools called this ``ftol``; it measures the
        parameters, not the function).
    n_small : int, default 5
    blocking : bool, default False
        Evaluate f(θ_k) in each batch and reject the previous step when it raised
        f by more than ``allowed_increase`` (Qiskit's blocking; default: twice the
        standard deviation of ``n_calibration`` repeated evaluations at θ_0).
    target_step : float, optional
        Calibration target (see the module notes).
    n_calibration : int, default 8
    adaptive : bool, default True
        With ``a=None``: calibrate by a line search along the first gradient (one
        batch) and let the gain decrease by Kesten's rule; ``False`` keeps
        Spall's calibration and schedule. No effect with an explicit ``a``.
    paired : bool, default False
        Give both points of a pair the same integer seed (common random numbers).
    seed : int or numpy.random.Generator, optional
    callback : callable, optional
        ``callback(intermediate_result)`` after each iteration, the last one
        too; ``True`` stops (the message then says so, whatever else would
        have ended the run at that iteration).
    print_iters : int, optional
        Print progress every so many iterations.
    checkpoint : str or os.PathLike, optional
        A JSON file the state is saved to after every batch and resumed from.
    tagged : bool, default False
        Ask :class:`SPSAPoint` instead of bare vectors (the ``SPSA()`` function
        uses it so that repeated points are evaluated again, as noise requires).
    """

    #: the steps of the line search, in multiples of Spall's first step a_0 ĝ
    probe_factors: tuple[float, ...] = tuple(2.0**j for j in range(-2, 6))

    # what the run learns: SPSAState's fields, set from an SPSAState (its
    # defaults at the start, a checkpoint's when resumed); declared for typing
    k: int
    nfev: int
    small_steps: int
    rejections: int
    prev: tuple[NDArray[np.float64], float] | None
    history_x: list[list[float]]
    history_f: list[float]
    phase: Phase
    message: str
    success: bool
    sign_changes: int  # Kesten's counter
    momentum: NDArray[np.float64] | None
    probe: tuple[NDArray[np.float64], float] | None
    trust_radius: float | None  # max_step's default (adaptive)

    def __init__(
        self,
        x0: Any,
        *,
        bounds: Any = None,
        a: float | None = None,
        c: float = 0.01,
        A: float | None = None,
        alpha: float = 0.602,
        gamma: float = 0.101,
        maxiter: int = 10000,
        n_perturbations: int = 1,
        maxgrad: float | None = None,
        param_tol: float | None = None,
        max_step: float | None = None,
        ftol: float = 1e-8,
        n_small: int = 5,
        blocking: bool = False,
        allowed_increase: float | None = None,
        target_step: float | None = None,
        n_calibration: int = 8,
        adaptive: bool = True,
        paired: bool = False,
        seed: int | np.random.Generator | None = None,
        callback: Callable[[OptimizeResult], Any] | None = None,
        print_iters: int | None = None,
        checkpoint: str | os.PathLike[str] | None = None,
        tagged: bool = False,
    ) -> None:
        super().__init__()
        self.x = _vector("initparams", x0)
        self.bounds = check_bounds(bounds, self.x)
        for label, value, low in (
            ("maxiter", maxiter, 1),
            ("n_perturbations", n_perturbations, 1),
            ("n_small", n_small, 1),
            ("n_calibration", n_calibration, 2),
        ):
            check_int(label, value, low)
        for label, fvalue in (
            ("a_par", a),
            ("c_par", c),
            ("maxgrad", maxgrad),
            ("param_tol", param_tol),
            ("max_step", max_step),
            ("target_step", target_step),
        ):
            if fvalue is not None and not (
                isinstance(fvalue, int | float) and math.isfinite(fvalue) and fvalue > 0
            ):
                msg = f"{label} must be a positive number, got {fvalue!r}"
                raise ValueError(msg)
        self.a = None if a is None else float(a)
        self.c = float(c)
        self.kesten = a is None and bool(adaptive)
        default_A = 2.0 * self.x.size if self.kesten else 0.1 * maxiter
        self.A = default_A if A is None else float(A)
        self.alpha, self.gamma = float(alpha), float(gamma)
        self.maxiter, self.n_perturbations = maxiter, n_perturbations
        self.maxgrad, self.param_tol, self.max_step = maxgrad, param_tol, max_step
        self.ftol, self.n_small = float(ftol), n_small
        self.blocking, self.allowed_increase = blocking, allowed_increase
        self.target_step = (
            target_step if target_step is not None else self._default_target()
        )
        self.n_calibration = n_calibration
        self.paired, self.tagged = paired, tagged
        self.seed = seed if isinstance(seed, int) else None
        self.rng = np.random.default_rng(seed)
        # perturbations drawn ahead, when nothing else draws from the stream
        # between them (no pair seeds) and the stream is this run's own (not a
        # Generator the caller may draw from too)
        self._signs = (
            None
            if paired or isinstance(seed, np.random.Generator)
            else SignStream(self.rng, self.x.size)
        )
        self.callback, self.print_iters = callback, print_iters
        self.checkpoint = None if checkpoint is None else os.fspath(checkpoint)
        # progress: SPSAState's defaults, the one list of what a run learns
        SPSAState(
            self.x,
            a=self.a,
            allowed_increase=self.allowed_increase,
            phase=(
                Phase.INIT if (self.a is None or self._needs_noise()) else Phase.ITERATE
            ),
            rng=dict(self.rng.bit_generator.state),
        ).restore(self)
        self.fun = math.nan
        self._batch: list[tuple[NDArray[np.float64], int | None, tuple[Any, ...]]] = []
        self._values: list[float | None] = []
        self._index: dict[int, int] = {}
        self._asked = 0
        self._tag = 0
        if self.checkpoint is not None and os.path.exists(self.checkpoint):
            self._load()

    # -- helpers -----------------------------------------------------------------

    def _default_target(self) -> float:
        if self.bounds is not None:
            return 0.1 * float(np.median(self.bounds[1] - self.bounds[0]))
        return 0.1 * max(1.0, float(np.max(np.abs(self.x))))

    def _needs_noise(self) -> bool:
        return self.blocking and self.allowed_increase is None

    def _clip(self, x: NDArray[np.float64]) -> NDArray[np.float64]:
        if self.bounds is None:
            return x
        # np.clip's values, without its wrapper's cost
        return np.minimum(np.maximum(x, self.bounds[0]), self.bounds[1])

    def gains(self, k: int) -> tuple[float, float]:
        """``(a_k, c_k)`` at iteration ``k`` (``a`` must be known).

        Under Kesten's rule the step gain is a / (s + 1 + A), s the number of
        sign changes so far, whatever ``k`` is.
        """
        assert self.a is not None
        if self.kesten:
            ak = self.a / (self.sign_changes + 1 + self.A)
        else:
            ak = self.a / (k + 1 + self.A) ** self.alpha
        return ak, self.c / (k + 1) ** self.gamma

    def perturbation(self) -> NDArray[np.float64]:
        """A Rademacher vector (±1 each, probability 1/2) from the seeded stream."""
        if self._signs is not None:
            return self._signs.next()
        # what rng.choice([-1.0, 1.0], size) draws, without its checks
        return SIGNS[self.rng.integers(0, 2, size=self.x.size, dtype=np.int64)]

    def stream_state(self) -> Mapping[str, Any]:
        """The state of the random stream, as if nothing was drawn ahead (what
        a checkpoint saves)."""
        if self._signs is not None:
            return self._signs.state()
        return self.rng.bit_generator.state

    def stream_restored(self) -> None:
        """The random stream's state was set anew: drop what was drawn ahead."""
        if self._signs is not None:
            self._signs.forget()

    def _pairs(self, x: NDArray[np.float64], ck: float, n: int, role: str) -> None:
        for j in range(n):
            delta = self.perturbation()
            seed = int(self.rng.integers(_SEED_HIGH)) if self.paired else None
            shift = ck * delta
            self._batch.append((self._clip(x + shift), seed, (role, j, "+")))
            self._batch.append((self._clip(x - shift), seed, (role, j, "-")))

    def _build(self) -> None:
        self._batch, self._index, self._asked = [], {}, 0
        if self.phase == Phase.INIT:
            if self.a is None:
                self._pairs(self.x, self.c, self.n_calibration, "cal")
            if self._needs_noise():
                for j in range(self.n_calibration):
                    seed = int(self.rng.integers(_SEED_HIGH)) if self.paired else None
                    self._batch.append((self.x.copy(), seed, ("noise", j, "")))
        elif self.phase == Phase.PROBE:
            assert self.probe is not None
            # one seed for the whole line search: its points compare like a pair's
            seed = int(self.rng.integers(_SEED_HIGH)) if self.paired else None
            for j, factor in enumerate(self.probe_factors):
                point = self._clip(self.x - factor * self.probe[0])
                self._batch.append((point, seed, ("probe", j, "")))
        elif self.phase == Phase.ITERATE:
            _, ck = self.gains(self.k)
            self._pairs(self.x, ck, self.n_perturbations, "grad")
            if self.blocking:
                seed = int(self.rng.integers(_SEED_HIGH)) if self.paired else None
                self._batch.append((self.x.copy(), seed, ("center", 0, "")))
        elif self.phase == Phase.FINAL:
            seed = int(self.rng.integers(_SEED_HIGH)) if self.paired else None
            self._batch.append((self.x.copy(), seed, ("final", 0, "")))
        self._values = [None] * len(self._batch)

    @property
    def batch_size(self) -> int:
        """Evaluations in the current batch (the driver sends them at once);
        0 once finished."""
        if self.phase == Phase.DONE:
            return 0
        return max(1, len(self._batch))

    # -- ask/tell ----------------------------------------------------------------

    def _ask(self) -> Any | None:
        if self.phase == Phase.DONE:
            return None
        if not self._batch:
            self._build()
        if self._asked >= len(self._batch):
            return None
        x, seed, _ = self._batch[self._asked]
        self._index[self._next_number] = self._asked
        self._asked += 1
        if not self.tagged:
            return x.copy()
        self._tag += 1
        return SPSAPoint(x.copy(), seed, self._tag)

    def _tell(self, number: int, params: Any, value: float) -> None:
        i = self._index.pop(number)
        x = self._batch[i][0]
        if not math.isfinite(value):
            # a failed evaluation is told inf: the driver chains its error to this
            msg = (
                f"SPSA: the value at x = {np.array2string(x, precision=6)} is "
                f"{value} (returned by the objective, or told for a failed "
                "evaluation: then its error is the cause); SPSA needs finite values: "
                "make the objective finite there, or bound the parameters"
            )
            raise ValueError(msg)
        self._values[i] = value
        self.nfev += 1
        if None not in self._values:
            self._complete()

    @property
    def finished(self) -> bool:
        return self.phase == Phase.DONE

    # -- the update ----------------------------------------------------------------

    def _gradient(
        self, role: str
    ) -> tuple[NDArray[np.float64], Callable[[], float], list[float]]:
        """Mean gradient estimate over the pairs of ``role``, the mean magnitude
        of its coordinates (a function: only the calibration needs it), and the
        values of the pairs' points (in batch order)."""
        points: list[NDArray[np.float64]] = []
        values: list[float] = []
        for (x, _, (r, _, _)), v in zip(self._batch, self._values, strict=True):
            if r == role:  # _pairs puts each pair's "+" point before its "-"
                assert v is not None
                points.append(x)
                values.append(v)
        if len(points) == 2:  # one pair: the same arithmetic on fewer arrays
            diff = values[0] - values[1]
            if self.maxgrad is not None:
                diff = min(max(diff, -self.maxgrad), self.maxgrad)
            dist = (points[0] - points[1])[None, :]
            diffs: Any = diff
        else:
            f = np.array(values, dtype=float)
            xs = np.array(points)
            diffs = f[0::2] - f[1::2]
            if self.maxgrad is not None:
                diffs = np.clip(diffs, -self.maxgrad, self.maxgrad)
            diffs = diffs[:, None]
            dist = xs[0::2] - xs[1::2]
        if np.count_nonzero(dist) == dist.size:  # no coordinate clipped to a point
            g = diffs / dist
        else:
            g = np.divide(diffs, dist, out=np.zeros_like(dist), where=dist != 0)
        # np.mean's arithmetic without its wrapper's cost: a sum from +0.0 (the
        # identity numpy's reduction starts from), divided by the count
        gradient = g[0] + 0.0 if len(g) == 1 else np.add.reduce(g, axis=0) / len(g)

        def magnitude() -> float:
            moved = g[dist != 0]
            return float(np.mean(np.abs(moved))) if moved.size else 0.0

        return gradient, magnitude, values

    def _complete(self) -> None:
        if self.phase == Phase.INIT:
            self._complete_init()
        elif self.phase == Phase.PROBE:
            self._complete_probe()
        elif self.phase == Phase.ITERATE:
            self._complete_iteration()
        elif self.phase == Phase.FINAL:
            self.fun = float(self._values[0])  # type: ignore[arg-type]
            self.phase = Phase.DONE
        self._batch = []
        if self.phase != Phase.DONE:
            self._save()

    def _complete_init(self) -> None:
        noise: list[float] = [
            v
            for (_, _, (r, _, _)), v in zip(self._batch, self._values, strict=True)
            if r == "noise" and v is not None
        ]
        self.phase = Phase.ITERATE
        if self.a is None:
            gradient, magnitude, values = self._gradient("cal")
            scale = self.target_step / 0.1
            floor = 1e-3 * max(1.0, float(np.mean(np.abs(values)))) / scale
            first = self.target_step / max(magnitude(), floor)  # Spall's a_0
            if self.kesten:
                self.a = first  # scaled by the line search
                self.probe = (first * gradient, float(np.mean(values)))
                self.phase = Phase.PROBE
            else:
                self.a = first * (self.A + 1) ** self.alpha
        if noise:
            self.allowed_increase = 2.0 * float(np.std(noise, ddof=1))
            self.prev = (self.x.copy(), float(np.mean(noise)))

    def _complete_probe(self) -> None:
        """Move to the best point of the line search and set the gain from it."""
        assert self.probe is not None and self.a is not None
        values = [float(v) for v in self._values]  # type: ignore[arg-type]
        best = int(np.argmin(values))
        factor = self.probe_factors[best]
        if values[best] < self.probe[1]:
            self.x = self._batch[best][0].copy()
            if self.prev is not None:  # blocking compares with the new point
                self.prev = (self.x.copy(), values[best])
        else:  # no step improved on the start: even the shortest was too long
            factor = self.probe_factors[0] / 2
        if self.max_step is None:  # a trust region scaled by the line search
            step = factor * float(np.linalg.norm(self.probe[0]))
            self.trust_radius = _TRUST * step
        d = self.x.size
        first = self.a * factor * (1 + (d - 1) / self.n_calibration)
        first /= 1 + (d - 1) / self.n_perturbations
        self.a = first * (self.A + 1)
        self.probe = None
        self.phase = Phase.ITERATE

    def _complete_iteration(self) -> None:
        gradient, _, values = self._gradient("grad")
        estimate = _mean(values)
        if self.blocking:
            center = float(self._values[-1])  # type: ignore[arg-type]
            if self.prev is not None and center > self.prev[1] + (
                self.allowed_increase or 0.0
            ):
                # the last step made things worse: go back and try another direction
                self.x = self.prev[0].copy()
                self.k += 1
                self._after_iteration(estimate)
                return
            self.prev = (self.x.copy(), center)
        if self.kesten:
            if self.momentum is not None and gradient.dot(self.momentum) < 0:
                self.sign_changes += 1
            self.momentum = (
                gradient
                if self.momentum is None
                else _MOMENTUM * self.momentum + (1 - _MOMENTUM) * gradient
            )
        ak, _ = self.gains(self.k)
        step = -ak * gradient
        norm = _norm(step)
        radius = self.max_step if self.max_step is not None else self.trust_radius
        if radius is not None and norm > radius:
            step *= radius / norm  # a trust region, as Qiskit's
        new = self._clip(self.x + step)
        if self.param_tol is not None and np.max(np.abs(new - self.x)) > self.param_tol:
            self.rejections += 1
            if self.rejections >= _MAX_REJECTIONS:
                self.message = (
                    f"{_MAX_REJECTIONS} consecutive steps moved a parameter by more "
                    f"than param_tol={self.param_tol}"
                )
                self._finish(success=False)
            return  # the same iteration again, with a new perturbation
        self.rejections = 0
        change = _norm(new - self.x) / max(_norm(self.x), 1.0)
        self.small_steps = self.small_steps + 1 if change < self.ftol else 0
        self.x = new
        self.k += 1
        self._after_iteration(estimate)

    def _after_iteration(self, estimate: float) -> None:
        self.history_x.append(self.x.tolist())
        self.history_f.append(estimate)
        if self.print_iters and self.k % self.print_iters == 0:
            print(
                f"SPSA iteration {self.k}: f ~ {estimate:.6g}, x = {np.array2string(self.x, precision=4)}"
            )
        # the callback sees every iteration, the last one too (as noisyopt's and
        # scipy's do), whatever ends the run
        if self.callback is not None and self.callback(
            OptimizeResult(x=self.x.copy(), fun=estimate, nit=self.k, nfev=self.nfev)
        ):
            self.message = "stopped by the callback"
            self._finish(success=True)
        elif self.small_steps >= self.n_small:
            self.message = (
                f"the relative change of the parameters stayed below ftol={self.ftol} "
                f"for {self.n_small} iterations"
            )
            self._finish(success=True)
        elif self.k >= self.maxiter:
            self.message = f"reached maxiter={self.maxiter}"
            self._finish(success=True)

    def _finish(self, success: bool) -> None:
        self.success = success
        self.phase = Phase.FINAL

    @property
    def result(self) -> OptimizeResult:
        """The result so far: ``x``, ``fun``, ``nit``, ``nfev``, history, gains."""
        return OptimizeResult(
            x=self.x.copy(),
            fun=self.fun,
            nit=self.k,
            nfev=self.nfev,
            success=self.success and self.phase == Phase.DONE,
            message=self.message,
            history={"x": np.array(self.history_x), "fun": np.array(self.history_f)},
            a=self.a,
            c=self.c,
            A=self.A,
        )

    def describe(self) -> str:
        return (
            f"SPSA(a={self.a}, c={self.c}, A={self.A}, alpha={self.alpha}, "
            f"gamma={self.gamma}, n_perturbations={self.n_perturbations}, seed={self.seed})"
        )

    # -- checkpoints -----------------------------------------------------------------

    def _save(self) -> None:
        if self.checkpoint is None:
            return
        tmp = f"{self.checkpoint}.tmp"
        with open(tmp, "w") as f:
            f.write(SPSAState.of(self).to_json())
        os.replace(tmp, self.checkpoint)

    def _load(self) -> None:
        assert self.checkpoint is not None
        with open(self.checkpoint) as f:
            state = SPSAState.from_json(f.read())
        if state.x.shape != self.x.shape:
            msg = (
                f"the checkpoint {self.checkpoint} holds {state.x.size} parameters "
                f"but initparams has {self.x.size}; remove the file to start afresh"
            )
            raise ValueError(msg)
        state.restore(self)
