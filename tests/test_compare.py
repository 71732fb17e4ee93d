"""autograder.compare refuses values that could lie, and compares the rest exactly."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from autograder.compare import (
    as_array,
    as_float,
    as_int,
    as_str,
    expect,
    expect_all_close,
    expect_choice,
    expect_close,
    expect_equal,
    nearest_mistake,
    plain,
    relative_distance,
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


@pytest.mark.parametrize(
    "value",
    [
        LyingStr("A"),
        LyingInt(3),
        LyingFloat(1.0),
        AlwaysEqual(),
        [AlwaysEqual()],
        {"k": LyingStr("x")},
        np.zeros(2).view(LyingArray),
    ],
)
def test_values_that_could_lie_are_refused(value):
    with pytest.raises(AssertionError, match=r"plain|must be"):
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


def _lora_outputs(dtype):
    """A 384-wide layer's right output and two classic mistakes, the student's side computed in ``dtype``."""
    g = torch.Generator().manual_seed(3)
    x, w = torch.randn(28, 384, generator=g), torch.randn(384, 384, generator=g) / 20
    a, b = torch.randn(8, 384, generator=g), torch.randn(384, 8, generator=g)
    low = x.double() @ a.double().T @ b.double().T
    base = x.double() @ w.double().T
    right, mistakes = base + 2.0 * low, {"alpha": base + 16.0 * low, "unscaled": base + low}
    student = (x.to(dtype) @ w.to(dtype).T + 16.0 * (x.to(dtype) @ a.to(dtype).T @ b.to(dtype).T)).double()
    return right, mistakes, student


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_nearest_mistake_names_a_mistake_whatever_the_rounding(dtype):
    right, mistakes, student = _lora_outputs(dtype)
    assert not torch.allclose(student, mistakes["alpha"], rtol=0, atol=1e-5) or dtype == torch.float64, (
        "the fixture should round beyond a fixed absolute tolerance, as the old check did"
    )
    assert nearest_mistake(student, right, mistakes) == "alpha"


def test_nearest_mistake_names_nothing_for_a_right_or_an_unexplained_answer():
    right, mistakes, _ = _lora_outputs(torch.float32)
    assert nearest_mistake(right.float(), right, mistakes) is None
    assert nearest_mistake(right + 0.5 * right.abs().max(), right, mistakes) is None
    assert nearest_mistake(right[:3], right, mistakes) is None, "another shape is no candidate's"


def test_nearest_mistake_never_names_a_candidate_equal_to_the_right_value():
    right = np.linspace(-1.0, 1.0, 50)
    assert nearest_mistake(right, right, {"same": right.copy()}) is None
    assert nearest_mistake(right * 1.0000001, right, {"same": right * 1.0000001}) is None


def test_nearest_mistake_stays_silent_between_two_close_candidates():
    right = np.linspace(-1.0, 1.0, 50)
    one, two = right + 1.0, right + 1.0 + 2e-4
    assert nearest_mistake(one + 1e-4, right, {"one": one, "two": two}) is None
    assert nearest_mistake(one, right, {"one": one, "far": right + 5.0}) == "one"


def test_relative_distance_is_measured_on_the_expected_scale():
    assert relative_distance([1.0, 2.0], [1.0, 2.0]) == 0.0
    assert math.isclose(relative_distance([1.0, 2.5], [1.0, 2.0]), 0.25)
    assert relative_distance([1.0, math.nan], [1.0, 2.0]) == math.inf
    assert relative_distance([1.0], [1.0, 2.0]) == math.inf
