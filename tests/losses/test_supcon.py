"""SupConLoss and SoftSupConLoss: golden parity, a float64 NumPy reference of the SupCon paper's formula,
gradients, the documented fixes (per-batch layout, contrast_mode='one', anchors without positives, any
number of views in SoftSupCon) and input validation."""
import numpy as np
import paddle
import pytest

from golden import assert_close, case, cases, tensor
from gradcheck import assert_gradcheck
from paddle_losses.errors import InputError
from paddle_losses.losses.supcon import SoftSupConLoss, SupConLoss

RNG = np.random.default_rng(5)


def np_supcon_rows(contrast, num_anchors, weights, t, t_base):
    """Per-anchor loss of the SupCon paper; anchor r is contrast row r; ``weights [A, K]`` positive weights."""
    z = contrast[:num_anchors] @ contrast.T / t
    not_self = 1.0 - np.eye(num_anchors, len(contrast))
    log_den = np.log((np.exp(z) * not_self).sum(1, keepdims=True))
    w = weights * not_self
    total = w.sum(1)
    rows = -(t / t_base) * (w * (z - log_den)).sum(1) / np.where(total > 0, total, 1)
    return rows, total > 0


def np_supcon_loss(x, labels, views, t=0.07, t_base=0.07, mode="all", normalize=True):
    n, d = x.shape
    b = n // views
    if normalize:
        x = x / (np.linalg.norm(x, axis=1, keepdims=True) + 1e-12)
    contrast = x.reshape(b, views, d).transpose(1, 0, 2).reshape(-1, d)
    ids = np.tile(labels.reshape(b, views)[:, 0], views)
    a = len(contrast) if mode == "all" else b
    rows, valid = np_supcon_rows(contrast, a, (ids[:a, None] == ids[None, :]).astype(float), t, t_base)
    return rows[valid].mean()


def run_supcon(loss, x, labels):
    return float(loss({"features": paddle.to_tensor(x)}, paddle.to_tensor(labels))["SupConLoss"])


# ---------------------------------------------------------------- SupConLoss golden parity

SUPCON_OK = [c for c in cases("metric", "SupConLoss__*.npz") if not c.meta["error"]]


@pytest.mark.parametrize("golden_case", SUPCON_OK, ids=lambda c: c.name)
def test_golden_supcon_outputs_and_gradients(golden_case):
    c = golden_case
    x = tensor(c["input__features"], grad=True)
    out = SupConLoss(**c.params)({"features": x}, tensor(c["label"]))
    assert list(out) == ["SupConLoss"]
    assert_close(out["SupConLoss"], c["out__SupConLoss"], "SupConLoss")
    out["SupConLoss"].backward()
    assert_close(x.grad, c["grad__features"], "grad features")


def test_golden_supcon_case_counts():
    assert len(SUPCON_OK) == 2 and len(cases("metric", "SupConLoss__*.npz")) == 3


def test_contrast_mode_one_works_on_the_case_paddleclas_crashes_on():
    c = case("metric", "SupConLoss__contrast_one_error")
    assert "Broadcast dimension mismatch" in c.meta["error"]["message"]
    x, y = c["input__features"].astype("float64"), c["label"]
    out = run_supcon(SupConLoss(**c.params), x, y)
    np.testing.assert_allclose(out, np_supcon_loss(x, y, views=2, mode="one"), rtol=1e-10)


# ---------------------------------------------------------------- SupConLoss references and fixes

@pytest.mark.parametrize("views,mode,normalize", [(2, "all", True), (4, "all", False), (3, "one", True)])
def test_supcon_matches_numpy_reference(views, mode, normalize):
    x = RNG.normal(size=(4 * views, 6))
    y = np.repeat(np.array([0, 1, 0, 2]), views)
    loss = SupConLoss(views=views, temperature=0.2, base_temperature=0.1, contrast_mode=mode,
                      normalize_feature=normalize)
    np.testing.assert_allclose(run_supcon(loss, x, y), np_supcon_loss(x, y, views, 0.2, 0.1, mode, normalize),
                               rtol=1e-10)


def test_supcon_layout_is_computed_from_every_batch():
    loss = SupConLoss(views=2)
    for n in (12, 8, 6):  # PaddleClas caches B from the first batch and crashes on the next size
        x, y = RNG.normal(size=(n, 5)), np.repeat(np.arange(n // 2) % 2, 2)
        np.testing.assert_allclose(run_supcon(loss, x, y), np_supcon_loss(x, y, 2), rtol=1e-10)


def test_supcon_reads_only_the_first_label_of_each_group():
    x = RNG.normal(size=(8, 5))
    y = np.array([0, 0, 1, 1, 0, 0, 2, 2])
    y_noisy = np.array([0, 9, 1, 7, 0, 5, 2, 0])
    loss = SupConLoss(views=2)
    assert run_supcon(loss, x, y) == run_supcon(loss, x, y_noisy)


def test_supcon_anchor_without_positive_is_left_out_instead_of_nan():
    x = RNG.normal(size=(5, 4))
    y = np.array([0, 0, 1, 2, 2])  # views=1: label 1 has no positive (PaddleClas: NaN)
    out = run_supcon(SupConLoss(views=1), x, y)
    assert np.isfinite(out)
    np.testing.assert_allclose(out, np_supcon_loss(x, y, views=1), rtol=1e-10)


def test_supcon_without_labels_is_simclr():
    x = RNG.normal(size=(8, 4))
    loss = SupConLoss(views=2)
    unsupervised = float(loss({"features": paddle.to_tensor(x)})["SupConLoss"])
    np.testing.assert_allclose(unsupervised, run_supcon(loss, x, np.repeat(np.arange(4), 2)), rtol=1e-12)


@pytest.mark.parametrize("mode", ["all", "one"])
def test_supcon_gradient_matches_finite_differences(mode):
    y = paddle.to_tensor(np.repeat(np.array([0, 1, 0]), 2))
    loss = SupConLoss(views=2, temperature=0.5, base_temperature=0.5, contrast_mode=mode)
    assert_gradcheck(lambda f: loss({"features": f}, y)["SupConLoss"], [RNG.normal(size=(6, 4))])


def test_supcon_constructor_rejects_bad_values():
    with pytest.raises(ValueError, match="contrast_mode"):
        SupConLoss(contrast_mode="any")
    with pytest.raises(ValueError, match="views"):
        SupConLoss(views=0)
    with pytest.raises(ValueError, match="temperature"):
        SupConLoss(temperature=0)


@pytest.mark.parametrize("feats,label,match", [
    (paddle.zeros([7, 4]), paddle.zeros([7], "int64"), "not a multiple of views=2"),
    (paddle.ones([8, 4]), paddle.zeros([6], "int64"), "6 entries but the batch has 8"),
    (paddle.full([8, 4], float("nan")), paddle.zeros([8], "int64"), "NaN"),
    (paddle.ones([8, 2, 2]), paddle.zeros([8], "int64"), r"shape \[N, D\]"),
    (paddle.zeros([0, 4]), paddle.zeros([0], "int64"), "empty batch"),
])
def test_supcon_bad_input_raises_input_error(feats, label, match):
    with pytest.raises(InputError, match=match):
        SupConLoss(views=2)({"features": feats}, label)


def test_supcon_missing_features_key_lists_present_keys():
    with pytest.raises(InputError, match="'backbone'"):
        SupConLoss(views=2)({"backbone": paddle.ones([4, 3])}, paddle.zeros([4], "int64"))


@pytest.mark.parametrize("full_graph", [False, True])
def test_supcon_runs_under_to_static(full_graph):
    loss = SupConLoss(views=2)
    xn = RNG.normal(size=(8, 4)).astype("float32")
    y = paddle.to_tensor(np.array([[0], [0], [1], [1], [0], [0], [2], [2]]))

    def compute(f, t):
        return loss({"features": f}, t)["SupConLoss"]

    results = []
    for fn in (compute, paddle.jit.to_static(compute, full_graph=full_graph)):
        x = paddle.to_tensor(xn, stop_gradient=False)
        value = fn(x, y)
        value.backward()
        results.append((float(value), x.grad.numpy()))
    np.testing.assert_allclose(results[1][0], results[0][0], rtol=1e-6)
    np.testing.assert_allclose(results[1][1], results[0][1], rtol=1e-5, atol=1e-7)


# ---------------------------------------------------------------- SoftSupConLoss

SOFT = cases("metric", "SoftSupConLoss__*.npz")


def soft_batch(probs, labels):
    return {"max_probs": paddle.to_tensor(probs), "p_targets_u_w": paddle.to_tensor(labels)}


def np_soft_supcon(feat, probs, labels, t=0.07, t_base=0.07, mode="all"):
    b, v, d = feat.shape
    contrast = feat.transpose(1, 0, 2).reshape(-1, d)
    w = (labels[:, None] == labels[None, :]) * probs[:, None] * probs[None, :]
    a = v * b if mode == "all" else b
    rows, valid = np_supcon_rows(contrast, a, np.tile(w, (a // b, v)), t, t_base)
    return rows, valid


@pytest.mark.parametrize("golden_case", SOFT, ids=lambda c: c.name)
def test_golden_soft_supcon_outputs_dtype_and_gradients(golden_case):
    c = golden_case
    feat = tensor(c["input__feat"], grad=True)
    out = SoftSupConLoss(**c.params)(feat, soft_batch(c["batch__max_probs"], c["batch__p_targets_u_w"]),
                                     **c.meta["call_kwargs"])
    value = out["SoftSupConLoss"]
    assert value.dtype == paddle.float64  # PaddleClas's float64 promotion is kept
    assert_close(value, c["out__SoftSupConLoss"], "SoftSupConLoss")
    assert list(value.shape) == list(c["out__SoftSupConLoss"].shape)
    cot = c.arrays.get("cotangent__SoftSupConLoss")
    (value * tensor(cot) if cot is not None else value).sum().backward()
    assert feat.grad.dtype == paddle.float32
    assert_close(feat.grad, c["grad__feat"], "grad feat")


def test_golden_soft_supcon_case_count():
    assert len(SOFT) == 2


@pytest.mark.parametrize("views,mode", [(2, "all"), (3, "all"), (2, "one")])
def test_soft_supcon_matches_numpy_reference(views, mode):
    feat = RNG.normal(size=(5, views, 4)) * 0.5
    probs = RNG.uniform(0.3, 1.0, size=5)
    labels = np.array([0, 1, 0, 2, 1])
    out = SoftSupConLoss(temperature=0.3, base_temperature=0.2, contrast_mode=mode)(
        paddle.to_tensor(feat), soft_batch(probs, labels), reduction="none")["SoftSupConLoss"]
    rows, _ = np_soft_supcon(feat, probs, labels, 0.3, 0.2, mode)
    anchors = views if mode == "all" else 1
    assert list(out.shape) == [anchors, 5]
    np.testing.assert_allclose(out.numpy(), rows.reshape(anchors, 5), rtol=1e-10)


def test_soft_supcon_zero_confidence_row_is_left_out_instead_of_nan():
    feat = RNG.normal(size=(4, 2, 3))
    probs = np.array([0.9, 0.0, 0.8, 0.7])
    labels = np.array([0, 1, 0, 1])
    out = float(SoftSupConLoss()(paddle.to_tensor(feat), soft_batch(probs, labels))["SoftSupConLoss"])
    rows, valid = np_soft_supcon(feat, probs, labels)
    assert np.isfinite(out) and valid.sum() == 6
    np.testing.assert_allclose(out, rows[valid].mean(), rtol=1e-10)


def test_soft_supcon_gradient_matches_finite_differences():
    probs, labels = np.array([0.9, 0.6, 0.8, 0.7]), np.array([0, 1, 0, 1])
    loss = SoftSupConLoss(temperature=0.5, base_temperature=0.5)
    assert_gradcheck(lambda f: loss(f, soft_batch(probs, labels))["SoftSupConLoss"],
                     [RNG.normal(size=(4, 2, 3))])


def test_soft_supcon_keyword_arguments_are_used_when_batch_lacks_keys():
    feat = paddle.to_tensor(RNG.normal(size=(4, 2, 3)))
    probs, labels = np.array([0.9, 0.6, 0.8, 0.7]), np.array([0, 1, 0, 1])
    a = SoftSupConLoss()(feat, soft_batch(probs, labels))["SoftSupConLoss"]
    b = SoftSupConLoss()(feat, {}, max_probs=paddle.to_tensor(probs), labels=paddle.to_tensor(labels))
    assert float(a) == float(b["SoftSupConLoss"])


@pytest.mark.parametrize("feat,batch,match", [
    (paddle.ones([4, 3]), soft_batch(np.ones(4), np.zeros(4, "int64")), "rank 3"),
    (paddle.ones([4, 1, 3]), soft_batch(np.ones(4), np.zeros(4, "int64")), "V >= 2"),
    (paddle.ones([4, 2, 3]), {}, "max_probs"),
    (paddle.ones([4, 2, 3]), soft_batch(np.ones(3), np.zeros(4, "int64")), "4 entries"),
    (paddle.ones([4, 2, 3]), soft_batch(np.ones(4), np.zeros(4, "float32")), "integer class ids"),
])
def test_soft_supcon_bad_input_raises_input_error(feat, batch, match):
    with pytest.raises(InputError, match=match):
        SoftSupConLoss()(feat, batch)
