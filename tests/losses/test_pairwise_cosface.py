"""PairwiseCosface: golden parity, float64 NumPy reference (with the −99999999 mask constant), gradients,
singleton and single-class behaviour, input validation."""
import numpy as np
import paddle
import pytest

import paddle_losses as pl
from golden import assert_close, cases, tensor
from gradcheck import assert_gradcheck
from paddle_losses.errors import InputError
from paddle_losses.losses.pairwise_cosface import PairwiseCosface

GOLDEN = cases("metric", "PairwiseCosface__*.npz")
RNG = np.random.default_rng(9)


def np_logsumexp(a):
    m = a.max(1, keepdims=True)
    return (m + np.log(np.exp(a - m).sum(1, keepdims=True)))[:, 0]


def np_pairwise_cosface(x, y, margin, gamma):
    xn = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    s = xn @ xn.T
    pos = (y[:, None] == y[None, :]) - np.eye(len(y))
    neg = (y[:, None] != y[None, :]).astype(float)
    lp = -gamma * s * pos - 99999999.0 * (1 - pos)
    ln = gamma * (s * neg + margin) - 99999999.0 * (1 - neg)
    z = np_logsumexp(lp) + np_logsumexp(ln)
    return np.where(z > 20, z, np.log1p(np.exp(np.minimum(z, 20)))).mean()


@pytest.mark.parametrize("golden_case", GOLDEN, ids=lambda c: c.name)
def test_golden_outputs_and_gradients(golden_case):
    c = golden_case
    (key, value), = c.with_prefix("input__").items()
    x = tensor(value, grad=True)
    out = PairwiseCosface(**c.params)(x if key == "x" else {key: x}, tensor(c["label"]))
    assert list(out) == ["PairwiseCosface"]
    assert_close(out["PairwiseCosface"], c["out__PairwiseCosface"], "PairwiseCosface")
    out["PairwiseCosface"].backward()
    assert_close(x.grad, c[f"grad__{key}"], "grad")


def test_golden_case_count():
    assert len(GOLDEN) == 3


@pytest.mark.parametrize("labels", [[0, 0, 1, 1, 2, 2], [0, 1, 1, 1, 2, 3], [4, 4, 4, 1, 1, 0]])
def test_matches_numpy_reference(labels):
    x, y = RNG.normal(size=(6, 5)), np.array(labels)
    out = float(PairwiseCosface(margin=0.3, gamma=8)(paddle.to_tensor(x), paddle.to_tensor(y))["PairwiseCosface"])
    np.testing.assert_allclose(out, np_pairwise_cosface(x, y, 0.3, 8), rtol=1e-10)


def test_singleton_rows_contribute_zero_but_stay_in_the_mean():
    x = RNG.normal(size=(4, 3))
    y = np.array([0, 0, 1, 2])
    loss = PairwiseCosface(margin=0.2, gamma=4)
    all_rows = float(loss(paddle.to_tensor(x), paddle.to_tensor(y))["PairwiseCosface"])
    pair_only = float(loss(paddle.to_tensor(x[:2]), paddle.to_tensor(y[:2]))["PairwiseCosface"])
    assert all_rows != 0
    np.testing.assert_allclose(all_rows, np_pairwise_cosface(x, y, 0.2, 4), rtol=1e-10)
    assert pair_only == 0.0  # a single-class batch has no negatives: loss 0


def test_single_class_batch_gives_zero_loss_with_gradient_path():
    x = paddle.to_tensor(RNG.normal(size=(4, 3)), stop_gradient=False)
    out = PairwiseCosface(margin=0.35, gamma=64)({"features": x}, paddle.zeros([4, 1], "int64"))
    assert float(out["PairwiseCosface"]) == 0.0
    out["PairwiseCosface"].backward()
    assert np.all(np.isfinite(x.grad.numpy()))


def test_gradient_matches_finite_differences():
    y = paddle.to_tensor(np.array([0, 0, 1, 1, 2]))
    loss = PairwiseCosface(margin=0.25, gamma=3)
    assert_gradcheck(lambda f: loss(f, y)["PairwiseCosface"], [RNG.normal(size=(5, 4))])


def test_margin_and_gamma_are_required_in_config():
    with pytest.raises(pl.ConfigError, match="margin"):
        pl.build_loss([{"PairwiseCosface": {"weight": 1.0, "gamma": 64}}])
    built = pl.build_loss([{"PairwiseCosface": {"weight": 1.0, "margin": 0.35, "gamma": 64}}])
    assert built.loss_func[0].gamma == 64


@pytest.mark.parametrize("feats,label,match", [
    (paddle.ones([4]), paddle.zeros([4], "int64"), r"shape \[N, D\]"),
    (paddle.ones([4, 3]), paddle.zeros([5], "int64"), "5 entries but the batch has 4"),
    (paddle.full([4, 3], float("inf")), paddle.zeros([4], "int64"), "NaN or Inf"),
    (paddle.zeros([0, 3]), paddle.zeros([0], "int64"), "empty batch"),
    (paddle.ones([4, 3]), paddle.zeros([4], "float32"), "integer class ids"),
])
def test_bad_input_raises_input_error(feats, label, match):
    with pytest.raises(InputError, match=match):
        PairwiseCosface(margin=0.35, gamma=64)({"features": feats}, label)


def test_missing_features_key_lists_present_keys():
    with pytest.raises(InputError, match="'neck'"):
        PairwiseCosface(margin=0.35, gamma=64)({"neck": paddle.ones([2, 3])}, paddle.zeros([2], "int64"))


def test_runs_under_to_static():
    loss = PairwiseCosface(margin=0.35, gamma=64)
    x = paddle.to_tensor(RNG.normal(size=(6, 4)).astype("float32"))
    y = paddle.to_tensor(np.array([[0], [0], [1], [1], [2], [2]]))

    def compute(f, t):
        return loss({"features": f}, t)["PairwiseCosface"]

    np.testing.assert_allclose(float(paddle.jit.to_static(compute)(x, y)), float(compute(x, y)), rtol=1e-6)
