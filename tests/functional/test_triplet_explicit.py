"""Explicit-triplet functions: torch / optax / Keras golden replay, float64 NumPy references, gradients."""
import numpy as np
import paddle
import pytest

from golden import assert_close, cases, tensor
from gradcheck import assert_gradcheck
from paddle_losses.functional import triplet_explicit as te

TORCH = cases("crossfw", "torch__TripletMarginLoss__*.npz")
TORCH_DIST = cases("crossfw", "torch__TripletMarginWithDistanceLoss__*.npz")
OPTAX = cases("crossfw", "optax__*.npz")
KERAS = cases("crossfw", "keras__*.npz")


def _tol(case):
    return (1e-10, 1e-10) if case.meta["dtype"] == "float64" else (1e-5, 1e-5)


def _replay(case, keys, fn):
    ins = [tensor(case[f"input__{k}"], grad=True) for k in keys]
    out = fn(*ins)
    if "cotangent__loss" in case:
        (out * tensor(case["cotangent__loss"])).sum().backward()
    else:
        out.backward()
    rtol, atol = _tol(case)
    assert_close(out, case["out__loss"], f"{case.name}: loss", rtol, atol)
    for k, t in zip(keys, ins):
        assert_close(t.grad, case[f"grad__{k}"], f"{case.name}: grad {k}", rtol, atol)


def test_case_counts():
    assert (len(TORCH), len(TORCH_DIST), len(OPTAX), len(KERAS)) == (78, 9, 7, 4)


@pytest.mark.parametrize("case", TORCH, ids=lambda c: c.name)
def test_torch_triplet_margin_loss_golden(case):
    a = case.meta["args"]
    _replay(case, ("anchor", "positive", "negative"),
            lambda x, y, z: te.triplet_margin_loss(x, y, z, a["margin"], a["p"], a["eps"], a["swap"], a["reduction"]))


@pytest.mark.parametrize("case", TORCH[:6], ids=lambda c: c.name)
def test_paddle_nn_triplet_margin_loss_layer_has_torch_semantics(case):
    a = case.meta["args"]
    layer = paddle.nn.TripletMarginLoss(margin=a["margin"], p=a["p"], epsilon=a["eps"], swap=a["swap"],
                                        reduction=a["reduction"])
    _replay(case, ("anchor", "positive", "negative"), layer)


@pytest.mark.parametrize("case", TORCH_DIST, ids=lambda c: c.name)
def test_torch_triplet_margin_with_distance_loss_golden(case):
    a = case.meta["args"]
    dist = te.cosine_distance if a["distance_function"] else None
    _replay(case, ("anchor", "positive", "negative"),
            lambda x, y, z: te.triplet_margin_with_distance_loss(x, y, z, dist, a["margin"], a["swap"], a["reduction"]))


def test_paddle_nn_triplet_margin_with_distance_layer_drops_its_distance_function():
    """Paddle 3.3.1's layer never passes ``distance_function`` on (its forward omits it), so it always uses
    the L2 default; only the functional form is usable (and used by us). If this fails, Paddle fixed it."""
    case = TORCH_DIST[0]
    ins = [tensor(case[f"input__{k}"]) for k in ("anchor", "positive", "negative")]
    layer = paddle.nn.TripletMarginWithDistanceLoss(distance_function=te.cosine_distance, margin=0.2)
    default = te.triplet_margin_with_distance_loss(*ins, None, 0.2, False, "mean")
    cosine = te.triplet_margin_with_distance_loss(*ins, te.cosine_distance, 0.2, False, "mean")
    assert float(layer(*ins)) == pytest.approx(float(default), rel=1e-6)
    assert abs(float(cosine) - float(default)) > 1e-3


@pytest.mark.parametrize("case", OPTAX, ids=lambda c: c.name)
def test_optax_triplet_margin_loss_golden(case):
    a = case.meta["args"]
    _replay(case, ("anchors", "positives", "negatives"),
            lambda x, y, z: te.optax_triplet_margin_loss(x, y, z, a["norm_degree"], a["margin"], a["eps"]))


@pytest.mark.parametrize("case", KERAS, ids=lambda c: c.name)
def test_keras_squared_l2_triplet_golden(case):
    a = case.meta["args"]
    _replay(case, ("anchor", "positive", "negative"),
            lambda x, y, z: te.squared_l2_triplet_loss(x, y, z, a["alpha"], a["reduction"]))


def test_identical_rows_torch_distance_is_eps_times_root_d_with_finite_gradient():
    x = tensor(np.ones((2, 4), np.float64), grad=True)
    d = te.pairwise_distance(x, x.detach(), p=2.0, eps=1e-6)
    np.testing.assert_allclose(d.numpy(), [1e-6 * 2.0] * 2, rtol=1e-9)
    d.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), np.full((2, 4), 0.5), rtol=1e-9)


def test_optax_identical_positive_gets_exactly_zero_gradient():
    a = tensor(np.ones((1, 3)), grad=True)
    p = tensor(np.ones((1, 3)), grad=True)
    n = tensor(np.zeros((1, 3)))
    out = te.optax_triplet_margin_loss(a, p, n, norm_degree=2, margin=5.0)
    np.testing.assert_allclose(out.numpy(), [np.sqrt(1e-6) - np.sqrt(3 + 1e-6) + 5.0], rtol=1e-12)
    out.sum().backward()
    assert np.all(p.grad.numpy() == 0.0)


# ---- float64 NumPy references on fresh inputs -------------------------------------------------------------

def _rand(seed, n=7, d=5):
    rng = np.random.default_rng(seed)
    return [rng.normal(size=(n, d)) for _ in range(3)]


def np_torch_triplet(a, p, n, margin, pp, eps, swap):
    dist = lambda x, y: (np.abs(x - y + eps) ** pp).sum(-1) ** (1 / pp)  # noqa: E731
    dn = dist(a, n)
    if swap:
        dn = np.minimum(dn, dist(p, n))
    return np.maximum(margin + dist(a, p) - dn, 0)


@pytest.mark.parametrize("pp,swap", [(2.0, False), (1.0, True), (3.0, False)])
def test_torch_triplet_matches_numpy_float64(pp, swap):
    a, p, n = _rand(1)
    got = te.triplet_margin_loss(*map(tensor, (a, p, n)), margin=1.0, p=pp, eps=1e-6, swap=swap, reduction="none")
    # Paddle's p-norm kernel for p not in {1, 2} keeps only ~1e-7 relative accuracy even in float64
    rtol = 1e-12 if pp in (1.0, 2.0) else 1e-6
    np.testing.assert_allclose(got.numpy(), np_torch_triplet(a, p, n, 1.0, pp, 1e-6, swap), rtol=rtol)


def test_cosine_distance_loss_matches_numpy_float64():
    a, p, n = _rand(2)
    cd = lambda x, y: 1 - (x * y).sum(-1) / (np.linalg.norm(x, axis=-1) * np.linalg.norm(y, axis=-1))  # noqa
    ref = np.maximum(0.5 + cd(a, p) - np.minimum(cd(a, n), cd(p, n)), 0).mean()
    got = te.triplet_margin_with_distance_loss(*map(tensor, (a, p, n)), te.cosine_distance, 0.5, True, "mean")
    np.testing.assert_allclose(float(got), ref, rtol=1e-12)


def test_optax_and_keras_match_numpy_float64():
    a, p, n = _rand(3)
    d = lambda x, y: (((x - y) ** 2).sum(-1) + 1e-6) ** 0.5  # noqa: E731
    got = te.optax_triplet_margin_loss(*map(tensor, (a, p, n)), norm_degree=2, margin=0.7)
    np.testing.assert_allclose(got.numpy(), np.maximum(d(a, p) - d(a, n) + 0.7, 0), rtol=1e-12)
    sq = lambda x, y: ((x - y) ** 2).sum(-1)  # noqa: E731
    got = te.squared_l2_triplet_loss(*map(tensor, (a, p, n)), alpha=0.3, reduction="sum")
    np.testing.assert_allclose(float(got), np.maximum(0.3 + sq(a, p) - sq(a, n), 0).sum(), rtol=1e-12)


@pytest.mark.parametrize("which", ["torch", "cosine", "optax", "keras"])
def test_explicit_triplet_finite_difference_gradients(which):
    a, p, n = _rand(4, n=5, d=4)
    fns = {
        "torch": lambda x, y, z: te.triplet_margin_loss(x, y, z, 2.0, 2.0, 1e-6, True, "sum"),
        "cosine": lambda x, y, z: te.triplet_margin_with_distance_loss(x, y, z, te.cosine_distance, 1.5, False, "sum"),
        "optax": lambda x, y, z: te.optax_triplet_margin_loss(x, y, z, 2, 3.0).sum(),
        "keras": lambda x, y, z: te.squared_l2_triplet_loss(x, y, z, 8.0, "mean"),
    }
    for index in range(3):
        assert_gradcheck(fns[which], [a, p, n], index=index)


def test_bad_reduction_is_rejected():
    a, p, n = map(tensor, _rand(5))
    with pytest.raises(ValueError, match="reduction"):
        te.squared_l2_triplet_loss(a, p, n, reduction="avg")


def test_triplet_functions_run_under_to_static():
    a, p, n = map(tensor, _rand(6))
    def both(x, y, z):
        return te.optax_triplet_margin_loss(x, y, z).sum() + te.squared_l2_triplet_loss(x, y, z)

    fn = paddle.jit.to_static(both, full_graph=True)
    ref = te.optax_triplet_margin_loss(a, p, n).sum() + te.squared_l2_triplet_loss(a, p, n)
    np.testing.assert_allclose(float(fn(a, p, n)), float(ref), rtol=1e-10)
