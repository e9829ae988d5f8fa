"""ArcFaceLoss, CosFaceLoss, SubCenterArcFaceLoss, ProxyAnchorLoss: parameter layout and init, float64 NumPy
references, gradients w.r.t. embeddings and weights, the large-logit CE, label validation."""
import numpy as np
import paddle
import pytest

import paddle_losses as pl
from golden import tensor
from gradcheck import assert_gradcheck
from losses.crossfw import np_reference as R
from paddle_losses.errors import InputError
from paddle_losses.losses.crossfw.classifier import ArcFaceLoss, CosFaceLoss, ProxyAnchorLoss, SubCenterArcFaceLoss

RNG = np.random.default_rng(0)

KEEP_ALIVE = []


def _run(loss, x, y):
    return loss({"features": x}, y)[type(loss).__name__]


def _f64(loss, name, value):
    loss.to(dtype="float64")
    getattr(loss, name).set_value(paddle.to_tensor(value))
    return loss


def test_parameter_names_shapes_and_default_init():
    paddle.seed(0)
    arc = ArcFaceLoss(num_classes=50, embedding_size=40)
    assert list(arc.state_dict()) == ["W"] and arc.W.shape == [40, 50]
    assert abs(float(arc.W.std()) - 1.0) < 0.05
    sub = SubCenterArcFaceLoss(num_classes=5, embedding_size=8, sub_centers=3)
    assert sub.W.shape == [8, 15]
    pa = ProxyAnchorLoss(num_classes=50, embedding_size=400)
    assert list(pa.state_dict()) == ["proxies"] and pa.proxies.shape == [50, 400]
    assert abs(float(pa.proxies.std()) - np.sqrt(2 / 50)) < 0.01


@pytest.mark.parametrize("kind", ["arc", "arc_s30", "cos", "sub"])
def test_margin_softmax_matches_numpy_float64(kind):
    x, y = RNG.normal(size=(9, 6)), np.array([0, 2, 1, 3, 0, 2, 2, 1, 0])
    k = 3 if kind == "sub" else 1
    W = RNG.normal(size=(6, 4 * k))
    if kind == "cos":
        loss, ref = CosFaceLoss(4, 6), R.arcface_logits(x, W, y, cosface=0.35)
    elif kind == "sub":
        loss, ref = SubCenterArcFaceLoss(4, 6), R.arcface_logits(x, W, y, sub_centers=3)
    elif kind == "arc_s30":
        loss, ref = ArcFaceLoss(4, 6, margin=10.0, scale=30.0), R.arcface_logits(x, W, y, 10.0, 30.0)
    else:
        loss, ref = ArcFaceLoss(4, 6), R.arcface_logits(x, W, y)
    _f64(loss, "W", W)
    np.testing.assert_allclose(float(_run(loss, tensor(x), paddle.to_tensor(y))), R.ce(ref, y), rtol=1e-10)


def test_arcface_fallback_branch_past_pi_minus_m():
    W = np.eye(3)
    x = np.array([[-1.0, 0.05, 0.0], [0.2, 1.0, 0.1]])  # sample 0 is ~177° from class 0
    y = np.array([0, 1])
    loss = _f64(ArcFaceLoss(3, 3), "W", W)
    np.testing.assert_allclose(float(_run(loss, tensor(x), paddle.to_tensor(y))),
                               R.ce(R.arcface_logits(x, W, y), y), rtol=1e-10)


def test_large_wrong_logits_are_not_floored_at_64():
    """Paddle's CPU softmax floors log-probabilities at -64; the loss must give the true CE beyond that."""
    W = np.eye(2)
    loss = _f64(CosFaceLoss(2, 2, margin=0.35, scale=64.0), "W", W)
    out = float(_run(loss, tensor(np.array([[0.0, 1.0]])), paddle.to_tensor([0])))
    assert out == pytest.approx(64 * 1.35 + np.log1p(np.exp(-64 * 1.35)), rel=1e-10)


def test_proxy_anchor_matches_numpy_with_an_absent_class():
    x, y = RNG.normal(size=(8, 5)), np.array([0, 1, 1, 2, 0, 2, 1, 0])
    P = RNG.normal(size=(4, 5))
    loss = _f64(ProxyAnchorLoss(4, 5), "proxies", P)
    np.testing.assert_allclose(float(_run(loss, tensor(x), paddle.to_tensor(y))), R.proxy_anchor(x, P, y),
                               rtol=1e-10)


@pytest.mark.parametrize("cls,pname,kw", [(ArcFaceLoss, "W", {"scale": 4.0}), (CosFaceLoss, "W", {"scale": 4.0}),
                                          (SubCenterArcFaceLoss, "W", {"scale": 4.0}),
                                          (ProxyAnchorLoss, "proxies", {"alpha": 4.0})])
def test_finite_difference_gradients_for_embeddings_and_weights(cls, pname, kw):
    x, y = RNG.normal(size=(6, 4)), paddle.to_tensor([0, 1, 2, 0, 1, 1])
    loss = cls(num_classes=3, embedding_size=4, **kw)
    loss.to(dtype="float64")
    w0 = getattr(loss, pname).numpy().copy()

    def f(t, w):
        getattr(loss, pname).set_value(w.detach())
        return _run(loss, t, y)

    assert_gradcheck(lambda t: f(t, paddle.to_tensor(w0)), [x])

    def via_weight(w):
        param = getattr(loss, pname)
        param.set_value(w.detach())
        param.clear_gradient()
        return _run(loss, tensor(x), y)

    from gradcheck import numeric_grad
    num = numeric_grad(via_weight, [w0], 0)
    param = getattr(loss, pname)
    param.set_value(paddle.to_tensor(w0))
    param.clear_gradient()
    _run(loss, tensor(x), y).backward()
    np.testing.assert_allclose(param.grad.numpy(), num, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("cls", [ArcFaceLoss, CosFaceLoss, SubCenterArcFaceLoss, ProxyAnchorLoss])
def test_label_out_of_range_and_bad_sizes(cls):
    loss = cls(num_classes=3, embedding_size=4)
    with pytest.raises(InputError, match=r"\[0, 3\)"):
        _run(loss, paddle.randn([2, 4]), paddle.to_tensor([0, 3]))
    with pytest.raises(InputError, match="embedding_size is 4"):
        _run(loss, paddle.randn([2, 5]), paddle.to_tensor([0, 1]))
    with pytest.raises(ValueError, match="num_classes"):
        cls(num_classes=0, embedding_size=4)
    with pytest.raises(ValueError, match="embedding_size"):
        cls(num_classes=3, embedding_size=2.5)


def test_config_needs_num_classes():
    with pytest.raises(pl.ConfigError, match="num_classes"):
        pl.build_loss([{"ArcFaceLoss": {"weight": 1.0, "embedding_size": 8}}])


def test_classifier_loss_runs_under_to_static():
    loss = ArcFaceLoss(4, 6)
    x, y = paddle.randn([5, 6]), paddle.to_tensor([0, 1, 2, 3, 0])

    def classifier_compute(f, t):
        return _run(loss, f, t)

    # SOT caches translations by code object; keeping the function alive stops a later test's
    # function from reusing its id and hitting the stale cache entry
    KEEP_ALIVE.append(classifier_compute)

    static = paddle.jit.to_static(classifier_compute)
    np.testing.assert_allclose(float(static(x, y)), float(classifier_compute(x, y)),
                               rtol=1e-5)


@pytest.mark.parametrize("cls", [ArcFaceLoss, CosFaceLoss, SubCenterArcFaceLoss, ProxyAnchorLoss])
def test_describable(cls):
    assert cls.output_keys == (cls.__name__,) and cls.input_keys and "Reads" in cls.__doc__
    assert pl.get_loss(cls.__name__) is cls
