"""Parameter spaces: specs, sampling, and the box encoding."""

from __future__ import annotations

import numpy as np
import pytest

from dasktune.space import Bool, Categorical, Float, Int, Space


def full_space() -> Space:
    return Space(
        {
            "x": Float(-2.0, 3.0),
            "lr": Float(1e-5, 1.0, log=True),
            "n": Int(1, 10),
            "width": Int(1, 1000, log=True),
            "kind": Categorical(["rbf", "linear", 3, None]),
            "flag": Bool(),
        }
    )


def test_round_trip_of_random_samples():
    space = full_space()
    assert space.ndim == 1 + 1 + 1 + 1 + 4 + 2
    rng = np.random.default_rng(0)
    for _ in range(500):
        params = space.sample(rng)
        x = space.encode(params)
        assert x.shape == (space.ndim,)
        assert np.all((x >= -1) & (x <= 1))
        back = space.decode(x)
        assert {k: back[k] for k in ("n", "width", "kind", "flag")} == {
            k: params[k] for k in ("n", "width", "kind", "flag")
        }
        assert back["x"] == pytest.approx(params["x"])
        assert back["lr"] == pytest.approx(params["lr"])


def test_decoding_covers_every_value_and_stays_in_range():
    space = Space({"n": Int(1, 4), "kind": Categorical(["a", "b", "c"])})
    rng = np.random.default_rng(1)
    points = rng.uniform(-1.5, 1.5, size=(2000, space.ndim))  # outside the box too
    values = [space.decode(p) for p in points]
    assert {v["n"] for v in values} == {1, 2, 3, 4}
    assert {v["kind"] for v in values} == {"a", "b", "c"}


def test_int_bins_are_equal_width():
    dim = Int(0, 3)
    edges = [
        dim.decode(np.array([x])) for x in (-1.0, -0.51, -0.49, 0.01, 0.49, 0.51, 1.0)
    ]
    assert edges == [0, 0, 1, 2, 2, 3, 3]


def test_log_float_is_uniform_in_log_space():
    dim = Float(1e-4, 1.0, log=True)
    assert dim.decode(np.array([0.0])) == pytest.approx(1e-2)
    assert dim.encode(1e-2)[0] == pytest.approx(0.0)


def test_categoricals_are_values_not_indices():
    dim = Categorical(["rbf", "linear"])
    assert dim.decode(np.array([-1.0, 1.0])) == "linear"
    np.testing.assert_array_equal(dim.encode("rbf"), [1.0, -1.0])


def test_cotengra_specs():
    space = Space(
        {
            "a": {"type": "FLOAT", "min": 0.0, "max": 1.0},
            "b": {"type": "FLOAT_EXP", "min": 0.01, "max": 10.0},
            "c": {"type": "INT", "min": 2, "max": 9},
            "d": {"type": "STRING", "options": ["greedy", "kahypar"]},
            "e": {"type": "BOOL"},
        }
    )
    assert space.dimensions["a"] == Float(0.0, 1.0)
    assert space.dimensions["b"] == Float(0.01, 10.0, log=True)
    assert space.dimensions["c"] == Int(2, 9)
    assert space.dimensions["d"] == Categorical(["greedy", "kahypar"])
    assert space.dimensions["e"] == Bool()


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        (
            {"type": "FLOAT", "min": 1.0, "max": 1.0},
            "'p'.*low < high",
        ),
        ({"type": "FLOAT_EXP", "min": 0.0, "max": 1.0}, "'p'.*log=True.*low > 0"),
        ({"type": "STRING", "options": []}, "'p'.*at least one choice"),
        ({"type": "COMPLEX", "min": 0, "max": 1}, "'p'.*unknown type 'COMPLEX'"),
        ({"type": "INT", "min": 0}, "'p'.*needs the key 'max'"),
        (42, r"'p'.*expected a dimension, Float\(low, high\), Int\(low, high\)"),
        (
            (0.0, 1.0),
            r"'p'.*got tuple: \(0.0, 1.0\); for a range write Float\(0.0, 1.0\)",
        ),
        ((1, 9), r"for a range write Int\(1, 9\)"),
        (["rbf", "poly"], r"for choices write Categorical\(\['rbf', 'poly'\]\)"),
        ([True, False], r"for True or False write Bool\(\)"),
    ],
)
def test_bad_specs_name_the_parameter(spec, match):
    with pytest.raises(ValueError, match=match):
        Space({"p": spec})


def test_bad_dimensions():
    with pytest.raises(ValueError, match="Float low must be finite, got -inf"):
        Float(-np.inf, 1.0)
    with pytest.raises(ValueError, match="low < high"):
        Float(2.0, 1.0)
    with pytest.raises(ValueError, match="low > 0"):
        Int(0, 5, log=True)
    with pytest.raises(ValueError, match="must be an integer"):
        Int(0.5, 5)
    with pytest.raises(ValueError, match="not one of the choices"):
        Categorical(["a"]).encode("b")
    with pytest.raises(ValueError, match="non-empty dict"):
        Space({})
    with pytest.raises(ValueError, match="coordinates"):
        Space({"x": Float(0, 1)}).decode([0.0, 0.0])
