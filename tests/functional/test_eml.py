"""eml_statistics: EmlLoss's row statistics with a hand-written backward, against plain autograd."""
import numpy as np
import paddle
import pytest

from gradcheck import assert_gradcheck
from paddle_losses.functional.eml import eml_statistics
from paddle_losses.functional.masks import positive_negative
from paddle_losses.functional.mining import hardest_positive_negative
from paddle_losses.functional.pairwise import squared_euclidean
from paddle_losses.losses.grouped import group_masks

RNG = np.random.default_rng(11)


def autograd_statistics(x, pos, neg):
    """The statistics as EmlLoss.forward computed them before eml_statistics (plain paddle autograd)."""
    q = squared_euclidean(x)
    pmax, nmin, has_pos, has_neg = hardest_positive_negative(q, pos, neg, larger_is_closer=False)
    zeros = paddle.zeros_like(q)
    pos_f, neg_f = pos.astype(q.dtype), neg.astype(q.dtype)
    pos_exp = paddle.exp(paddle.where(pos, q - pmax.unsqueeze(1), zeros)) * pos_f
    neg_exp = paddle.exp(paddle.where(neg, nmin.unsqueeze(1) - q, zeros)) * neg_f
    pm = pos_exp.sum(axis=1) / paddle.clip(pos_f.sum(axis=1), min=1.0)
    nm = neg_exp.sum(axis=1) / paddle.clip(neg_f.sum(axis=1), min=1.0)
    return pmax, nmin, pm, nm, has_pos, has_neg


def values_and_gradient(fn, x, pos, neg, weights):
    """Outputs of ``fn`` and the gradient w.r.t. ``x`` of ``Σ_k weights[k] · output_k`` (float outputs)."""
    xt = paddle.to_tensor(x)
    xt.stop_gradient = False
    out = fn(xt, pos, neg)
    total = sum((paddle.to_tensor(w, dtype=xt.dtype) * o).sum() for w, o in zip(weights, out[:4]))
    total.backward()
    return [o.numpy() for o in out], xt.grad.numpy()


def assert_matches_reference(x, pos, neg, rtol=1e-6, atol=1e-6):
    weights = RNG.normal(size=(4, x.shape[0]))
    got, got_grad = values_and_gradient(eml_statistics, x, pos, neg, weights)
    want, want_grad = values_and_gradient(autograd_statistics, x, pos, neg, weights)
    for name, g, w in zip(("pmax", "nmin", "pm", "nm", "has_pos", "has_neg"), got, want):
        np.testing.assert_allclose(g, w, rtol=rtol, atol=atol, err_msg=name)
    assert np.isfinite(got_grad).all()
    np.testing.assert_allclose(got_grad, want_grad, rtol=rtol, atol=atol, err_msg="gradient")


@pytest.mark.parametrize("n, k", [(12, 3), (12, 4), (10, 4), (9, 2)],
                         ids=["full_k3", "full_k4", "partial_trailing_group", "trailing_singleton"])
def test_values_and_gradients_match_autograd_on_random_batches(n, k):
    # (9, 2): the last row has no positive (pmax = pm = 0, no gradient through them).
    assert_matches_reference(RNG.normal(size=(n, 6)), *group_masks(n, k))


def test_exact_ties_from_duplicated_rows_share_the_gradient_like_paddle_max():
    x = RNG.normal(size=(12, 5))
    x[1] = x[0]            # a duplicate inside a group: q = 0 (clipped) between them
    x[2] = x[0] * 1.0      # three equal rows in one group: tied hardest positives of the others
    x[7] = x[4]            # a duplicate across groups: tied hardest negatives
    x[10] = x[4]
    pos, neg = group_masks(12, 3)
    assert_matches_reference(x, pos, neg)
    # Equal rows at equal distance: rows 4, 7 and 10 are the nearest negatives of each other.
    assert_matches_reference(np.repeat(RNG.normal(size=(4, 3)), 3, axis=0)[[0, 3, 6, 9, 1, 4, 7, 10, 2, 5, 8, 11]],
                             pos, neg)


def test_a_batch_of_one_group_has_no_negatives():
    x = RNG.normal(size=(3, 4))
    pos, neg = group_masks(3, 4)
    assert_matches_reference(x, pos, neg)
    pmax, nmin, pm, nm, has_pos, has_neg = eml_statistics(paddle.to_tensor(x), pos, neg)
    assert not has_neg.numpy().any() and (nmin.numpy() == 0).all() and (nm.numpy() == 0).all()


def test_overlapping_masks_with_the_diagonal_match_autograd():
    labels = paddle.to_tensor(RNG.integers(0, 3, size=10))
    pos = positive_negative(labels)[0]          # includes the diagonal (q = 0, no gradient)
    neg = paddle.to_tensor(RNG.random((10, 10)) < 0.6)  # overlaps pos
    assert_matches_reference(RNG.normal(size=(10, 4)), pos, neg)


def test_large_distances_stay_finite():
    # q reaches ~1e5: an exp of an unselected entry (e.g. nmin - 0 on the diagonal) would overflow to inf and
    # a NaN would reach the gradient.
    x = 100.0 * RNG.normal(size=(8, 4))
    assert_matches_reference(x, *group_masks(8, 2), rtol=1e-9, atol=1e-9)


def test_float32_values_and_gradients_match_autograd_to_rounding():
    x = RNG.normal(size=(40, 8)).astype(np.float32)
    x[5] = x[4]
    pos, neg = group_masks(40, 4)
    weights = RNG.normal(size=(4, 40))
    got, got_grad = values_and_gradient(eml_statistics, x, pos, neg, weights)
    want, want_grad = values_and_gradient(autograd_statistics, x, pos, neg, weights)
    assert got[0].dtype == np.float32 and got_grad.dtype == np.float32
    # Row sums run as matrix-vector products (functional.reduction.row_sum): same values up to summation order.
    for name, g, w in zip(("pmax", "nmin", "pm", "nm", "has_pos", "has_neg"), got, want):
        np.testing.assert_allclose(g, w, rtol=2e-6, atol=1e-6, err_msg=name)
    np.testing.assert_allclose(got_grad, want_grad, rtol=1e-5, atol=1e-5 * np.abs(want_grad).max())


def _scalar_of_all_outputs(x, k=2):
    pmax, nmin, pm, nm, has_pos, has_neg = eml_statistics(x, *group_masks(x.shape[0], k))
    valid = paddle.logical_and(has_pos, has_neg).astype(x.dtype)
    return (valid * (0.3 * pmax - 0.7 * nmin + paddle.log(pm) + 2.0 * nm * nm)).sum() + has_pos.astype(x.dtype).sum()


def test_finite_difference_gradient_of_a_function_of_all_outputs():
    # Random rows: no ties, no clipped distances (finite differences need a smooth point).
    x = RNG.normal(size=(9, 3))
    assert_gradcheck(_scalar_of_all_outputs, [x], rtol=1e-5, atol=1e-7)


def test_runs_under_to_static():
    x = RNG.normal(size=(10, 4))
    weights = RNG.normal(size=(4, 10))

    def total(xt):
        pos, neg = group_masks(xt.shape[0], 3)
        out = eml_statistics(xt, pos, neg)
        return sum((paddle.to_tensor(w, dtype=xt.dtype) * o).sum() for w, o in zip(weights, out[:4]))

    grads = []
    for fn in (total, paddle.jit.to_static(total, full_graph=True)):
        xt = paddle.to_tensor(x)
        xt.stop_gradient = False
        value = fn(xt)
        value.backward()
        grads.append((float(value), xt.grad.numpy()))
    (eager_value, eager_grad), (static_value, static_grad) = grads
    np.testing.assert_allclose(static_value, eager_value, rtol=1e-12)
    np.testing.assert_allclose(static_grad, eager_grad, rtol=1e-10, atol=1e-12)
