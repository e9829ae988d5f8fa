"""PML-style distances and reducers: float64 NumPy references, sign conventions, zero-distance gradients."""
import numpy as np
import paddle
import pytest

from golden import tensor
from gradcheck import assert_gradcheck
from paddle_losses.errors import ConfigError
from paddle_losses.functional import reduction as R
from paddle_losses.functional.distances import (CosineSimilarity, DotProductSimilarity, LpDistance,
                                                build_distance)


def _x(seed=0, n=6, d=4):
    return np.random.default_rng(seed).normal(size=(n, d)) * np.linspace(0.5, 2.0, n)[:, None]


def _unit(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.mark.parametrize("p,power,normalize", [(2, 1, True), (2, 2, False), (1, 1, True), (3, 1, False)])
def test_lp_distance_matches_numpy(p, power, normalize):
    x = _x()
    xn = _unit(x) if normalize else x
    ref = (np.abs(xn[:, None] - xn[None]) ** p).sum(-1) ** (1 / p) ** 1
    ref = ref ** power
    got = LpDistance(p=p, power=power, normalize_embeddings=normalize)(tensor(x)).numpy()
    np.testing.assert_allclose(got, ref, rtol=1e-6 if p == 3 else 1e-9, atol=1e-7)
    assert np.all(np.diag(got) == 0)


def test_cosine_and_dot_product_similarities_normalise_by_default():
    x = _x(1)
    ref = _unit(x) @ _unit(x).T
    np.testing.assert_allclose(CosineSimilarity()(tensor(x)).numpy(), ref, rtol=1e-12)
    np.testing.assert_allclose(DotProductSimilarity()(tensor(x)).numpy(), ref, rtol=1e-12)
    np.testing.assert_allclose(DotProductSimilarity(normalize_embeddings=False)(tensor(x)).numpy(), x @ x.T,
                               rtol=1e-12)


def test_reference_set_gives_rectangular_matrix():
    x, y = _x(2, n=3), _x(3, n=5)
    got = LpDistance(normalize_embeddings=False)(tensor(x), tensor(y)).numpy()
    np.testing.assert_allclose(got, np.linalg.norm(x[:, None] - y[None], axis=-1), rtol=1e-9)


def test_margin_and_as_distance_flip_for_similarities():
    a, b = tensor(np.array(0.3)), tensor(np.array(0.5))
    assert float(LpDistance().margin(a, b)) == pytest.approx(-0.2)
    assert float(CosineSimilarity().margin(a, b)) == pytest.approx(0.2)
    assert float(CosineSimilarity().as_distance(a)) == pytest.approx(-0.3)


def test_zero_distance_has_zero_not_nan_gradient():
    x = tensor(np.array([[1.0, 2.0], [1.0, 2.0], [0.0, 1.0]]), grad=True)
    LpDistance(normalize_embeddings=False)(x).sum().backward()
    assert np.all(np.isfinite(x.grad.numpy()))


def test_lp_distance_finite_difference_gradient():
    x = _x(4, n=4, d=3)
    assert_gradcheck(lambda t: (LpDistance()(t) * tensor(np.arange(16.0).reshape(4, 4))).sum(), [x])


def test_build_distance_accepts_names_mappings_and_rejects_unknown():
    assert build_distance(None, "LpDistance") == LpDistance()
    assert build_distance({"name": "LpDistance", "p": 1}) == LpDistance(p=1)
    assert build_distance("CosineSimilarity").is_inverted
    with pytest.raises(ConfigError, match="distance .Cosine. is not registered.*CosineSimilarity"):
        build_distance("Cosine")
    with pytest.raises(ValueError, match="LpDistance"):
        build_distance({"name": "LpDistance", "q": 1})


def test_reducers_mean_avg_nonzero_sum_and_empty():
    v = tensor(np.array([0.0, 2.0, 4.0, 0.0]))
    valid = tensor(np.array([True, True, False, True]))
    assert float(R.reduce_elements(v, "MeanReducer")) == pytest.approx(1.5)
    assert float(R.reduce_elements(v, "AvgNonZeroReducer")) == pytest.approx(3.0)
    assert float(R.reduce_elements(v, "SumReducer")) == pytest.approx(6.0)
    assert float(R.reduce_elements(v, "MeanReducer", valid)) == pytest.approx(2.0 / 3)
    assert float(R.reduce_elements(v, "AvgNonZeroReducer", valid)) == pytest.approx(2.0)
    z = tensor(np.zeros(3), grad=True)
    out = R.reduce_elements(z, "AvgNonZeroReducer")
    out.backward()
    assert float(out) == 0.0 and np.all(z.grad.numpy() == 0)
    with pytest.raises(ConfigError, match="reducer .AvgReducer. is not registered.*AvgNonZeroReducer"):
        R.check_reducer("AvgReducer")


def test_reduce_totals_divides_by_the_right_count():
    t = paddle.to_tensor(6.0)
    assert float(R.reduce_totals(t, paddle.to_tensor(4.0), paddle.to_tensor(2.0), "MeanReducer")) == 1.5
    assert float(R.reduce_totals(t, paddle.to_tensor(4.0), paddle.to_tensor(2.0), "AvgNonZeroReducer")) == 3.0
    assert float(R.divisor_reduce(t, paddle.to_tensor(0.0))) == 0.0
