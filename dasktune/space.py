"""Named parameter spaces and their encoding to the box ``[-1, 1]^d``.

A space is a dict of dimensions — :class:`Float`, :class:`Int`,
:class:`Categorical`, :class:`Bool` — or cotengra's dict specs
(``{"type": "FLOAT" | "FLOAT_EXP" | "INT" | "STRING" | "BOOL", "min": ...,
"max": ..., "options": [...]}``). Vector optimizers work in the box; the
encoding (as cotengra's) is linear or logarithmic for floats, equal-width bins
for integers, one dimension per choice (the largest wins) for categoricals, and
two for booleans. Categoricals are always stored as their values, never as
indices, so a sweep can be extended with a new choice.

>>> space = Space({"lr": Float(1e-4, 1e-1, log=True), "depth": Int(1, 8)})
>>> space.ndim
2
>>> space.decode(space.encode({"lr": 0.01, "depth": 3}))["depth"]
3
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

__all__ = ["Bool", "Categorical", "Dimension", "Float", "Int", "Space"]


class Dimension:
    """One named parameter: sampling, encoding and decoding."""

    ndim: int = 1

    def sample(self, rng: np.random.Generator) -> Any:
        """A random value, uniform in the encoded box."""
        return self.decode(rng.uniform(-1.0, 1.0, size=self.ndim))

    def encode(self, value: Any) -> NDArray[np.float64]:
        """The value as ``ndim`` coordinates in ``[-1, 1]``."""
        raise NotImplementedError

    def decode(self, x: NDArray[np.float64]) -> Any:
        """The value at coordinates ``x`` (clipped to the box)."""
        raise NotImplementedError

    def to_json(self) -> dict[str, Any]:
        """A JSON description, stored with a search to detect a changed space."""
        raise NotImplementedError

    @property
    def size(self) -> int | None:
        """How many distinct values it takes, or ``None`` when continuous."""
        return None

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Dimension) and self.to_json() == other.to_json()

    def __hash__(self) -> int:
        return hash(repr(self))

    def __repr__(self) -> str:
        fields = ", ".join(
            f"{k}={v!r}" for k, v in self.to_json().items() if k != "type"
        )
        return f"{type(self).__name__}({fields})"


def _unit(x: NDArray[np.float64]) -> float:
    """A box coordinate as a fraction in [0, 1]."""
    return float(np.clip((x[0] + 1.0) / 2.0, 0.0, 1.0))


def _check_number(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.number):
        msg = f"{name} must be a number, got {type(value).__name__}: {value!r}"
        raise ValueError(msg)
    if not math.isfinite(float(value)):  # a box to sample and encode: finite
        msg = f"{name} must be finite, got {value!r}; give the range to search"
        raise ValueError(msg)
    return float(value)


class Float(Dimension):
    """A real parameter in ``[low, high]``, uniform or log-uniform (``log=True``).

    With ``log=True`` and a ``power`` p, the box is uniform in ``value ** p``
    instead of in ``log(value)`` (cotengra's ``exponential_param_power``).
    """

    def __init__(
        self, low: float, high: float, log: bool = False, power: float | None = None
    ) -> None:
        self.low = _check_number("Float low", low)
        self.high = _check_number("Float high", high)
        self.log = bool(log)
        self.power = None if power is None else _check_number("Float power", power)
        if self.power is not None and (not self.log or self.power <= 0):
            msg = f"Float power needs log=True and power > 0, got power={power!r}"
            raise ValueError(msg)
        if not self.low < self.high:
            msg = f"Float needs low < high, got low={low!r}, high={high!r}"
            raise ValueError(msg)
        if self.log and self.low <= 0:
            msg = f"Float(log=True) needs low > 0, got low={low!r}"
            raise ValueError(msg)

    def _forward(self, v: float) -> float:
        if not self.log:
            return float(v)
        return float(v) ** self.power if self.power else math.log(v)

    def _backward(self, u: float) -> float:
        if not self.log:
            return u
        return u ** (1.0 / self.power) if self.power else math.exp(u)

    def encode(self, value: Any) -> NDArray[np.float64]:
        lo, hi = self._forward(self.low), self._forward(self.high)
        return np.array([2.0 * (self._forward(value) - lo) / (hi - lo) - 1.0])

    def decode(self, x: NDArray[np.float64]) -> float:
        lo, hi = self._forward(self.low), self._forward(self.high)
        v = self._backward(lo + _unit(x) * (hi - lo))
        return float(min(max(v, self.low), self.high))

    def to_json(self) -> dict[str, Any]:
        out = {"type": "float", "low": self.low, "high": self.high, "log": self.log}
        if self.power is not None:
            out["power"] = self.power
        return out


class Int(Dimension):
    """An integer parameter in ``[low, high]`` (both included); ``log=True`` for
    a log-uniform spread. Encoded as equal-width bins of the box."""

    def __init__(self, low: int, high: int, log: bool = False) -> None:
        for label, value in (("low", low), ("high", high)):
            if isinstance(value, bool) or not isinstance(value, int | np.integer):
                msg = f"Int {label} must be an integer, got {value!r}"
                raise ValueError(msg)
        self.low, self.high, self.log = int(low), int(high), bool(log)
        if not self.low < self.high:
            msg = f"Int needs low < high, got low={low!r}, high={high!r}"
            raise ValueError(msg)
        if self.log and self.low <= 0:
            msg = f"Int(log=True) needs low > 0, got low={low!r}"
            raise ValueError(msg)

    def _ends(self) -> tuple[float, float]:
        # bins cover [low, high + 1) so that every integer gets an equal share
        if self.log:
            return math.log(self.low), math.log(self.high + 1)
        return float(self.low), float(self.high + 1)

    def encode(self, value: Any) -> NDArray[np.float64]:
        lo, hi = self._ends()
        v = int(value)
        # the middle of the integer's bin (in log space when log=True)
        center = 0.5 * (math.log(v) + math.log(v + 1)) if self.log else v + 0.5
        return np.array([2.0 * (center - lo) / (hi - lo) - 1.0])

    def decode(self, x: NDArray[np.float64]) -> int:
        lo, hi = self._ends()
        v = lo + _unit(x) * (hi - lo)
        v = math.exp(v) if self.log else v
        return int(min(max(math.floor(v), self.low), self.high))

    def to_json(self) -> dict[str, Any]:
        return {"type": "int", "low": self.low, "high": self.high, "log": self.log}

    @property
    def size(self) -> int:
        return self.high - self.low + 1


class Categorical(Dimension):
    """One of ``choices`` (JSON-able values: str, number, bool or None).

    Encoded as one dimension per choice; the largest coordinate wins. Stored as
    the chosen value itself, never as its index.
    """

    def __init__(self, choices: Sequence[Any]) -> None:
        if isinstance(choices, str) or not isinstance(choices, Sequence):
            msg = f"Categorical choices must be a list, got {choices!r}"
            raise ValueError(msg)
        if not choices:
            msg = "Categorical needs at least one choice, got an empty list"
            raise ValueError(msg)
        self.choices = list(choices)
        self.ndim = len(self.choices)

    def sample(self, rng: np.random.Generator) -> Any:
        return self.choices[int(rng.integers(len(self.choices)))]

    def encode(self, value: Any) -> NDArray[np.float64]:
        try:
            index = self.choices.index(value)
        except ValueError as err:
            msg = f"{value!r} is not one of the choices {self.choices!r}"
            raise ValueError(msg) from err
        out = -np.ones(self.ndim)
        out[index] = 1.0
        return out

    def decode(self, x: NDArray[np.float64]) -> Any:
        return self.choices[int(np.argmax(x))]

    def to_json(self) -> dict[str, Any]:
        return {"type": "categorical", "choices": self.choices}

    @property
    def size(self) -> int:
        return len({json.dumps(c, sort_keys=True) for c in self.choices})


class Bool(Dimension):
    """``True`` or ``False`` (two box dimensions, the larger wins)."""

    ndim = 2

    def sample(self, rng: np.random.Generator) -> bool:
        return bool(rng.integers(2))

    def encode(self, value: Any) -> NDArray[np.float64]:
        return np.array([1.0, -1.0]) if not value else np.array([-1.0, 1.0])

    def decode(self, x: NDArray[np.float64]) -> bool:
        return bool(np.argmax(x) == 1)

    def to_json(self) -> dict[str, Any]:
        return {"type": "bool"}

    @property
    def size(self) -> int:
        return 2


def _from_cotengra(name: str, spec: Mapping[str, Any]) -> Dimension:
    kind = str(spec.get("type", "")).upper()
    try:
        if kind == "FLOAT":
            return Float(spec["min"], spec["max"])
        if kind == "FLOAT_EXP":
            return Float(spec["min"], spec["max"], log=True)
        if kind == "INT":
            return Int(spec["min"], spec["max"])
        if kind == "STRING":
            return Categorical(spec["options"])
        if kind == "BOOL":
            return Bool()
    except KeyError as err:
        msg = f"parameter {name!r}: a {kind} spec needs the key {err.args[0]!r}"
        raise ValueError(msg) from err
    msg = (
        f"parameter {name!r}: unknown type {spec.get('type')!r}; expected one of "
        "FLOAT, FLOAT_EXP, INT, STRING, BOOL"
    )
    raise ValueError(msg)


def _dimension(name: str, spec: Any) -> Dimension:
    if isinstance(spec, Dimension):
        return spec
    if isinstance(spec, Mapping):
        try:
            return _from_cotengra(name, spec)
        except ValueError as err:
            if str(err).startswith(f"parameter {name!r}"):
                raise
            msg = f"parameter {name!r}: {err}"
            raise ValueError(msg) from err
    msg = (
        f"parameter {name!r}: expected a dimension, Float(low, high), Int(low, "
        "high), Categorical(choices) or Bool() (from dasktune), or a cotengra "
        f"dict spec, got {type(spec).__name__}: {spec!r}{_spec_hint(spec)}"
    )
    raise ValueError(msg)


def _spec_hint(spec: Any) -> str:
    """What to write instead of ``spec``, when it is a common guess.

    >>> _spec_hint((0, 10))
    '; for a range write Int(0, 10)'
    >>> _spec_hint(["rbf", "linear"])
    "; for choices write Categorical(['rbf', 'linear'])"
    """
    if type(spec).__module__.split(".")[0] == "optuna":
        return (
            "; Optuna's distributions are written Float(low, high, log=...), "
            "Int(low, high) and Categorical(choices) here"
        )
    if not isinstance(spec, list | tuple) or not spec:
        return ""
    numbers = all(isinstance(v, int | float) and not isinstance(v, bool) for v in spec)
    if isinstance(spec, tuple) and len(spec) == 2 and numbers:
        kind = "Int" if all(isinstance(v, int) for v in spec) else "Float"
        return f"; for a range write {kind}({spec[0]!r}, {spec[1]!r})"
    if isinstance(spec, tuple):
        return ""  # (low, high, step)? no guess
    if all(isinstance(v, bool) for v in spec):
        return "; for True or False write Bool()"
    return f"; for choices write Categorical({list(spec)!r})"


def _contains(dim: Dimension, value: Any) -> bool:
    """Whether ``value`` is a value of ``dim`` (as stored: plain JSON values)."""
    if isinstance(dim, Bool):
        return isinstance(value, bool)
    if isinstance(dim, Categorical):
        return any(type(value) is type(c) and value == c for c in dim.choices)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    if isinstance(dim, Int):
        return float(value).is_integer() and dim.low <= value <= dim.high
    if isinstance(dim, Float):
        return dim.low <= value <= dim.high
    return False


def _within(dim: Dimension, other: Dimension) -> bool:
    """Whether every value of ``dim`` is a value of ``other``."""
    if dim == other:  # the same dimension (of any kind)
        return True
    if isinstance(dim, Categorical):
        return all(_contains(other, c) for c in dim.choices)
    if isinstance(dim, Bool):
        return _contains(other, True) and _contains(other, False)
    if isinstance(dim, Int) and isinstance(other, Categorical):
        return dim.size <= len(other.choices) and all(
            _contains(other, v) for v in range(dim.low, dim.high + 1)
        )
    if isinstance(dim, Int) and isinstance(other, Int | Float):
        return other.low <= dim.low and dim.high <= other.high
    if isinstance(dim, Float) and isinstance(other, Float):
        return other.low <= dim.low and dim.high <= other.high
    return False


class Space:
    """A named parameter space: a dict of dimensions, in a fixed order.

    Parameters
    ----------
    dimensions : mapping of str to Dimension or dict spec
        Each parameter's name and its dimension.

    Raises
    ------
    ValueError
        If a spec is bad; the message names the parameter.
    """

    def __init__(self, dimensions: Mapping[str, Any] | Space) -> None:
        if isinstance(dimensions, Space):
            dimensions = dimensions.dimensions
        if not isinstance(dimensions, Mapping) or not dimensions:
            msg = f"a space is a non-empty dict of named dimensions, got {dimensions!r}"
            raise ValueError(msg)
        named = [name for name in dimensions if not isinstance(name, str)]
        if named:
            # str(1) would name it "1", and {1: ..., "1": ...} would collide
            msg = (
                f"a space's dimensions are named by strings, got {named[0]!r} "
                f"({type(named[0]).__name__}); name it {str(named[0])!r}"
            )
            raise TypeError(msg)
        self.dimensions: dict[str, Dimension] = {
            name: _dimension(name, spec) for name, spec in dimensions.items()
        }
        self.names = list(self.dimensions)
        self._slices: dict[str, slice] = {}
        start = 0
        for name, dim in self.dimensions.items():
            self._slices[name] = slice(start, start + dim.ndim)
            start += dim.ndim
        self.ndim = start

    @property
    def size(self) -> int | None:
        """How many distinct parameter sets it holds; ``None`` unless every
        dimension is discrete.

        >>> Space({"a": Int(0, 1), "b": Categorical(["x", "y", "z"])}).size
        6
        >>> Space({"a": Int(0, 1), "x": Float(0, 1)}).size is None
        True
        """
        total = 1
        for dim in self.dimensions.values():
            size = dim.size
            if size is None:
                return None
            total *= size
        return total

    @property
    def bounds(self) -> list[tuple[float, float]]:
        """``(-1, 1)`` for every box dimension, for vector optimizers."""
        return [(-1.0, 1.0)] * self.ndim

    def sample(self, rng: np.random.Generator) -> dict[str, Any]:
        """One random parameter dict."""
        return {name: dim.sample(rng) for name, dim in self.dimensions.items()}

    def encode(self, params: Mapping[str, Any]) -> NDArray[np.float64]:
        """A parameter dict as a point of the box."""
        missing = set(self.names) - set(params)
        if missing:
            msg = f"parameters {sorted(missing)} are missing from {dict(params)!r}"
            raise ValueError(msg)
        return np.concatenate(
            [dim.encode(params[name]) for name, dim in self.dimensions.items()]
        )

    def decode(self, x: Sequence[float] | NDArray[np.float64]) -> dict[str, Any]:
        """The parameter dict at a point of the box."""
        x = np.asarray(x, dtype=float)
        if x.shape != (self.ndim,):
            msg = f"expected a point with {self.ndim} coordinates, got shape {x.shape}"
            raise ValueError(msg)
        return {
            name: dim.decode(x[self._slices[name]])
            for name, dim in self.dimensions.items()
        }

    def contains(self, params: Mapping[str, Any]) -> bool:
        """Whether ``params`` names a value of every dimension (extra keys allowed).

        >>> space = Space({"n": Int(1, 4), "kind": Categorical(["a", "b"])})
        >>> space.contains({"n": 2, "kind": "a"}), space.contains({"n": 9, "kind": "a"})
        (True, False)
        """
        return self.outside(params) is None

    def outside(self, params: Mapping[str, Any]) -> str | None:
        """Why ``params`` is not a point of this space (a name missing, a value
        out of its dimension), or ``None`` when it is (extra keys allowed).

        >>> Space({"n": Int(1, 4)}).outside({"n": 9})
        'n=9 is not in Int(low=1, high=4, log=False)'
        """
        for name, dim in self.dimensions.items():
            if name not in params:
                return f"it has no {name!r}"
            value = params[name]
            if isinstance(value, np.generic):  # a grid's numpy numbers
                value = value.item()
            if not _contains(dim, value):
                return f"{name}={value!r} is not in {dim!r}"
        return None

    def outside_of(self, other: Space) -> str | None:
        """Why a point of this space may not be a point of ``other`` (a name
        ``other`` has and this space lacks, a dimension reaching past
        ``other``'s), or ``None`` when every point of this space is one of
        ``other`` (extra names allowed; ``log`` and ``power`` only spread the
        points).

        >>> Space({"x": Float(0, 2)}).outside_of(Space({"x": Float(0, 1)}))
        'x: Float(low=0.0, high=2.0, log=False) reaches outside Float(low=0.0, high=1.0, log=False)'
        >>> Space({"x": Float(0.1, 1, log=True)}).outside_of(Space({"x": Float(0, 1)})) is None
        True
        """
        for name, dim in other.dimensions.items():
            mine = self.dimensions.get(name)
            if mine is None:
                return f"it has no {name!r}"
            if not _within(mine, dim):
                return f"{name}: {mine!r} reaches outside {dim!r}"
        return None

    def with_power(self, power: float | None) -> Space:
        """This space with ``power`` on every log-scaled Float (None: itself)."""
        if power is None:
            return self
        return Space(
            {
                name: Float(d.low, d.high, log=True, power=power)
                if isinstance(d, Float) and d.log
                else d
                for name, d in self.dimensions.items()
            }
        )

    @classmethod
    def from_json(cls, described: Mapping[str, Mapping[str, Any]]) -> Space:
        """The space :meth:`to_json` described (as a store keeps it).

        >>> space = Space({"n": Int(1, 4, log=True), "on": Bool()})
        >>> Space.from_json(space.to_json()) == space
        True
        """
        makers = {
            "float": lambda d: Float(d["low"], d["high"], d["log"], d.get("power")),
            "int": lambda d: Int(d["low"], d["high"], d["log"]),
            "categorical": lambda d: Categorical(d["choices"]),
            "bool": lambda d: Bool(),
        }
        dims = {}
        for name, d in described.items():
            if d.get("type") not in makers:
                msg = (
                    f"parameter {name!r}: unknown dimension {d!r}; expected the "
                    f"type to be one of {sorted(makers)}"
                )
                raise ValueError(msg)
            dims[name] = makers[d["type"]](d)
        return cls(dims)

    def to_json(self) -> dict[str, Any]:
        """A JSON description of every dimension."""
        return {name: dim.to_json() for name, dim in self.dimensions.items()}

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Space) and self.to_json() == other.to_json()

    def __hash__(self) -> int:
        return hash(repr(self))

    def __repr__(self) -> str:
        return f"Space({self.dimensions!r})"
