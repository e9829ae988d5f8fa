"""Building blocks of the pair losses' closed-form core: float pair masks, outer sums, the L2 distance of
unit rows from their similarity matrix, and the multi-similarity miner on a given similarity matrix."""
import numpy as np
import paddle
import pytest

from paddle_losses.functional.distances import LpDistance
from paddle_losses.functional.mining import MultiSimilarityMiner
from paddle_losses.functional.mining.targets import read_pair_labels
from paddle_losses.functional.normalize import l2_normalize
from paddle_losses.functional.pair_core import (float_pair_masks, inverse_distance, outer_sum, reducer_scale,
                                                unit_distance)
from paddle_losses.functional.reduction import AvgNonZeroReducer, MeanReducer, SumReducer

IDS = {
    "pk": np.arange(12) // 3,
    "negative_and_large": np.array([-3, 2 ** 23, -3, 7, 2 ** 23, 0]),
    "beyond_float32": np.array([2 ** 40, 2 ** 40 + 1, 2 ** 40, 5]),  # differences not exact in float32
}


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("kind", list(IDS))
def test_float_pair_masks_equal_the_bool_label_masks(kind, dtype):
    labels = read_pair_labels(paddle.to_tensor(IDS[kind]), len(IDS[kind]), "test")
    pos, neg = float_pair_masks(labels, dtype)
    want_pos, want_neg = labels.masks()
    assert pos.dtype == neg.dtype == getattr(paddle, dtype)
    np.testing.assert_array_equal(pos.numpy(), want_pos.numpy().astype(dtype))
    np.testing.assert_array_equal(neg.numpy(), want_neg.numpy().astype(dtype))


def test_float_pair_masks_of_multi_hot_labels():
    multi_hot = paddle.to_tensor([[1, 0, 1], [0, 1, 0], [1, 0, 0], [0, 0, 0]], dtype="float32")
    labels = read_pair_labels(multi_hot, 4, "test")
    pos, neg = float_pair_masks(labels, "float32")
    want_pos, want_neg = labels.masks()
    np.testing.assert_array_equal(pos.numpy(), want_pos.numpy())
    np.testing.assert_array_equal(neg.numpy(), want_neg.numpy())


def test_outer_sum_equals_the_broadcast_sum():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=7), rng.normal(size=5)
    got = outer_sum(paddle.to_tensor(a), paddle.to_tensor(b)).numpy()
    np.testing.assert_array_equal(got, a[:, None] + b[None, :])


@pytest.mark.parametrize("dtype,rtol", [("float32", 1e-5), ("float64", 1e-12)])
def test_unit_distance_reproduces_lp_distance_including_the_diagonal(dtype, rtol):
    x = paddle.to_tensor(np.random.default_rng(1).normal(size=(40, 16)).astype(dtype))
    unit_rows = l2_normalize(x, "clamp", eps=1e-12)
    d, q = unit_distance(paddle.matmul(unit_rows, unit_rows, transpose_y=True))
    want = LpDistance()(x).numpy()
    np.testing.assert_allclose(d.numpy(), want, rtol=rtol, atol=rtol)
    np.testing.assert_array_equal(np.diag(d.numpy()), 0.0)
    np.testing.assert_allclose(q.numpy(), want ** 2, rtol=rtol, atol=rtol)


def test_inverse_distance_is_zero_at_distance_zero():
    q = paddle.to_tensor([[0.0, 4.0], [0.25, 0.0]], dtype="float64")
    inverse = inverse_distance(paddle.sqrt(q), q.clone()).numpy()
    np.testing.assert_allclose(inverse, [[0.0, 0.5], [2.0, 0.0]], rtol=1e-15)


def test_reducer_scale_counts_what_each_reducer_averages():
    valid, positive = paddle.to_tensor(8.0), paddle.to_tensor(5.0)
    assert reducer_scale(MeanReducer(), valid, positive) == 1 / 8
    assert reducer_scale(AvgNonZeroReducer(), valid, positive) == 1 / 5
    assert reducer_scale(SumReducer(), valid, positive) == 1.0
    assert reducer_scale(AvgNonZeroReducer(), valid, paddle.to_tensor(0.0)) == 1.0


@pytest.mark.parametrize("labels", [np.arange(24) // 4, np.array([0, 1, 2, 0, 3, 0, 1, 4, 4, 4]),
                                    np.zeros(5, dtype=np.int64), np.arange(5)])
@pytest.mark.parametrize("epsilon", [0.1, 0.5])
def test_multi_similarity_miner_on_a_given_similarity_keeps_the_same_pairs(labels, epsilon):
    x = paddle.to_tensor(np.random.default_rng(2).normal(size=(len(labels), 8)).astype("float32"))
    y = paddle.to_tensor(labels)
    miner = MultiSimilarityMiner(epsilon=epsilon)
    want = miner(x, y)
    unit_rows = l2_normalize(x, "clamp", eps=1e-12)
    pos, neg = float_pair_masks(read_pair_labels(y, len(labels), "test"), "float32")
    keep_pos, keep_neg = miner.similarity_pairs(paddle.matmul(unit_rows, unit_rows, transpose_y=True), pos, neg)
    np.testing.assert_array_equal(keep_pos.numpy(), want.pos.numpy().astype("float32"))
    np.testing.assert_array_equal(keep_neg.numpy(), want.neg.numpy().astype("float32"))
