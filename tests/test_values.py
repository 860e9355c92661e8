"""What counts as an objective's value: numbers, NumPy scalars, arrays of size 1."""

from __future__ import annotations

import numpy as np
import pytest

from dasktune._values import as_value


@pytest.mark.parametrize(
    "raw",
    [
        0.25,
        np.float64(0.25),
        np.float32(0.25),
        np.array(0.25),  # 0-d
        np.array([0.25]),  # what norm.rvs(size=1) gives
        np.array([[0.25]]),  # x @ A @ x with a column
        [0.25],
    ],
)
def test_one_number_in_any_container_of_size_one(raw):
    value = as_value(raw)
    assert value == 0.25 and type(value) is float


def test_integers_and_bools_are_numbers():
    assert as_value(3) == 3.0 and as_value(np.int64(3)) == 3.0
    assert as_value(np.array([2], dtype=np.uint8)) == 2.0
    assert as_value(True) == 1.0


@pytest.mark.parametrize(
    ("raw", "came"),
    [
        (np.zeros(3), r"got ndarray of shape \(3,\) and dtype float64"),
        (np.zeros((0,)), r"got ndarray of shape \(0,\)"),
        ("0.5", "got str: '0.5'"),
        (None, "got NoneType: None"),
        ([1.0, 2.0], "got list of length 2"),
        (1 + 2j, "got complex"),
        (np.array(["a"]), r"shape \(1,\) and dtype <U1"),
        ({"a": 1}, "got dict of length 1"),
    ],
)
def test_anything_else_says_what_came_and_what_is_expected(raw, came):
    with pytest.raises(TypeError, match=came) as info:
        as_value(raw, "the value of trial 3")
    message = str(info.value)
    assert message.startswith("the value of trial 3 must be a real number")
    assert "an array of size 1" in message and "return one number" in message
