"""Linear-time log-softmax and softmax cross-entropy: Paddle's values and gradients, extreme logits, to_static."""
import numpy as np
import paddle
import paddle.nn.functional as F
import pytest

from gradcheck import assert_gradcheck
from paddle_losses.functional.softmax_ce import log_softmax, smoothed_cross_entropy, soft_cross_entropy

RNG = np.random.default_rng(0)


def t(a, grad=False, dtype="float64"):
    x = paddle.to_tensor(np.asarray(a, dtype=dtype))
    x.stop_gradient = not grad
    return x


def dense_smoothed(x, ids, eps):
    target = (1 - eps) * F.one_hot(ids, x.shape[1]).astype(x.dtype) + eps / x.shape[1]
    return -(target * F.log_softmax(x, axis=-1)).sum(-1)


def logits(n=5, c=9, scale=3.0):
    x = RNG.normal(size=(n, c)) * scale
    x[0, 0], x[1, 2], x[2, :] = 1e4, -1e4, 0.0  # a dominating entry, a floored one, a flat row
    return x


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("axis", [-1, 0])
def test_log_softmax_equals_paddles_kernel_value_and_gradient(dtype, axis):
    x = t(logits(), dtype=dtype)
    w = t(RNG.normal(size=x.shape), dtype=dtype)
    ours, ref = x.detach(), x.detach()
    ours.stop_gradient = ref.stop_gradient = False
    a, b = log_softmax(ours, axis), F.log_softmax(ref, axis=axis)
    (a * w).sum().backward()
    (b * w).sum().backward()
    tol = 1e-12 if dtype == "float64" else 1e-5
    np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=tol, atol=tol)
    np.testing.assert_allclose(ours.grad.numpy(), ref.grad.numpy(), rtol=tol, atol=tol)


def test_log_softmax_keeps_paddles_floor_at_minus_64():
    # Paddle's softmax floors max-shifted logits at -64; the log-probability of a hopeless class is -64 - L.
    out = log_softmax(t([[1e4, -1e4, 0.0]])).numpy()
    np.testing.assert_allclose(out, [[0.0, -64.0, -64.0]], atol=1e-12)


def test_log_softmax_gradient_matches_finite_differences():
    x, w = RNG.normal(size=(3, 6)), RNG.normal(size=(3, 6))
    assert_gradcheck(lambda a, b: (log_softmax(a) * b).sum(), [x, w])


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("eps", [0.1, 0.5, 0.999])
def test_smoothed_cross_entropy_equals_dense_target_formula(dtype, eps):
    x = t(logits(), dtype=dtype)
    ids = paddle.to_tensor(np.array([0, 1, 2, 8, 4]))
    ours, ref = x.detach(), x.detach()
    ours.stop_gradient = ref.stop_gradient = False
    a, b = smoothed_cross_entropy(ours, ids, eps), dense_smoothed(ref, ids, eps)
    g = t(RNG.normal(size=[5]), dtype=dtype)
    (a * g).sum().backward()
    (b * g).sum().backward()
    assert a.shape == [5]
    tol = 1e-10 if dtype == "float64" else 1e-5
    np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=tol, atol=tol * 10)
    np.testing.assert_allclose(ours.grad.numpy(), ref.grad.numpy(), rtol=tol, atol=tol)


def test_smoothed_cross_entropy_gradient_matches_finite_differences():
    ids = paddle.to_tensor(np.array([[2], [0], [5]]))  # [N, 1] ids are accepted too
    assert_gradcheck(lambda a: smoothed_cross_entropy(a, ids, 0.2).sum(), [RNG.normal(size=(3, 6))])


def test_smoothed_cross_entropy_is_finite_for_huge_class_counts_with_one_large_logit():
    c = 200_000
    x = np.zeros((2, c), dtype="float32")
    x[0, 7], x[1, 3] = 1e4, -1e4
    xt = t(x, grad=True, dtype="float32")
    out = smoothed_cross_entropy(xt, paddle.to_tensor(np.array([5, 3])), 0.1)
    out.sum().backward()
    assert np.isfinite(out.numpy()).all() and np.isfinite(xt.grad.numpy()).all()
    # Each gradient row sums to 0 (softmax and target both sum to 1).
    np.testing.assert_allclose(xt.grad.numpy().sum(1), [0.0, 0.0], atol=1e-5)


def test_soft_cross_entropy_gives_both_inputs_the_plain_autograd_gradient():
    x, target = RNG.normal(size=(4, 7)), RNG.random(size=(4, 7))
    xa, ta, xb, tb = t(x, True), t(target, True), t(x, True), t(target, True)
    a = soft_cross_entropy(xa, ta)
    b = -(tb * F.log_softmax(xb, axis=-1)).sum(-1)
    a.sum().backward()
    b.sum().backward()
    np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-12)
    np.testing.assert_allclose(xa.grad.numpy(), xb.grad.numpy(), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(ta.grad.numpy(), tb.grad.numpy(), rtol=1e-12, atol=1e-14)


def test_smoothed_cross_entropy_runs_under_to_static_with_the_same_value_and_gradient():
    x = RNG.normal(size=(4, 6)).astype("float32")
    ids = paddle.to_tensor(np.array([1, 0, 5, 2]))

    def loss(z, y):
        return smoothed_cross_entropy(z, y, 0.1).mean() + log_softmax(z).mean()

    grads = []
    for fn in (loss, paddle.jit.to_static(loss, full_graph=True)):
        z = t(x, True, "float32")
        out = fn(z, ids)
        out.backward()
        grads.append((float(out), z.grad.numpy()))
    np.testing.assert_allclose(grads[1][0], grads[0][0], rtol=1e-6)
    np.testing.assert_allclose(grads[1][1], grads[0][1], rtol=1e-6, atol=1e-7)
