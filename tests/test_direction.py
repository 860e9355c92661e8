"""One Direction type: parsed and checked in one place, with its sign."""

from __future__ import annotations

import json
import re

import pytest

from dasktune.direction import Direction, parse_directions
from dasktune.optim.pruners import MedianPruner


def test_a_direction_is_its_string_with_a_sign():
    up = Direction.parse("maximize")
    assert up is Direction.MAXIMIZE and up == "maximize"
    assert (Direction.MINIMIZE.sign, up.sign) == (1.0, -1.0)
    # shown, stored and compared as the string it equals
    assert repr([Direction.MINIMIZE, up]) == "['minimize', 'maximize']"
    assert json.dumps([up]) == '["maximize"]'
    assert f"{up}" == "maximize" and {up: 1}["maximize"] == 1


@pytest.mark.parametrize("bad", ["up", "Minimize", None, 1, ["minimize"]])
def test_a_bad_direction_names_what_came(bad):
    with pytest.raises(
        ValueError,
        match=re.escape(f"direction must be 'minimize' or 'maximize', got {bad!r}"),
    ):
        Direction.parse(bad)


def test_bad_directions_name_what_came():
    with pytest.raises(TypeError, match="directions must be a list .* got str"):
        parse_directions("minimize")
    for bad in ([], ["minimize", "up"], [None]):
        with pytest.raises(ValueError, match=re.escape(f"list of 'minimize' or 'maximize', one per objective, got {bad!r}")):  # fmt: skip
            parse_directions(bad)
    assert parse_directions(("maximize",)) == [Direction.MAXIMIZE]


def test_a_pruner_and_the_optuna_sampler_check_directions_as_the_search_does():
    pytest.importorskip("optuna")
    from dasktune import Float
    from dasktune.optim.optuna import OptunaSampler

    with pytest.raises(ValueError) as pruner:
        MedianPruner(direction="up")
    with pytest.raises(ValueError) as direction:
        Direction.parse("up")
    assert str(pruner.value) == str(direction.value)
    assert isinstance(MedianPruner(direction="maximize").direction, Direction)
    with pytest.raises(ValueError) as sampler:
        OptunaSampler(space={"x": Float(0, 1)}, directions=["minimize", "up"])
    with pytest.raises(ValueError) as search_rule:
        parse_directions(["minimize", "up"])
    assert str(sampler.value) == str(search_rule.value)
    made = OptunaSampler(space={"x": Float(0, 1)}, directions="maximize")
    assert made.directions == [Direction.MAXIMIZE]
