"""PairwiseCosface: golden parity, float64 NumPy reference (with the −99999999 mask constant), gradients,
singleton and single-class behaviour, the hand-written backward against plain autograd over the dense
formula, to_static, input validation."""
import numpy as np
import paddle
import paddle.nn.functional as F
import pytest

import paddle_losses as pl
from golden import assert_close, case, cases, tensor
from gradcheck import assert_gradcheck
from paddle_losses.errors import InputError
from paddle_losses.functional.masks import positive_negative
from paddle_losses.functional.normalize import l2_normalize
from paddle_losses.functional.pairwise_lse import cosface_pair_lse
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


# ------------------------------------------------ the hand-written backward against the dense formula

def dense_row_lse(x, y, margin, gamma):
    """lse_p + lse_n per row by plain autograd over the dense masked logits (the formula before the PyLayer)."""
    sim = paddle.matmul(x, x, transpose_y=True)
    same, diff = positive_negative(y)
    pos = same.astype(sim.dtype) - paddle.eye(x.shape[0], dtype=sim.dtype)
    neg = diff.astype(sim.dtype)
    logit_p = -gamma * (sim * pos) + -99999999.0 * (1.0 - pos)
    logit_n = gamma * (sim * neg + margin) + -99999999.0 * (1.0 - neg)
    return paddle.logsumexp(logit_p, axis=1) + paddle.logsumexp(logit_n, axis=1)


def dense_loss(features, y, margin, gamma):
    x = l2_normalize(features, "clamp", axis=1)
    return F.softplus(dense_row_lse(x, y, margin, gamma)).mean()


def value_and_grad(fn, x, *args):
    xt = paddle.to_tensor(x, stop_gradient=False)
    out = fn(xt, *args)
    out.backward()
    return out.numpy(), xt.grad.numpy()


BATCHES = {
    "pk": [0, 0, 0, 1, 1, 1, 2, 2, 2],
    "singletons": [3, 1, 1, 5, 2, 2, 2, 7, 1],
    "all_singletons": [0, 1, 2, 3, 4, 5],
    "single_class": [4, 4, 4, 4, 4],
    "single_sample": [2],
}


@pytest.mark.parametrize("labels", BATCHES.values(), ids=BATCHES.keys())
@pytest.mark.parametrize("margin,gamma", [(0.35, 64.0), (0.2, 3.0), (-0.1, 0.5)])
def test_loss_and_gradient_equal_plain_autograd_of_the_dense_formula(labels, margin, gamma):
    rng = np.random.default_rng(len(labels) * 31 + int(gamma))
    # Scaled rows: the clamp normalisation is on the path; softplus is away from its threshold at 20 for
    # gamma <= 3 and above it for gamma = 64 (both branches of Paddle's softplus are compared).
    x = rng.normal(size=(len(labels), 6)) * rng.uniform(0.5, 3.0, size=(len(labels), 1))
    y = paddle.to_tensor(np.array(labels))
    loss = PairwiseCosface(margin=margin, gamma=gamma)
    ours, ours_grad = value_and_grad(lambda t: loss({"features": t}, y)["PairwiseCosface"], x)
    ref, ref_grad = value_and_grad(lambda t: dense_loss(t, y, margin, gamma), x)
    np.testing.assert_allclose(ours, ref, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(ours_grad, ref_grad, rtol=1e-9, atol=1e-12)
    if len(set(labels)) == 1:
        assert float(ours) == 0.0


@pytest.mark.parametrize("labels", BATCHES.values(), ids=BATCHES.keys())
def test_row_lse_and_its_gradient_equal_the_dense_formula_for_any_row_weights(labels):
    # Random row weights instead of softplus: rows without positives (or negatives) get a non-zero
    # upstream gradient here, and must still pass none through their empty side, as the dense masks do.
    rng = np.random.default_rng(len(labels))
    x = rng.normal(size=(len(labels), 5))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    weights = paddle.to_tensor(rng.normal(size=len(labels)))
    y = paddle.to_tensor(np.array(labels))

    def ours(t):
        same, different = positive_negative(y)
        return cosface_pair_lse(t, same, different, 8.0, 0.3, -99999999.0)

    rows = ours(paddle.to_tensor(x)).numpy()
    dense_rows = dense_row_lse(paddle.to_tensor(x), y, 0.3, 8.0).numpy()
    np.testing.assert_allclose(rows, dense_rows, rtol=1e-12)
    _, grad = value_and_grad(lambda t: (weights * ours(t)).sum(), x)
    _, dense_grad = value_and_grad(lambda t: (weights * dense_row_lse(t, y, 0.3, 8.0)).sum(), x)
    np.testing.assert_allclose(grad, dense_grad, rtol=1e-9, atol=1e-12)


def test_rows_without_candidates_get_the_mask_constant_plus_log_n():
    x = paddle.to_tensor(RNG.normal(size=(4, 3)))
    y = paddle.to_tensor(np.array([0, 0, 0, 0]))
    same, different = positive_negative(y)
    rows = cosface_pair_lse(x, same, different, 2.0, 0.25, -99999999.0).numpy()
    # No row has a negative: lse_n = (γ·m + c) + ln 4 on top of the positives' lse.
    sim = x.numpy() @ x.numpy().T
    lse_p = np.array([np.log(np.exp(-2.0 * np.delete(sim[i], i)).sum()) for i in range(4)])
    np.testing.assert_allclose(rows, lse_p + (0.5 - 99999999.0) + np.log(4), rtol=1e-15)


@pytest.mark.parametrize("full_graph", [False, True])
def test_runs_under_to_static_with_golden_values_and_gradients(full_graph):
    c = case("metric", "PairwiseCosface__unbalanced_singletons")
    (key, value), = c.with_prefix("input__").items()
    loss = PairwiseCosface(**c.params)
    x = tensor(value, grad=True)

    def compute(f, t):
        return loss(f if key == "x" else {key: f}, t)["PairwiseCosface"]

    static = paddle.jit.to_static(compute, full_graph=full_graph)
    out = static(x, tensor(c["label"]))
    out.backward()
    assert_close(out, c["out__PairwiseCosface"], "to_static output")
    assert_close(x.grad, c[f"grad__{key}"], "to_static gradient")
    # float64, with singleton rows and a single-class batch (the traced path fills and scales out of place).
    # The golden margin 0.25 is exact in float32: Paddle's static graph keeps scalar attributes in float32
    # (a margin of 0.3 moves the dense formula by ~1e-8 under to_static as well).
    for labels in (BATCHES["singletons"], BATCHES["single_class"]):
        x = RNG.normal(size=(len(labels), 6))
        y = paddle.to_tensor(np.array(labels))
        traced, traced_grad = value_and_grad(static, x, y)
        eager, eager_grad = value_and_grad(compute, x, y)
        np.testing.assert_allclose(traced, eager, rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(traced_grad, eager_grad, rtol=1e-10, atol=1e-13)
