"""The shared functional core: normalisation variants, pairwise matrices, masks, masked mining, reductions."""
import numpy as np
import paddle
import pytest

from gradcheck import assert_gradcheck
from paddle_losses.functional.inplace import inplace
from paddle_losses.functional.mining import Candidates, hardest_pairs
from paddle_losses.functional.reduction import row_sum
from paddle_losses.functional import (dot_similarity, gram_euclidean, hardest, hardest_positive_negative,
                                      l2_normalize, masked_mean, positive_negative, reduce, same_label,
                                      squared_euclidean)

RNG = np.random.default_rng(0)


def t(a, grad=False):
    x = paddle.to_tensor(np.asarray(a))
    x.stop_gradient = not grad
    return x


@pytest.mark.parametrize("variant, expected", [
    ("plain", lambda x, n: x / n), ("clamp", lambda x, n: x / np.maximum(n, 1e-12)),
    ("add", lambda x, n: x / (n + 1e-12))])
def test_normalisation_variants_match_their_formulas(variant, expected):
    x = RNG.normal(size=(5, 3))
    n = np.linalg.norm(x, axis=1, keepdims=True)
    np.testing.assert_allclose(l2_normalize(t(x), variant).numpy(), expected(x, n), rtol=1e-12)


def test_zero_row_is_finite_for_clamp_and_add():
    z = t(np.zeros((1, 3)))
    assert np.isfinite(l2_normalize(z, "clamp").numpy()).all()
    assert np.isfinite(l2_normalize(z, "add").numpy()).all()
    with pytest.raises(ValueError, match="unknown normalisation variant"):
        l2_normalize(z, "l1")


def test_pairwise_matrices_match_brute_force():
    x, y = RNG.normal(size=(4, 3)), RNG.normal(size=(6, 3))
    diff2 = ((x[:, None] - y[None]) ** 2).sum(-1)
    np.testing.assert_allclose(dot_similarity(t(x), t(y)).numpy(), x @ y.T, rtol=1e-12)
    np.testing.assert_allclose(squared_euclidean(t(x), t(y)).numpy(), diff2, rtol=1e-10)
    np.testing.assert_allclose(gram_euclidean(t(x), t(y)).numpy(), np.sqrt(np.maximum(diff2, 1e-12)),
                               rtol=1e-10)
    self_q = squared_euclidean(t(x)).numpy()
    assert (np.diag(self_q) == 0).all()


def test_masks_include_or_exclude_the_diagonal():
    y = t(np.array([0, 0, 1]))
    assert same_label(y).numpy().tolist() == [[True, True, False], [True, True, False], [False, False, True]]
    pos, neg = positive_negative(y, exclude_self=True)
    assert pos.numpy().tolist() == [[False, True, False], [True, False, False], [False, False, False]]
    assert neg.numpy().tolist() == [[False, False, True], [False, False, True], [True, True, False]]
    pos, _ = positive_negative(y, t(np.array([1, 0])))
    assert pos.numpy().tolist() == [[False, True], [False, True], [True, False]]


def test_hardest_split_ties_share_the_gradient_like_paddle_max():
    x = t(np.array([[1.0, 3.0, 3.0, 2.0], [0.0, 0.0, 1.0, 5.0]]), grad=True)
    mask = t(np.array([[True, True, True, False], [False, False, False, False]]))
    value, valid = hardest(x, mask, "max")
    value.sum().backward()
    assert value.numpy().tolist() == [3.0, 0.0] and valid.numpy().tolist() == [True, False]
    assert x.grad.numpy().tolist() == [[0, 0.5, 0.5, 0], [0, 0, 0, 0]]


def test_hardest_first_tie_takes_the_whole_gradient_like_python_max():
    x = t(np.array([[1.0, 3.0, 3.0, 2.0]]), grad=True)
    value, _ = hardest(x, t(np.array([[True, True, True, True]])), "max", ties="first")
    value.sum().backward()
    assert x.grad.numpy().tolist() == [[0, 1, 0, 0]]


def test_hardest_ignores_masked_entries_even_if_extreme():
    x = t(np.array([[9.0, -9.0, 1.0, 2.0]]))
    assert hardest(x, t(np.array([[False, False, True, True]])), "max")[0].numpy().tolist() == [2.0]
    assert hardest(x, t(np.array([[False, False, True, True]])), "min")[0].numpy().tolist() == [1.0]
    with pytest.raises(ValueError):
        hardest(x, t(np.array([[True] * 4])), "median")
    with pytest.raises(ValueError):
        hardest(x, t(np.array([[True] * 4])), "max", ties="last")


def test_hardest_positive_negative_on_similarity_and_distance():
    s = RNG.normal(size=(6, 6))
    y = np.array([0, 0, 1, 1, 1, 2])
    pos, neg = positive_negative(t(y))
    ap, an, vp, vn = hardest_positive_negative(t(s), pos, neg, larger_is_closer=True)
    same = y[:, None] == y[None]
    np.testing.assert_allclose(ap.numpy(), np.where(same, s, np.inf).min(1))
    np.testing.assert_allclose(an.numpy(), np.where(~same, s, -np.inf).max(1))
    ap, an, _, _ = hardest_positive_negative(t(s), pos, neg, larger_is_closer=False)
    np.testing.assert_allclose(ap.numpy(), np.where(same, s, -np.inf).max(1))
    np.testing.assert_allclose(an.numpy(), np.where(~same, s, np.inf).min(1))
    assert vp.numpy().all() and vn.numpy().all()


def test_hardest_gradient_matches_finite_differences():
    s = RNG.normal(size=(5, 5))
    mask = t(RNG.random((5, 5)) > 0.4)

    def f(x):
        return (hardest(x, mask, "max")[0] ** 2).sum() + hardest(x, mask, "min", ties="first")[0].sum()

    assert_gradcheck(f, [s])


def test_masked_mean_excludes_invalid_and_keeps_a_gradient_path_when_empty():
    v = t(np.array([1.0, 2.0, 6.0]), grad=True)
    assert float(masked_mean(v, t(np.array([True, False, True])))) == 3.5
    empty = masked_mean(v, t(np.array([False, False, False])))
    assert float(empty) == 0.0
    empty.backward()
    assert v.grad is not None and np.isfinite(v.grad.numpy()).all()


def test_reduce_modes():
    v = t(np.array([1.0, 2.0, 6.0]))
    valid = t(np.array([True, False, True]))
    assert float(reduce(v, "sum", valid)) == 7.0
    assert reduce(v, "none", valid).numpy().tolist() == [1.0, 0.0, 6.0]
    assert float(reduce(v, "mean")) == 3.0
    with pytest.raises(ValueError, match="reduction"):
        reduce(v, "avg")


@pytest.mark.parametrize("metric", ["dot", "euclidean", "sqeuclidean"])
@pytest.mark.parametrize("ties", ["split", "first"])
@pytest.mark.parametrize("duplicates", [False, True])
def test_hardest_pairs_equals_dense_mining_values_and_gradients(metric, ties, duplicates):
    dense_metric = {"dot": dot_similarity, "euclidean": gram_euclidean, "sqeuclidean": squared_euclidean}[metric]
    xn = RNG.normal(size=(12, 5))
    if duplicates:  # exact ties, including a duplicate negative at distance 0
        xn[3], xn[7] = xn[1], xn[2]
    y = t(np.array([0, 0, 0, 1, 1, 2, 2, 2, 3, 4, 4, 4]))
    pos, neg = positive_negative(y)
    results = []
    for dense in (True, False):
        x = t(xn, grad=True)
        if dense:
            ap, an, vp, vn = hardest_positive_negative(dense_metric(x), pos, neg, metric == "dot", ties=ties)
        else:
            ap, an, vp, vn = hardest_pairs(x, pos, neg, metric, ties=ties)
        ((1.3 * ap + 0.7 * an) ** 2).sum().backward()
        results.append((ap.numpy(), an.numpy(), x.grad.numpy()))
    for a, b in zip(*results):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)


def test_hardest_pairs_against_keys_and_rows_without_candidates():
    xn, kn = RNG.normal(size=(4, 3)), RNG.normal(size=(6, 3))
    y, ky = t(np.array([0, 1, 2, 9])), t(np.array([0, 0, 1, 1, 2, 2]))
    pos, neg = positive_negative(y, ky)
    x = t(xn, grad=True)
    ap, an, vp, vn = hardest_pairs(x, pos, neg, "dot", keys=t(kn))
    s = xn @ kn.T
    same = y.numpy()[:, None] == ky.numpy()[None]
    assert vp.numpy().tolist() == [True, True, True, False] and vn.numpy().all()
    np.testing.assert_allclose(ap.numpy()[:3], np.where(same, s, np.inf).min(1)[:3])
    np.testing.assert_allclose(an.numpy(), np.where(~same, s, -np.inf).max(1))
    assert ap.numpy()[3] == 0.0
    (ap.sum() + an.sum()).backward()
    assert np.isfinite(x.grad.numpy()).all()


def test_hardest_pairs_gradient_matches_finite_differences():
    xn = RNG.normal(size=(8, 4))
    y = t(np.array([0, 0, 1, 1, 1, 2, 2, 3]))
    pos, neg = positive_negative(y)

    def f(x):
        ap, an, _, _ = hardest_pairs(x, pos, neg, "euclidean")
        return (paddle.nn.functional.relu(ap - an + 1.0) ** 2).sum()

    assert_gradcheck(f, [xn])
    with pytest.raises(ValueError, match="metric"):
        hardest_pairs(t(xn), pos, neg, "cosine")


def test_row_sum_equals_sum_along_rows_with_its_gradient():
    a = RNG.normal(size=(7, 5))
    x = t(a, grad=True)
    out = row_sum(x)
    np.testing.assert_allclose(out.numpy(), a.sum(1), rtol=1e-12)
    assert row_sum(x, keepdim=True).shape == [7, 1]
    (out * t(np.arange(7.0))).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), np.repeat(np.arange(7.0)[:, None], 5, axis=1))


def test_inplace_overwrites_the_buffer_in_eager_mode():
    a = t(np.array([1.0, -2.0, 3.0]))
    out = inplace(a, "scale", 2.0)
    np.testing.assert_array_equal(out.numpy(), [2.0, -4.0, 6.0])
    np.testing.assert_array_equal(a.numpy(), [2.0, -4.0, 6.0])  # the input itself was overwritten


@pytest.mark.parametrize("with_neg", [True, False])
def test_hardest_pairs_with_prebuilt_candidates_equals_building_them_from_masks(with_neg):
    xn = RNG.normal(size=(10, 4))
    y = t(np.array([0, 0, 1, 1, 1, 2, 2, 3, 3, 3]))
    pos, neg = positive_negative(y)
    neg = neg if with_neg else None
    candidates = Candidates.from_masks(pos, neg)
    a = hardest_pairs(t(xn), pos, neg, "euclidean")
    b = hardest_pairs(t(xn), None, None, "euclidean", candidates=candidates)
    for u, v in zip(a, b):
        np.testing.assert_array_equal(u.numpy(), v.numpy())
    assert candidates.has_neg.numpy().all() and not candidates.pos_excluded.numpy().diagonal().any()


@pytest.mark.parametrize("metric", ["dot", "euclidean"])
def test_hardest_pairs_with_ties_and_rows_without_candidates_equals_dense_mining(metric):
    dense_metric = {"dot": dot_similarity, "euclidean": gram_euclidean}[metric]
    xn = RNG.normal(size=(9, 4))
    xn[5] = xn[1]  # rows 1 and 5 have different labels: an exact tie among the negatives of anchors 2 and 3
    xn[2] = xn[1] + 0.01  # ... which is anchor 2's hardest negative
    y = t(np.array([0, 0, 1, 1, 2, 2, 3, 4, 5]))  # anchors 6-8 have no positive besides themselves
    pos, neg = positive_negative(y, exclude_self=True)
    results = []
    for dense in (True, False):
        x = t(xn, grad=True)
        if dense:
            ap, an, vp, vn = hardest_positive_negative(dense_metric(x), pos, neg, metric == "dot")
        else:
            ap, an, vp, vn = hardest_pairs(x, pos, neg, metric)
        ((1.3 * ap + 0.7 * an) ** 2).sum().backward()
        results.append((ap.numpy(), an.numpy(), vp.numpy(), x.grad.numpy()))
    assert not results[1][2][6:].any()
    for a, b in zip(*results):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
