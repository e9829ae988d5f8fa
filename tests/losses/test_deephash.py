"""DSHSDLoss, LCDSHLoss and DCHLoss: golden parity, NumPy references, gradients, multi-hot labels (a
PaddleClas crash), numerical robustness and input validation."""
import json

import numpy as np
import paddle
import pytest

import paddle_losses as pl
from golden import FIXTURES, case, cases
from gradcheck import assert_gradcheck
from losses.other_case_replay import replay
from paddle_losses.errors import InputError
from paddle_losses.losses.deephash import DCHLoss, DSHSDLoss, LCDSHLoss

GOLDEN = [c for prefix in ("DSHSDLoss", "LCDSHLoss", "DCHLoss") for c in cases("other", f"{prefix}*.npz")]


@pytest.mark.parametrize("golden_case", GOLDEN, ids=lambda c: c.name)
def test_golden_replay_outputs_and_gradients(golden_case):
    replay(golden_case, pl.get_loss(golden_case.meta["class"])(**golden_case.params))


def test_golden_cases_cover_all_hashing_losses():
    assert len(GOLDEN) == 5


# ---------------------------------------------------------------- NumPy references (float64)

def _onehot(ids, c):
    return np.eye(c)[np.asarray(ids).reshape(-1)]


def _np_dshsd(f, z, y, alpha, multi_label=False):
    k = f.shape[1]
    d = ((f[:, None, :] - f[None, :, :]) ** 2).sum(-1)
    s = (y @ y.T == 0).astype(float)
    ld = ((1 - s) / 2 * d + s / 2 * np.maximum(2 * k - d, 0)).mean()
    if multi_label:
        lc = (np.maximum(z, 0) - y * z + np.log1p(np.exp(-np.abs(z)))).sum(1).mean()
    else:
        zs = z - z.max(1, keepdims=True)
        lc = (-y * (zs - np.log(np.exp(zs).sum(1, keepdims=True)))).sum(1).mean()
    return lc + alpha * ld


def _np_lcdsh(f, y, lam):
    s = 2.0 * (y @ y.T > 0) - 1
    ip = np.clip(0.5 * f @ f.T, -50, 50)
    l1 = np.log1p(np.exp(-s * ip)).mean()
    b = np.sign(f)
    sig = lambda v: 1 / (1 + np.exp(-v))  # noqa: E731
    l2 = ((sig(ip) - sig(0.5 * b @ b.T)) ** 2).mean()
    return l1 + lam * l2


def _np_dch(f, y, gamma, lam):
    n, k = f.shape
    s = (y @ y.T > 0).astype(float)
    if s.sum() and (1 - s).sum():
        w = s * (n * n / s.sum()) + (1 - s) * (n * n / (1 - s).sum())
    else:
        w = 1.0

    def dist(a, b):
        cos = a @ b.T / np.maximum(np.linalg.norm(a, axis=1)[:, None] * np.linalg.norm(b, axis=1)[None, :], 1e-4)
        return (1 - np.minimum(cos, 0.99)) * k / 2

    dm = dist(f, f)
    lc = (w * (s * np.log(dm / gamma) + np.log(1 + gamma / dm))).mean()
    lq = np.log(1 + dist(np.abs(f), np.ones((n, k))) / gamma).mean()
    return lc + lam * lq


def _hash_inputs(seed, n=8, k=6, c=4):
    rng = np.random.default_rng(seed)
    f = rng.normal(0, 0.6, (n, k))
    z = rng.normal(0, 1.5, (n, c))
    ids = rng.integers(0, c, n)
    ids[:min(n, c)] = np.arange(min(n, c))
    return f, z, ids.astype(np.int64)


def _inputs(f, z=None):
    out = {"features": paddle.to_tensor(f)}
    if z is not None:
        out["logits"] = paddle.to_tensor(z)
    return out


@pytest.mark.parametrize("multi_label", [False, True])
def test_dshsd_matches_float64_numpy_reference(multi_label):
    f, z, ids = _hash_inputs(0)
    f[0] *= 4  # put some different-class pairs beyond the margin 2K
    got = DSHSDLoss(alpha=0.3, multi_label=multi_label)(_inputs(f, z), paddle.to_tensor(ids.reshape(-1, 1)))
    want = _np_dshsd(f, z, _onehot(ids, 4), 0.3, multi_label)
    np.testing.assert_allclose(got["dshsdloss"].numpy(), want, rtol=1e-10)


def test_lcdsh_matches_float64_numpy_reference():
    f, _, ids = _hash_inputs(1)
    f[1] *= 30  # some inner products beyond the ±50 clip
    got = LCDSHLoss(n_class=5, _lambda=2.0)(_inputs(f), paddle.to_tensor(ids))
    np.testing.assert_allclose(got["lcdshloss"].numpy(), _np_lcdsh(f, _onehot(ids, 5), 2.0), rtol=1e-10)


@pytest.mark.parametrize("same_label", [False, True])
def test_dch_matches_float64_numpy_reference(same_label):
    f, _, ids = _hash_inputs(2)
    if same_label:
        ids[:] = 3
    got = DCHLoss(gamma=10.0, _lambda=0.5, n_class=4)(_inputs(f), paddle.to_tensor(ids))
    np.testing.assert_allclose(got["dchloss"].numpy(), _np_dch(f, _onehot(ids, 4), 10.0, 0.5), rtol=1e-10)


@pytest.mark.parametrize("multi_label", [False, True])
def test_dshsd_gradients_match_finite_differences(multi_label):
    f, z, ids = _hash_inputs(3)
    loss = DSHSDLoss(alpha=0.5, multi_label=multi_label)
    label = paddle.to_tensor(ids)

    def fn(a, b):
        return loss({"features": a, "logits": b}, label)["dshsdloss"]

    assert_gradcheck(fn, [f, z], index=0)
    assert_gradcheck(fn, [f, z], index=1)


def test_lcdsh_gradient_matches_finite_differences():
    f, _, ids = _hash_inputs(4)
    loss = LCDSHLoss(n_class=4, _lambda=3.0)
    label = paddle.to_tensor(ids)
    assert_gradcheck(lambda a: loss({"features": a}, label)["lcdshloss"], [f], index=0)


def test_lcdsh_gradient_stops_where_inner_products_are_clipped():
    f, _, ids = _hash_inputs(29)
    f = f * 8.0
    ip = np.abs(0.5 * f @ f.T)
    # some entries well beyond the ±50 clip, none near it (finite differences need distance from the kink)
    assert (ip > 55).sum() >= 8 and not np.any((ip > 45) & (ip < 55))
    loss = LCDSHLoss(n_class=4, _lambda=3.0)
    label = paddle.to_tensor(ids)
    # central differences see zero slope in the clipped entries, so agreement pins the stopped gradient
    assert_gradcheck(lambda a: loss({"features": a}, label)["lcdshloss"], [f], index=0)


def test_dch_gradient_matches_finite_differences():
    f, _, ids = _hash_inputs(6)
    loss = DCHLoss(gamma=20.0, _lambda=0.1, n_class=4)
    label = paddle.to_tensor(ids)
    assert_gradcheck(lambda a: loss({"features": a}, label)["dchloss"], [f], index=0, atol=1e-6)


# ---------------------------------------------------------------- divergences and robustness

def test_dshsd_accepts_multi_hot_labels_that_crash_paddleclas():
    spec = next(e for e in json.loads((FIXTURES / "other" / "expected_errors.json").read_text())
                if e["case"] == "DSHSDLoss_multihot_labels")
    f, z, _ = _hash_inputs(7, n=3, c=5)
    y = np.array([[1, 0, 1, 0, 0], [0, 1, 1, 0, 0], [0, 0, 0, 1, 1]], dtype=np.float64)
    got = DSHSDLoss(**spec["kwargs"])(_inputs(f, z), paddle.to_tensor(y))
    want = _np_dshsd(f, z, y, spec["kwargs"]["alpha"], multi_label=True)
    np.testing.assert_allclose(got["dshsdloss"].numpy(), want, rtol=1e-10)
    as_int = DSHSDLoss(**spec["kwargs"])(_inputs(f, z), paddle.to_tensor(y.astype(np.int64)))
    np.testing.assert_allclose(as_int["dshsdloss"].numpy(), want, rtol=1e-10)


def test_lcdsh_and_dch_accept_multi_hot_labels():
    f, _, _ = _hash_inputs(8, n=4)
    y = np.array([[1, 1, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 1, 1]], dtype=np.float64)
    got = LCDSHLoss(n_class=4, _lambda=1.0)(_inputs(f), paddle.to_tensor(y))["lcdshloss"]
    np.testing.assert_allclose(got.numpy(), _np_lcdsh(f, y, 1.0), rtol=1e-10)
    got = DCHLoss(gamma=5.0, _lambda=0.2, n_class=4)(_inputs(f), paddle.to_tensor(y))["dchloss"]
    np.testing.assert_allclose(got.numpy(), _np_dch(f, y, 5.0, 0.2), rtol=1e-10)


def test_dshsd_multi_label_term_stays_finite_where_naive_bce_overflows():
    f, z, ids = _hash_inputs(9)
    z = (z * 200).astype(np.float32)  # naive log(1 + e^-Z) is inf in float32 for Z < -88
    with np.errstate(over="ignore"):
        assert np.isinf(np.log(1 + np.exp(-z))).any()
    zt = paddle.to_tensor(z, stop_gradient=False)
    out = DSHSDLoss(alpha=0.1, multi_label=True)(
        {"features": paddle.to_tensor(f.astype(np.float32)), "logits": zt}, paddle.to_tensor(ids))["dshsdloss"]
    out.backward()
    assert np.isfinite(out.numpy()) and np.all(np.isfinite(zt.grad.numpy()))
    want = _np_dshsd(f, z.astype(np.float64), _onehot(ids, 4), 0.1, multi_label=True)
    np.testing.assert_allclose(out.numpy(), want, rtol=1e-5)


def test_single_sample_batch_works():
    f, z, ids = _hash_inputs(10, n=1)
    assert np.isfinite(DSHSDLoss(alpha=0.1)(_inputs(f, z), paddle.to_tensor(ids))["dshsdloss"].numpy())
    assert np.isfinite(LCDSHLoss(n_class=4, _lambda=1.0)(_inputs(f), paddle.to_tensor(ids))["lcdshloss"].numpy())
    got = DCHLoss(gamma=20.0, _lambda=0.1, n_class=4)(_inputs(f), paddle.to_tensor(ids))["dchloss"]
    np.testing.assert_allclose(got.numpy(), _np_dch(f, _onehot(ids, 4), 20.0, 0.1), rtol=1e-10)


# ---------------------------------------------------------------- input validation

def test_label_errors_are_clear():
    f, z, ids = _hash_inputs(11)
    with pytest.raises(InputError, match="float"):
        LCDSHLoss(n_class=4, _lambda=1.0)(_inputs(f), paddle.to_tensor(ids.astype(np.float32)))
    with pytest.raises(InputError, match="outside 0..3"):
        DCHLoss(gamma=20.0, _lambda=0.1, n_class=4)(_inputs(f), paddle.to_tensor(ids + 4))
    with pytest.raises(InputError, match="8 samples"):
        DSHSDLoss(alpha=0.1)(_inputs(f, z), paddle.to_tensor(ids[:5]))


def test_missing_keys_and_shape_errors_are_clear():
    f, z, ids = _hash_inputs(12)
    with pytest.raises(InputError, match="logits"):
        DSHSDLoss(alpha=0.1)(_inputs(f), paddle.to_tensor(ids))
    with pytest.raises(InputError, match=r"\['backbone'\]"):
        LCDSHLoss(n_class=4, _lambda=1.0)({"backbone": paddle.to_tensor(f)}, paddle.to_tensor(ids))
    with pytest.raises(InputError, match="rows"):
        DSHSDLoss(alpha=0.1)(_inputs(f, z[:4]), paddle.to_tensor(ids))
    with pytest.raises(InputError, match=r"\[N, D\]"):
        DCHLoss(gamma=20.0, _lambda=0.1, n_class=4)(_inputs(f[0]), paddle.to_tensor(ids))


def test_constructor_rejects_meaningless_values():
    with pytest.raises(ValueError, match="gamma"):
        DCHLoss(gamma=0.0, _lambda=0.1, n_class=4)
    with pytest.raises(ValueError, match="n_class"):
        LCDSHLoss(n_class=0, _lambda=1.0)


def test_config_requires_paddleclas_required_parameters():
    with pytest.raises(pl.ConfigError, match="_lambda"):
        pl.build_loss([{"LCDSHLoss": {"weight": 1.0, "n_class": 4}}])
    loss = pl.build_loss([{"DCHLoss": {"weight": 1.0, "gamma": 20.0, "_lambda": 0.1, "n_class": 10}}])
    assert type(loss.loss_func[0]).__name__ == "DCHLoss"


def test_dch_runs_under_to_static():
    c = case("other", "DCHLoss")
    layer = DCHLoss(**c.params)

    def dch(f, y):
        return layer({"features": f}, y)["dchloss"]

    f = paddle.to_tensor(c["arg.input.features"], stop_gradient=False)
    out = paddle.jit.to_static(dch)(f, paddle.to_tensor(c["arg.label"]))
    out.backward()
    np.testing.assert_allclose(out.numpy(), c["out.dchloss"], rtol=1e-5)
    np.testing.assert_allclose(f.grad.numpy(), c["grad.input.features"], rtol=1e-5, atol=1e-5)
