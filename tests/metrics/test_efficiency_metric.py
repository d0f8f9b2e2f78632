"""Label-efficiency summaries, checked by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from benchmark.metrics.efficiency import aubc, labels_to_reach, percent_of_reference

B = [100, 200, 400]
V = [0.2, 0.4, 0.5]


def test_aubc_by_hand():
    # trapezoids: 100 * (0.2 + 0.4) / 2 + 200 * (0.4 + 0.5) / 2 = 30 + 90 = 120, over the range 300
    assert aubc(B, V) == pytest.approx(0.4)
    assert aubc(B[::-1], V[::-1]) == pytest.approx(0.4)  # order does not matter
    assert aubc([50, 150], [0.7, 0.7]) == pytest.approx(0.7)  # constant curve -> the constant
    assert aubc([300], [0.42]) == 0.42  # single point -> its value
    assert aubc(np.array([0, 1, 3]), np.array([0.0, 1.0, 1.0])) == pytest.approx(2.5 / 3)


def test_aubc_rejects_bad_curves():
    for b, v in (([1, 1], [0.1, 0.2]), ([1, 2], [0.1]), ([], []), ([1, 2], [0.1, math.nan])):
        with pytest.raises(ValueError):
            aubc(b, v)


def test_percent_of_reference():
    assert percent_of_reference(0.3, 0.6) == pytest.approx(50.0)
    assert isinstance(percent_of_reference(0.3, 0.6), float)
    np.testing.assert_allclose(percent_of_reference([0.3, 0.6, 0.9], 0.6), [50.0, 100.0, 150.0])
    assert math.isnan(percent_of_reference(0.3, 0.0))


def test_labels_to_reach_interpolates():
    assert labels_to_reach(B, V, 0.3) == pytest.approx(150.0)  # halfway between 0.2 and 0.4
    assert labels_to_reach(B, V, 0.45) == pytest.approx(300.0)  # halfway between 0.4 and 0.5
    assert labels_to_reach(B, V, 0.5) == pytest.approx(400.0)  # reached exactly at the last point
    assert labels_to_reach(B, V, 0.2) == 100.0
    assert labels_to_reach(B, V, 0.1) == 100.0  # already reached at the first budget
    assert labels_to_reach(B, V, 0.6) is None  # never reached, no extrapolation


def test_labels_to_reach_first_crossing_of_non_monotone_curve():
    b, v = [1, 2, 3, 4], [0.2, 0.5, 0.3, 0.6]
    assert labels_to_reach(b, v, 0.45) == pytest.approx(1 + 0.25 / 0.3)  # first crossing, dip ignored
    assert labels_to_reach(b, v, 0.55) == pytest.approx(3 + 0.25 / 0.3)  # only the last segment reaches


def test_labels_to_reach_lower_is_better():
    b, mr = [10, 20, 40], [0.5, 0.3, 0.2]  # e.g. miss rate falling with more labels
    assert labels_to_reach(b, mr, 0.25, higher_is_better=False) == pytest.approx(30.0)
    assert labels_to_reach(b, mr, 0.4, higher_is_better=False) == pytest.approx(15.0)
    assert labels_to_reach(b, mr, 0.6, higher_is_better=False) == 10.0
    assert labels_to_reach(b, mr, 0.1, higher_is_better=False) is None
    # the same target with the wrong direction is reached at once
    assert labels_to_reach(b, mr, 0.25) == 10.0
