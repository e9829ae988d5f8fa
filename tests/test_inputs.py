"""Boundary checks: each bad input names what was expected."""
import numpy as np
import paddle
import pytest

from paddle_losses.errors import InputError
from paddle_losses.inputs import check_features, check_labels, pick, set_value_checks


def test_pick_reports_the_keys_that_are_present():
    with pytest.raises(InputError, match=r"reads input\['neck'\], but the model output has keys \['backbone', 'features'\]"):
        pick({"features": 1, "backbone": 2}, "neck", "Loss")
    assert pick({"features": 1}, "features", "Loss") == 1
    x = paddle.ones([2, 2])
    assert pick(x, "features", "Loss") is x
    with pytest.raises(InputError, match="got a bare Tensor"):
        pick(x, "features", "Loss", allow_tensor=False)
    with pytest.raises(InputError, match="got list"):
        pick([x], "features", "Loss")


def test_check_features_rank_dtype_empty_and_nan():
    with pytest.raises(InputError, match=r"must have shape \[N, D\], got shape \[2, 3, 4\]"):
        check_features(paddle.ones([2, 3, 4]), "Loss")
    with pytest.raises(InputError, match="floating-point"):
        check_features(paddle.ones([2, 3], dtype="int64"), "Loss")
    with pytest.raises(InputError, match="empty batch"):
        check_features(paddle.ones([0, 3]), "Loss")
    bad = paddle.to_tensor(np.array([[1.0, np.nan]], dtype="float32"))
    with pytest.raises(InputError, match="NaN or Inf"):
        check_features(bad, "Loss")
    old = set_value_checks(False)
    try:
        check_features(bad, "Loss")
    finally:
        set_value_checks(old)
    with pytest.raises(InputError, match="must be a paddle.Tensor"):
        check_features(np.ones((2, 2)), "Loss")


def test_check_labels_shapes_dtypes_and_count():
    assert check_labels(paddle.to_tensor([[1], [2]]), 2, "L").shape == [2]
    assert check_labels(paddle.to_tensor([1, 2], dtype="int32"), 2, "L").dtype == paddle.int64
    with pytest.raises(InputError, match="has 3 entries but the batch has 2 samples"):
        check_labels(paddle.to_tensor([1, 2, 3]), 2, "L")
    with pytest.raises(InputError, match="integer class ids"):
        check_labels(paddle.to_tensor([1.0, 2.0]), 2, "L")
    with pytest.raises(InputError, match=r"shape \[N\] or \[N, 1\], got \[2, 2\]"):
        check_labels(paddle.ones([2, 2], dtype="int64"), 2, "L")
    with pytest.raises(InputError, match="got None"):
        check_labels(None, 2, "L")
    with pytest.raises(InputError, match="got bool"):
        check_labels(paddle.to_tensor([True, False]), 2, "L")


_TRACED = {}


def _angular_loss_value(x, y):
    # Module-level on purpose: Paddle caches translated programs by function identity, and a test-local
    # function can reuse the id of one that another test already translated and dropped.
    return _TRACED["loss"]({"features": x}, y)["TripletAngularMarginLoss"]


def test_losses_trace_under_full_graph_to_static():
    import paddle_losses as pl
    _TRACED["loss"] = pl.get_loss("TripletAngularMarginLoss")(add_absolute=True)
    static = paddle.jit.to_static(_angular_loss_value, full_graph=True)
    x = paddle.to_tensor(np.random.default_rng(0).normal(size=(8, 4)).astype("float32"))
    y = paddle.to_tensor([0, 0, 1, 1, 2, 2, 3, 3])
    np.testing.assert_allclose(float(static(x, y)), float(_angular_loss_value(x, y)), rtol=1e-6)


def test_keyed_features_and_labels_reads_the_key_and_flattens_n_by_1_labels():
    from paddle_losses.inputs import keyed_features_and_labels

    x, y = keyed_features_and_labels({"neck": paddle.ones([3, 2])}, paddle.to_tensor([[1], [2], [3]]), "neck", "L")
    assert x.shape == [3, 2] and y.shape == [3] and y.dtype == paddle.int64
    with pytest.raises(InputError, match="L: label has 2 entries but the batch has 3"):
        keyed_features_and_labels({"neck": paddle.ones([3, 2])}, paddle.to_tensor([1, 2]), "neck", "L")
