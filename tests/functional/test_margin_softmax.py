"""functional.margin_softmax: the closed-form classifier losses against their autograd formulas in float64
(values and gradients to the embeddings and to the class weights / proxies), edge cases (cosines at ±1 with
scale 64, a class absent from the batch, one-row batches, tied sub-centres) and the fall-backs to the
autograd formula (scales too large for unshifted exponentials, squared norms that overflow)."""
import numpy as np
import paddle
import pytest

from gradcheck import numeric_grad
from paddle_losses.functional.margin_softmax import exp_is_safe, margin_softmax_ce, proxy_anchor
from paddle_losses.losses.crossfw.classifier import ArcFaceLoss, CosFaceLoss, ProxyAnchorLoss, SubCenterArcFaceLoss

RNG = np.random.default_rng(7)


def _f64(loss, name, value):
    loss.to(dtype="float64")
    getattr(loss, name).set_value(paddle.to_tensor(np.asarray(value, dtype=np.float64)))
    return loss


def _value_and_grads(fn, param, x):
    """``fn(x)``, its gradient w.r.t. ``x`` and w.r.t. the parameter (numpy)."""
    xt = paddle.to_tensor(x, stop_gradient=False)
    param.clear_gradient()
    out = fn(xt)
    out.backward()
    return float(out), xt.grad.numpy(), param.grad.numpy()


def _margin_pair(loss, labels):
    y = paddle.to_tensor(labels)
    fast = lambda t: margin_softmax_ce(t, loss.W, y, loss.target_and_slope, loss.scale, loss.sub_centers)
    return fast, lambda t: loss.reference_loss(t, y)


def _assert_same(fast, ref, param, x, rtol=1e-10, atol=1e-12):
    v, gx, gw = _value_and_grads(fast, param, x)
    rv, rgx, rgw = _value_and_grads(ref, param, x)
    np.testing.assert_allclose(v, rv, rtol=rtol)
    np.testing.assert_allclose(gx, rgx, rtol=rtol, atol=atol)
    np.testing.assert_allclose(gw, rgw, rtol=rtol, atol=atol)


MARGIN_LOSSES = {
    "arcface": lambda c, d: ArcFaceLoss(c, d),
    "arcface_10deg_s30": lambda c, d: ArcFaceLoss(c, d, margin=10.0, scale=30.0),
    "cosface": lambda c, d: CosFaceLoss(c, d),
    "subcenter": lambda c, d: SubCenterArcFaceLoss(c, d, sub_centers=3),
}


@pytest.mark.parametrize("batch", [1, 13])
@pytest.mark.parametrize("kind", sorted(MARGIN_LOSSES))
def test_margin_softmax_matches_autograd_formula_float64(kind, batch):
    classes, dim = 7, 5
    loss = MARGIN_LOSSES[kind](classes, dim)
    _f64(loss, "W", RNG.normal(size=(dim, classes * loss.sub_centers)))
    x = RNG.normal(size=(batch, dim)) * 3.0
    labels = RNG.integers(0, classes, size=batch)
    fast, ref = _margin_pair(loss, labels)
    _assert_same(fast, ref, loss.W, x)
    # the layer itself takes the closed-form path here (same value to the last bit)
    assert float(loss({"features": paddle.to_tensor(x)}, paddle.to_tensor(labels))[type(loss).__name__]) == \
        float(fast(paddle.to_tensor(x)))


def test_margin_softmax_with_scale_64_and_strong_logits_float64():
    """Large gaps between logits (a sample near one wrong class): no shift is needed at scale 64."""
    classes, dim = 6, 4
    loss = _f64(ArcFaceLoss(classes, dim), "W", RNG.normal(size=(dim, classes)))
    w = loss.W.numpy()
    x = np.stack([w[:, 3], -w[:, 0], w[:, 1] + 0.01 * w[:, 2]])  # near class 3 / opposite class 0 / near 1
    fast, ref = _margin_pair(loss, np.array([0, 0, 1]))
    _assert_same(fast, ref, loss.W, x, rtol=1e-9)


def test_arcface_cosine_at_minus_one_takes_the_fallback_with_a_finite_gradient():
    """θ = π > π − m: the target logit is cos θ − m·sin m, slope 1. The tape's acos gives 0/0 there (an
    infinite gradient); the closed form gives the finite-difference gradient."""
    loss = _f64(ArcFaceLoss(3, 3, scale=64.0), "W", np.eye(3))
    x = np.array([[-1.0, 0.0, 0.0], [0.3, 1.0, -0.2]])
    labels = np.array([0, 1])
    fast, ref = _margin_pair(loss, labels)
    v, gx, gw = _value_and_grads(fast, loss.W, x)
    assert v == pytest.approx(float(ref(paddle.to_tensor(x))), rel=1e-12)
    assert np.isfinite(gx).all() and np.isfinite(gw).all()
    w0 = loss.W.numpy().copy()
    num_x = numeric_grad(lambda t: fast(t), [x], 0)
    np.testing.assert_allclose(gx, num_x, rtol=1e-5, atol=1e-6)

    def via_w(w):
        loss.W.set_value(w)
        return fast(paddle.to_tensor(x))

    num_w = numeric_grad(via_w, [w0], 0)
    loss.W.set_value(paddle.to_tensor(w0))
    np.testing.assert_allclose(gw, num_w, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_arcface_cosine_at_plus_one_keeps_finite_gradients(dtype):
    """θ = 0: the value is cos m (times the scale) on both paths. There the tape gives 0·∞ (acos' is
    infinite, the gradient of t is 0) and a NaN row; the closed form takes the product's bounded limit, so
    every gradient stays finite and the other rows' gradients equal the tape's."""
    w = np.eye(3) if dtype == "float64" else RNG.normal(size=(3, 3))
    loss = ArcFaceLoss(3, 3, scale=64.0)
    loss.to(dtype=dtype)
    loss.W.set_value(paddle.to_tensor(w.astype(dtype)))
    x = np.stack([2.0 * w[:, 0], np.array([0.3, -1.0, 0.5])]).astype(dtype)  # row 0 lies on its class
    fast, ref = _margin_pair(loss, np.array([0, 2]))
    xt = paddle.to_tensor(x)
    assert float(fast(xt)) == pytest.approx(float(ref(xt)), rel=1e-12 if dtype == "float64" else 1e-6)
    v, gx, gw = _value_and_grads(fast, loss.W, x)
    assert np.isfinite(gx).all() and np.isfinite(gw).all()
    # the other row's gradient does not depend on row 0's target slope
    np.testing.assert_allclose(gx[1], _value_and_grads(ref, loss.W, x)[1][1], rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("extra_rows", [0, 6], ids=["rows_below_dim", "rows_above_dim"])
def test_subcenter_ties_send_the_gradient_to_the_first_sub_centre(extra_rows):
    classes, dim, k = 4, 5, 3
    loss = SubCenterArcFaceLoss(classes, dim, sub_centers=k)
    w = RNG.normal(size=(dim, classes * k))
    w[:, 1] = w[:, 0]  # class 0: sub-centres 0 and 1 identical
    w[:, 2 * k + 2] = w[:, 2 * k + 1] * 2.0  # class 2: sub-centres 1 and 2 parallel (equal cosines)
    _f64(loss, "W", w)
    x = np.stack([w[:, 0] + 0.1 * RNG.normal(size=dim), w[:, 2 * k + 1] + 0.1 * RNG.normal(size=dim),
                  RNG.normal(size=dim)]
                 + [RNG.normal(size=dim) for _ in range(extra_rows)])
    fast, ref = _margin_pair(loss, np.array([0, 2, 1] + [3] * extra_rows))
    _assert_same(fast, ref, loss.W, x)
    _, _, gw = _value_and_grads(fast, loss.W, x)
    assert np.abs(gw[:, 0]).sum() > 0 and np.abs(gw[:, 1]).sum() == 0


def _proxy_pair(loss, labels):
    y = paddle.to_tensor(labels)
    return (lambda t: proxy_anchor(t, loss.proxies, y, loss.alpha, loss.margin),
            lambda t: loss.reference_loss(t, y))


@pytest.mark.parametrize("labels", [[0, 1, 1, 4, 0, 4, 1, 0], [3], [2, 2, 2]], ids=["absent", "one_row", "one_class"])
def test_proxy_anchor_matches_autograd_formula_float64(labels):
    classes, dim = 5, 6  # classes 2 and 3 (or all but one) are absent from the batch
    loss = _f64(ProxyAnchorLoss(classes, dim), "proxies", RNG.normal(size=(classes, dim)))
    labels = np.array(labels)
    x = RNG.normal(size=(len(labels), dim)) * 2.0
    fast, ref = _proxy_pair(loss, labels)
    _assert_same(fast, ref, loss.proxies, x)
    assert float(loss({"features": paddle.to_tensor(x)}, paddle.to_tensor(labels))["ProxyAnchorLoss"]) == \
        float(fast(paddle.to_tensor(x)))


def test_proxy_anchor_positive_on_its_proxy_float32():
    """A sample on its own proxy has e^{α(cos + δ)} = e^{35.2}, 13 orders above its negatives' terms: the
    negative sums leave it out instead of subtracting it, so they keep their digits in float32."""
    classes, dim = 4, 8
    loss = ProxyAnchorLoss(classes, dim)
    p = RNG.normal(size=(classes, dim)).astype("float32")
    loss.proxies.set_value(paddle.to_tensor(p))
    x = np.concatenate([p[:2], RNG.normal(size=(3, dim)).astype("float32")])
    labels = np.array([0, 1, 2, 0, 3])
    fast, ref = _proxy_pair(loss, labels)
    _assert_same(fast, ref, loss.proxies, x, rtol=2e-5, atol=1e-6)


def test_exp_is_safe_bounds():
    assert exp_is_safe(paddle.float32, 64.0, -1.0, 1.0, 10 ** 6)
    assert not exp_is_safe(paddle.float32, 64.0, -1.0, 1.0, 10 ** 9)  # 64 + log 1e9 > 80
    assert not exp_is_safe(paddle.float32, 64.0, -1.35, 1.0, 10)  # e^-86.4 is below float32's normals
    assert exp_is_safe(paddle.float64, 200.0, -1.5, 1.0, 10 ** 6)
    assert not exp_is_safe(paddle.float32, -1.0, -1.0, 1.0, 10)
    assert not exp_is_safe(paddle.float16, 1.0, -1.0, 1.0, 10)


@pytest.mark.parametrize("cls,pname,kw", [(ArcFaceLoss, "W", {"scale": 90.0}), (CosFaceLoss, "W", {"scale": 90.0}),
                                          (ProxyAnchorLoss, "proxies", {"alpha": 90.0})])
def test_large_scales_use_the_autograd_formula(cls, pname, kw):
    loss = cls(num_classes=3, embedding_size=4, **kw)
    x, y = paddle.randn([5, 4]), paddle.to_tensor([0, 1, 2, 0, 1])
    out = loss({"features": x}, y)[cls.__name__]
    assert np.isfinite(float(out))
    assert float(out) == float(loss.reference_loss(x, y))


@pytest.mark.parametrize("cls", [ArcFaceLoss, CosFaceLoss, SubCenterArcFaceLoss, ProxyAnchorLoss])
def test_overflowing_squared_norms_fall_back_and_keep_the_value(cls):
    """Rows with entries near 1e30 have float32 squared norms of inf: the closed form declines, the autograd
    formula rescales them, and the loss equals that of the same directions at unit scale."""
    loss = cls(num_classes=3, embedding_size=4)
    x, y = paddle.randn([5, 4]), paddle.to_tensor([0, 1, 2, 0, 1])
    big = loss({"features": x * 1e30}, y)[cls.__name__]
    np.testing.assert_allclose(float(big), float(loss({"features": x}, y)[cls.__name__]), rtol=1e-5)


@pytest.mark.parametrize("cls", [ArcFaceLoss, CosFaceLoss, SubCenterArcFaceLoss, ProxyAnchorLoss])
def test_default_float32_losses_take_the_closed_form_path(cls):
    """Default scales/alpha with 1000 classes in float32 fit the unshifted exponentials (same value bit for bit)."""
    loss = cls(num_classes=1000, embedding_size=8)
    x, y = paddle.randn([6, 8]), paddle.to_tensor([0, 999, 5, 5, 17, 0])
    out = float(loss({"features": x}, y)[cls.__name__])
    if cls is ProxyAnchorLoss:
        fast = proxy_anchor(x, loss.proxies, y, loss.alpha, loss.margin)
    else:
        fast = margin_softmax_ce(x, loss.W, y, loss.target_and_slope, loss.scale, loss.sub_centers)
    assert out == float(fast)


@pytest.mark.parametrize("kind", ["arcface", "subcenter"])
def test_weight_gradient_without_embedding_gradient(kind):
    """Embeddings that need no gradient (a frozen backbone): only the class weights get one, as on the tape."""
    loss = MARGIN_LOSSES[kind](4, 5)
    _f64(loss, "W", RNG.normal(size=(5, 4 * loss.sub_centers)))
    x, y = paddle.to_tensor(RNG.normal(size=(6, 5))), paddle.to_tensor([0, 1, 2, 3, 0, 1])
    loss.W.clear_gradient()
    margin_softmax_ce(x, loss.W, y, loss.target_and_slope, loss.scale, loss.sub_centers).backward()
    fast = loss.W.grad.numpy()
    loss.W.clear_gradient()
    loss.reference_loss(x, y).backward()
    np.testing.assert_allclose(fast, loss.W.grad.numpy(), rtol=1e-10, atol=1e-12)
