"""PML reducers registered under the ``reducer`` kind: DoNothingReducer and ThresholdReducer(low, high),
built from YAML-style specs, against NumPy."""
import numpy as np
import paddle
import pytest

from paddle_losses.errors import ConfigError
from paddle_losses.functional.reduction import AvgNonZeroReducer, build_reducer
from paddle_losses.registry import registry

LOSSES = np.array([0.0, 0.05, 0.3, 0.7, 1.2, 2.5])


def _reduce(spec, values=LOSSES, valid=None):
    x = paddle.to_tensor(values, stop_gradient=False)
    out = build_reducer(spec).elements(x, None if valid is None else paddle.to_tensor(valid))
    return x, out


def test_new_reducers_are_registered():
    assert {"DoNothingReducer", "ThresholdReducer"} <= set(registry("reducer").names())


@pytest.mark.parametrize("low,high", [(0.1, None), (None, 1.0), (0.05, 1.2), (0.0, None)])
def test_threshold_reducer_is_the_mean_strictly_inside_the_bounds(low, high):
    keep = np.ones_like(LOSSES, dtype=bool)
    if low is not None:
        keep &= LOSSES > low
    if high is not None:
        keep &= LOSSES < high
    _, out = _reduce({"name": "ThresholdReducer", "low": low, "high": high})
    np.testing.assert_allclose(float(out), LOSSES[keep].mean(), rtol=1e-12)


def test_threshold_reducer_low_zero_equals_avg_nonzero():
    _, a = _reduce({"name": "ThresholdReducer", "low": 0})
    b = AvgNonZeroReducer().elements(paddle.to_tensor(LOSSES))
    assert float(a) == float(b)


def test_threshold_reducer_with_nothing_in_range_gives_connected_zero():
    x, out = _reduce({"name": "ThresholdReducer", "low": 10.0})
    assert float(out) == 0.0
    out.backward()
    np.testing.assert_array_equal(x.grad.numpy(), np.zeros_like(LOSSES))


def test_threshold_reducer_respects_the_valid_mask():
    valid = np.array([True, True, False, True, False, True])
    _, out = _reduce({"name": "ThresholdReducer", "low": 0.1}, valid=valid)
    np.testing.assert_allclose(float(out), LOSSES[valid & (LOSSES > 0.1)].mean(), rtol=1e-12)


def test_threshold_reducer_needs_a_bound():
    with pytest.raises(ConfigError, match="at least one bound"):
        build_reducer({"name": "ThresholdReducer"})
    with pytest.raises(ConfigError, match="reducer.low"):
        build_reducer({"name": "ThresholdReducer", "low": "a"})


def test_do_nothing_reducer_returns_the_valid_elements_row_major():
    m = np.arange(9.0).reshape(3, 3)
    valid = np.eye(3) == 0
    _, out = _reduce("DoNothingReducer", m, valid)
    np.testing.assert_array_equal(out.numpy(), m[valid])
    _, whole = _reduce("DoNothingReducer")
    np.testing.assert_array_equal(whole.numpy(), LOSSES)


def test_column_sum_is_a_one_dimensional_sum_over_rows():
    import numpy as np
    import paddle
    from paddle_losses.functional.reduction import column_sum
    m = np.random.default_rng(3).normal(size=(5, 7))
    out = column_sum(paddle.to_tensor(m))
    assert out.shape == [7]
    np.testing.assert_allclose(out.numpy(), m.sum(axis=0), rtol=1e-12)
