"""autograder.compare refuses values that could lie, and compares the rest exactly."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from autograder.compare import (
    as_array, as_float, as_int, as_str, expect, expect_all_close, expect_choice, expect_close, expect_equal, plain,
)


class LyingStr(str):
    def __eq__(self, other):
        return True

    __hash__ = str.__hash__


class LyingInt(int):
    def __eq__(self, other):
        return True

    __hash__ = int.__hash__


class LyingFloat(float):
    def __float__(self):
        return 2.0


class AlwaysEqual:
    def __eq__(self, other):
        return True


class LyingArray(np.ndarray):
    def __eq__(self, other):
        return np.ones(self.shape, dtype=bool)


@pytest.mark.parametrize("value", [LyingStr("A"), LyingInt(3), LyingFloat(1.0), AlwaysEqual(), [AlwaysEqual()],
                                   {"k": LyingStr("x")}, np.zeros(2).view(LyingArray)])
def test_values_that_could_lie_are_refused(value):
    with pytest.raises(AssertionError, match="plain|must be"):
        expect_equal(value, value if not isinstance(value, (list, dict)) else 0, "should not pass")


def test_lying_answers_cannot_pass_their_checks():
    with pytest.raises(AssertionError, match="must be a string"):
        expect_choice(LyingStr("A"), "B", {"A": "mistake A"})
    with pytest.raises(AssertionError, match="mistake A"):
        expect_choice("A", "B", {"A": "mistake A"})
    with pytest.raises(AssertionError, match="a number"):
        expect_close(LyingFloat(1.0), 2.0, "x")
    with pytest.raises(AssertionError, match="True or False"):
        expect(np.array([True, True]), "an array is not a verdict")


def test_numpy_and_torch_scalars_are_plain_numbers():
    assert as_float(np.float32(0.5)) == 0.5 and type(as_float(np.float32(0.5))) is float
    assert as_float(torch.tensor(1.5)) == 1.5 and as_float(np.array(2.0)) == 2.0
    assert as_int(np.int64(3)) == 3 and type(as_int(np.int64(3))) is int
    assert as_str(np.str_("B")) == "B" and type(as_str(np.str_("B"))) is str
    assert plain((np.int64(1), [np.float64(2.0)], {"a": np.bool_(True)})) == (1, [2.0], {"a": True})
    with pytest.raises(AssertionError):
        as_int(True)


def test_closeness_is_strict_about_nan_shape_and_tolerance():
    expect_close(0.1 + 0.2, 0.3, "x")
    with pytest.raises(AssertionError, match="too far"):
        expect_close(0.31, 0.3, "too far")
    with pytest.raises(AssertionError):
        expect_close(math.nan, math.nan, "nan never matches")
    expect_all_close(torch.ones(2, 3), np.ones((2, 3)), "x")
    with pytest.raises(AssertionError, match=r"shape \(3,\)"):
        expect_all_close(np.ones(3), np.ones((1, 3)), "wrong shape")
    with pytest.raises(AssertionError):
        expect_all_close(np.array([np.nan]), np.array([np.nan]), "nan")
    assert as_array([1, 2]).dtype == np.float64
