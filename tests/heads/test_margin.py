"""Margin heads: golden parity (train/eval logits, CE gradients to features and weight/kernel, AdaMargin EMA
state per step), float64 NumPy references, gradients, the label-entry construction against PaddleClas's
one-hot formula (values and gradients, clips and branches active), to_static, checkpoint names, the
documented fixes (CosMargin label=None, AdaMargin one-sample batch and label=None) and input validation."""
import math

import numpy as np
import paddle
import paddle.nn.functional as F
import pytest

import paddle_losses as pl
from golden import assert_close, cases, tensor
from gradcheck import assert_gradcheck, numeric_grad
from paddle_losses.errors import ConfigError, InputError
from paddle_losses.heads.margin import AdaMargin, ArcMargin, CircleMargin, CosMargin, class_cosine
from paddle_losses.validation import validate_head_config

GOLDEN = cases("metric", "*Margin__*.npz")
HEADS = {"ArcMargin": ArcMargin, "CosMargin": CosMargin, "CircleMargin": CircleMargin, "AdaMargin": AdaMargin}
RNG = np.random.default_rng(21)


@pytest.fixture
def float64_default():
    old = paddle.get_default_dtype()
    paddle.set_default_dtype("float64")
    yield
    paddle.set_default_dtype(old)


# ---------------------------------------------------------------- golden parity

@pytest.mark.parametrize("golden_case", GOLDEN, ids=lambda c: c.name)
def test_golden_logits_gradients_and_state(golden_case):
    c = golden_case
    (pname, w0), = c.with_prefix("init__").items()
    head = HEADS[c.meta["class"]](w0.shape[0], w0.shape[1], **c.params)
    param = getattr(head, pname)
    param.set_value(w0)
    multi = "label__s0" in c
    for step in range(c.meta.get("steps", 1)):
        sfx = f"__s{step}" if multi else ""
        x = tensor(c[f"input__features{sfx}"], grad=True)
        label = tensor(c[f"label{sfx}"])
        head.train()
        logits = head(x, label)
        assert_close(logits, c[f"out__logits_train{sfx}"], f"{c.name} step {step}: train logits")
        ce = F.cross_entropy(logits, label.reshape([-1, 1]))
        assert_close(ce, c[f"out__celoss_on_logits{sfx}"], "CE of logits")
        param.clear_gradient()
        ce.backward()
        assert_close(x.grad, c[f"grad__features{sfx}"], f"{c.name} step {step}: grad features")
        assert_close(param.grad, c[f"grad__{pname}{sfx}"], f"{c.name} step {step}: grad {pname}")
        for name, value in c.with_prefix("state__", step if multi else None).items():
            assert_close(getattr(head, name), value, f"{c.name} step {step}: {name}")
        if "out__logits_eval" in c:
            head.eval()
            assert_close(head(x, label), c["out__logits_eval"], f"{c.name}: eval logits")


def test_golden_case_count():
    assert sorted(c.name for c in GOLDEN) == sorted([
        "AdaMargin__t_alpha_0.01", "AdaMargin__t_alpha_1", "ArcMargin__default", "ArcMargin__easy",
        "CircleMargin__logo", "CosMargin__default"])


# ---------------------------------------------------------------- float64 NumPy references

def np_cos(x, w):
    return (x / np.linalg.norm(x, axis=1, keepdims=True)) @ (w / np.linalg.norm(w, axis=0, keepdims=True))


def np_arc(cos, y, m, s, easy):
    sin = np.sqrt(1 - cos ** 2 + 1e-6)
    phi = cos * math.cos(m) - sin * math.sin(m)
    phi = np.where(cos > 0, phi, cos) if easy else np.where(cos > -math.cos(m), phi, cos - m * math.sin(m))
    onehot = np.eye(cos.shape[1])[y]
    return s * (onehot * phi + (1 - onehot) * cos)


def np_circle(cos, y, m, s):
    onehot = np.eye(cos.shape[1])[y]
    ap, an = np.maximum(1 + m - cos, 0), np.maximum(cos + m, 0)
    return s * (onehot * ap * (cos - (1 - m)) + (1 - onehot) * an * (cos - m))


def head_out(head, x, y):
    return head(paddle.to_tensor(x), paddle.to_tensor(y)).numpy()


X = RNG.normal(size=(8, 5))
Y = np.array([0, 1, 2, 3, 0, 1, 2, 3])


@pytest.mark.parametrize("margin,easy", [(0.5, False), (1.3, False), (0.3, True)])
def test_arcmargin_matches_numpy_in_both_branches(float64_default, margin, easy):
    paddle.seed(1)  # a weight for which margin=1.3 puts 4 of the 8 label entries on each side
    head = ArcMargin(5, 4, margin=margin, scale=16.0, easy_margin=easy)
    cos = np_cos(X, head.weight.numpy())
    threshold = 0 if easy else -math.cos(margin)
    target = cos[np.arange(8), Y]
    if margin == 1.3:
        assert (target > threshold).any() and (target <= threshold).any()  # both branches exercised
    np.testing.assert_allclose(head_out(head, X, Y), np_arc(cos, Y, margin, 16.0, easy), rtol=1e-10)


def test_cosmargin_and_circlemargin_match_numpy(float64_default):
    cosm = CosMargin(5, 4, margin=0.3, scale=10.0)
    cos = np_cos(X, cosm.weight.numpy())
    np.testing.assert_allclose(head_out(cosm, X, Y), 10.0 * (cos - 0.3 * np.eye(4)[Y]), rtol=1e-10, atol=1e-12)
    circ = CircleMargin(5, 4, margin=0.25, scale=12.0)
    cos = np_cos(X, circ.weight.numpy())
    np.testing.assert_allclose(head_out(circ, X, Y), np_circle(cos, Y, 0.25, 12.0), rtol=1e-10, atol=1e-12)


def test_adamargin_matches_numpy_over_steps(float64_default):
    head = AdaMargin(5, 4, m=0.4, h=0.333, s=8.0, t_alpha=0.3)
    mean, std = 20.0, 100.0
    for step in range(3):
        x = RNG.normal(size=(6, 5)) * (1 + step)
        y = np.array([0, 1, 2, 3, 0, 1])
        cos = np.clip(np_cos(x, head.kernel.numpy()), -1 + 1e-3, 1 - 1e-3)
        sn = np.clip(np.linalg.norm(x, axis=1, keepdims=True), 1e-3, 100)
        mean = 0.3 * sn.mean() + 0.7 * mean
        std = 0.3 * sn.std(ddof=1) + 0.7 * std
        ms = np.clip(0.333 * (sn - mean) / (std + 1e-3), -1, 1)
        onehot = np.eye(4)[y]
        theta = np.clip(np.arccos(cos) - onehot * 0.4 * ms, 1e-3, math.pi - 1e-3)
        expected = 8.0 * (np.cos(theta) - onehot * (0.4 + 0.4 * ms))
        np.testing.assert_allclose(head_out(head, x, y), expected, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(head.batch_mean.numpy(), [mean], rtol=1e-10)
        np.testing.assert_allclose(head.batch_std.numpy(), [std], rtol=1e-10)


# ---------------------------------------------------------------- gradients (finite differences)

def check_parameter_gradient(head, pname, x, y):
    """Autograd gradient of mean CE w.r.t. the head parameter against central differences."""
    param = getattr(head, pname)
    w0 = param.numpy().copy()
    labels = paddle.to_tensor(y)

    def ce(w):
        param.set_value(w.numpy())
        return F.cross_entropy(head(paddle.to_tensor(x), labels), labels)

    numeric = numeric_grad(ce, [w0], 0)
    param.set_value(w0)
    param.clear_gradient()
    F.cross_entropy(head(paddle.to_tensor(x), labels), labels).backward()
    np.testing.assert_allclose(param.grad.numpy(), numeric, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("name,params", [
    ("ArcMargin", {"margin": 0.5, "scale": 4.0}), ("ArcMargin", {"margin": 0.2, "scale": 4.0, "easy_margin": True}),
    ("CosMargin", {"margin": 0.35, "scale": 4.0}),
    ("AdaMargin", {"m": 0.4, "h": 0.0, "s": 4.0}),  # h=0: the (detached) norm statistics do not move ms
])
def test_gradients_match_finite_differences(float64_default, name, params):
    head = HEADS[name](5, 4, **params)
    labels = paddle.to_tensor(Y)
    assert_gradcheck(lambda f: F.cross_entropy(head(f, labels), labels), [X])
    check_parameter_gradient(head, "kernel" if name == "AdaMargin" else "weight", X, Y)


def test_circlemargin_gradient_treats_alpha_as_constant(float64_default):
    head = CircleMargin(5, 4, margin=0.25, scale=4.0)
    labels = paddle.to_tensor(Y)
    onehot = paddle.to_tensor(np.eye(4)[Y])
    w = head.weight.detach()
    alpha_p = paddle.to_tensor(np.maximum(1.25 - np_cos(X, w.numpy()), 0))
    alpha_n = paddle.to_tensor(np.maximum(np_cos(X, w.numpy()) + 0.25, 0))

    def frozen_alpha_ce(f):  # the same logits with α fixed at the evaluation point
        cos = class_cosine(f, w)
        logits = 4.0 * (onehot * alpha_p * (cos - 0.75) + (1 - onehot) * alpha_n * (cos - 0.25))
        return F.cross_entropy(logits, labels)

    numeric = numeric_grad(frozen_alpha_ce, [X], 0)
    x = paddle.to_tensor(X, stop_gradient=False)
    F.cross_entropy(head(x, labels), labels).backward()
    np.testing.assert_allclose(x.grad.numpy(), numeric, rtol=1e-5, atol=1e-7)


def test_adamargin_kernel_gradient_with_active_margin_scaler(float64_default):
    head = AdaMargin(5, 4, m=0.4, h=0.333, s=4.0, t_alpha=1.0)  # t_alpha=1: state depends on x only
    check_parameter_gradient(head, "kernel", X, Y)


# ---------------------------------------------------------------- label-entry logits vs the one-hot formula

def onehot_formula_logits(name, head, x, y):
    """Training logits as PaddleClas writes them: [N, C] one-hot mixing, differentiated by plain autograd."""
    weight = head.kernel if name == "AdaMargin" else head.weight
    cos = class_cosine(x, weight)
    onehot = F.one_hot(y, head.class_num).astype(x.dtype)
    if name == "ArcMargin":
        m = head.margin
        sin = paddle.sqrt(1.0 - paddle.square(cos) + 1e-6)
        phi = cos * math.cos(m) - sin * math.sin(m)
        keep = (cos > 0 if head.easy_margin else cos > -math.cos(m)).astype(x.dtype)
        phi = keep * phi + (1 - keep) * (cos if head.easy_margin else cos - m * math.sin(m))
        return head.scale * (onehot * phi + (1 - onehot) * cos)
    if name == "CosMargin":
        return head.scale * (cos - head.margin * onehot)
    if name == "CircleMargin":
        fixed, m = cos.detach(), head.margin
        alpha_p, alpha_n = F.relu(1 + m - fixed), F.relu(fixed + m)
        return head.scale * (alpha_p * (cos - (1 - m)) * onehot + alpha_n * (cos - m) * (1 - onehot))
    eps = 1e-3  # AdaMargin with t_alpha=1: the statistics are the batch's own
    cos = paddle.clip(cos, -1 + eps, 1 - eps)
    sn = paddle.clip(paddle.linalg.norm(x, axis=1, keepdim=True), 0.001, 100).detach()
    ms = paddle.clip(head.h * (sn - sn.mean()) / (paddle.std(sn) + eps), -1, 1)
    theta_m = paddle.clip(paddle.acos(cos) - onehot * head.m * ms, eps, math.pi - eps)
    return head.s * (paddle.cos(theta_m) - onehot * (head.m + head.m * ms))


def adamargin_batch_with_active_clips(head, rng):
    """A batch on which every clip of AdaMargin acts alone somewhere. Rows at a set cosine to a kernel column:
    cos clip off the label (rows 1, 2: ±0.9998; not ±1, where the gradient of cos vanishes anyway) and at it
    (row 3: −0.9998); θ − m·ms below ε (row 0: cos 0.95, large norm, ms near 1) and above π − ε (row 4:
    cos −0.95, small norm, ms = −1)."""
    k = head.kernel.numpy()
    x = rng.normal(size=(8, 5))
    for row, col, cosine, norm in ((0, 0, 0.95, 9), (1, 1, -0.9998, 9), (2, 3, 0.9998, 9), (3, 3, -0.9998, 9),
                                   (4, 0, -0.95, 0.3)):
        unit = k[:, col] / np.linalg.norm(k[:, col])
        off = rng.normal(size=5)
        off -= (off @ unit) * unit
        x[row] = norm * (cosine * unit + math.sqrt(1 - cosine ** 2) * off / np.linalg.norm(off))
    return x, np.array([0, 2, 1, 3, 0, 1, 2, 3])


HEAD_VARIANTS = [
    ("ArcMargin", {"margin": 0.5, "scale": 16.0}), ("ArcMargin", {"margin": 1.3, "scale": 16.0}),
    ("ArcMargin", {"margin": 0.3, "scale": 16.0, "easy_margin": True}), ("CosMargin", {"margin": 0.3, "scale": 10.0}),
    ("CircleMargin", {"margin": 0.25, "scale": 12.0}), ("AdaMargin", {"m": 0.4, "h": 1.0, "s": 8.0}),
]


@pytest.mark.parametrize("name,params", HEAD_VARIANTS, ids=lambda v: str(v))
def test_label_entry_logits_and_gradients_equal_the_onehot_formula(float64_default, name, params):
    paddle.seed(1)
    rng = np.random.default_rng(5)
    head = HEADS[name](5, 4, **params)
    x, y = (adamargin_batch_with_active_clips(head, rng) if name == "AdaMargin" else (X, Y))
    labels = paddle.to_tensor(y)
    upstream = paddle.to_tensor(rng.normal(size=(8, 4)))  # uneven output gradient: every entry counts
    if name == "ArcMargin" and params["margin"] == 1.3:  # both branches at the label entries
        target = np_cos(X, head.weight.numpy())[np.arange(8), Y]
        assert (target > -math.cos(1.3)).any() and (target <= -math.cos(1.3)).any()
    if name == "AdaMargin":  # each clip acts alone somewhere (see adamargin_batch_with_active_clips)
        cos = np_cos(x, head.kernel.numpy())
        assert sorted(zip(*np.nonzero(np.abs(cos) > 1 - 1e-3))) == [(1, 1), (2, 3), (3, 3)]
        sn = np.linalg.norm(x, axis=1)
        ms = np.clip((sn - sn.mean()) / (sn.std(ddof=1) + 1e-3), -1, 1)
        shifted = np.arccos(np.clip(cos[np.arange(8), y], -1 + 1e-3, 1 - 1e-3)) - 0.4 * ms
        assert shifted[0] < 1e-3 and shifted[4] > math.pi - 1e-3 and 1e-3 < shifted[3] < math.pi - 1e-3
    results = []
    for logits_fn in (lambda f: head(f, labels), lambda f: onehot_formula_logits(name, head, f, labels)):
        f = paddle.to_tensor(x, stop_gradient=False)
        weight = head.kernel if name == "AdaMargin" else head.weight
        weight.clear_gradient()
        logits = logits_fn(f)
        (logits * upstream).sum().backward()
        results.append((logits.numpy(), f.grad.numpy(), weight.grad.numpy()))
    (ours, ours_dx, ours_dw), (ref, ref_dx, ref_dw) = results
    np.testing.assert_allclose(ours, ref, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(ours_dx, ref_dx, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(ours_dw, ref_dw, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("name,params", [("ArcMargin", {}), ("CosMargin", {}),
                                         ("CircleMargin", {"margin": 0.35, "scale": 64.0}), ("AdaMargin", {"t_alpha": 0.5})])
def test_training_path_runs_under_to_static_full_graph_with_equal_gradients(name, params):
    paddle.seed(5)
    dynamic, static = HEADS[name](5, 4, **params), HEADS[name](5, 4, **params)
    static.set_state_dict(dynamic.state_dict())
    compiled = paddle.jit.to_static(static, full_graph=True)
    y = paddle.to_tensor(Y.reshape(-1, 1))
    for step in range(2):
        results = []
        for module, layer in ((dynamic, dynamic), (compiled, static)):
            x = paddle.to_tensor(X.astype("float32") * (1 + step), stop_gradient=False)
            layer.clear_gradients()
            logits = module(x, y)
            F.cross_entropy(logits, y).backward()
            results.append([logits.numpy(), x.grad.numpy()] + [p.grad.numpy() for p in layer.parameters()])
        for ours, ref in zip(*results):
            np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-6)
        for key, value in dynamic.state_dict().items():
            np.testing.assert_allclose(static.state_dict()[key].numpy(), value.numpy(), rtol=1e-6)


# ---------------------------------------------------------------- modes, labels, fixes

@pytest.mark.parametrize("name,params", [("ArcMargin", {}), ("CosMargin", {}),
                                         ("CircleMargin", {"margin": 0.35, "scale": 64.0})])
def test_eval_mode_and_missing_label_return_unscaled_cosine(name, params):
    head = HEADS[name](5, 4, **params)
    x = paddle.to_tensor(X.astype("float32"))
    cos = np_cos(X, head.weight.numpy().astype("float64"))
    np.testing.assert_allclose(head(x).numpy(), cos, rtol=1e-5, atol=1e-6)  # training mode, label=None
    head.eval()
    np.testing.assert_allclose(head(x, paddle.to_tensor(Y)).numpy(), cos, rtol=1e-5, atol=1e-6)


def test_cosmargin_label_none_returns_cosine_instead_of_crashing():
    head = CosMargin(5, 4)
    head.eval()
    out = head(paddle.to_tensor(X.astype("float32")), None)  # PaddleClas: AttributeError
    assert list(out.shape) == [8, 4] and float(paddle.abs(out).max()) <= 1.0 + 1e-6


@pytest.mark.parametrize("name,params", [("ArcMargin", {}), ("CosMargin", {}),
                                         ("CircleMargin", {"margin": 0.35, "scale": 64.0}), ("AdaMargin", {})])
def test_label_shapes_n_and_n1_give_the_same_logits(name, params):
    paddle.seed(0)
    head = HEADS[name](5, 4, **params)
    x = paddle.to_tensor(X.astype("float32"))
    a = head(x, paddle.to_tensor(Y)).numpy()
    b = head(x, paddle.to_tensor(Y.reshape(-1, 1))).numpy()
    np.testing.assert_array_equal(a, b)


def test_adamargin_applies_margin_and_updates_statistics_in_eval_mode():
    head = AdaMargin(5, 4, t_alpha=1.0)
    head.eval()
    x = paddle.to_tensor(X.astype("float32"))
    out = head(x, paddle.to_tensor(Y))
    np.testing.assert_allclose(head.batch_mean.numpy(), [np.linalg.norm(X, axis=1).mean()], rtol=1e-5)
    cos = np.clip(np_cos(X, head.kernel.numpy().astype("float64")), -1 + 1e-3, 1 - 1e-3)
    assert np.abs(out.numpy() - cos).max() > 1.0  # scaled, margin applied: PaddleClas behaviour


def test_adamargin_one_sample_batch_keeps_statistics_finite():
    head = AdaMargin(5, 4, t_alpha=0.5)
    head(paddle.to_tensor(X[:4].astype("float32")), paddle.to_tensor(Y[:4]))
    std_before = head.batch_std.numpy().copy()
    out = head(paddle.to_tensor(X[:1].astype("float32")), paddle.to_tensor(Y[:1]))  # PaddleClas: NaN forever
    assert np.isfinite(out.numpy()).all()
    np.testing.assert_array_equal(head.batch_std.numpy(), std_before)
    np.testing.assert_allclose(head.batch_mean.numpy()[0] * 2 - np.linalg.norm(X[0]),
                               head_mean_before(head, X[:4]), rtol=1e-5)
    later = head(paddle.to_tensor(X.astype("float32")), paddle.to_tensor(Y))
    assert np.isfinite(later.numpy()).all() and np.isfinite(head.batch_std.numpy()).all()


def head_mean_before(head, x4):
    # batch_mean after the 4-sample step (t_alpha=0.5, start 20).
    return 0.5 * np.linalg.norm(x4, axis=1).mean() + 0.5 * 20.0


def test_adamargin_without_label_returns_cosine_and_keeps_statistics():
    head = AdaMargin(5, 4)
    out = head(paddle.to_tensor(X.astype("float32")))
    cos = np.clip(np_cos(X, head.kernel.numpy().astype("float64")), -1 + 1e-3, 1 - 1e-3)
    np.testing.assert_allclose(out.numpy(), cos, rtol=1e-5, atol=1e-6)
    assert head.batch_mean.numpy()[0] == 20.0 and head.batch_std.numpy()[0] == 100.0


# ---------------------------------------------------------------- parameters, checkpoints, config

def test_parameter_and_buffer_names_match_paddleclas():
    for name in ("ArcMargin", "CosMargin"):
        assert list(HEADS[name](5, 4).state_dict()) == ["weight"]
    assert list(CircleMargin(5, 4, margin=0.3, scale=30.0).state_dict()) == ["weight"]
    assert sorted(AdaMargin(5, 4).state_dict()) == ["batch_mean", "batch_std", "kernel", "t"]


def test_weights_use_xavier_normal_and_kernel_has_unit_columns():
    paddle.seed(1)
    w = ArcMargin(300, 200).weight.numpy()
    np.testing.assert_allclose(w.std(), math.sqrt(2 / 500), rtol=0.05)
    assert w.shape == (300, 200)
    k = AdaMargin(30, 20).kernel.numpy()
    np.testing.assert_allclose(np.linalg.norm(k, axis=0), 1.0, rtol=1e-5)


def test_adamargin_state_round_trips_through_save_and_load(tmp_path):
    head = AdaMargin(5, 4, t_alpha=0.1)
    head(paddle.to_tensor(X.astype("float32")), paddle.to_tensor(Y))
    path = str(tmp_path / "head.pdparams")
    paddle.save(head.state_dict(), path)
    fresh = AdaMargin(5, 4, t_alpha=0.1)
    fresh.set_state_dict(paddle.load(path))
    for key in ("kernel", "batch_mean", "batch_std", "t"):
        np.testing.assert_array_equal(getattr(fresh, key).numpy(), getattr(head, key).numpy())
    x2 = paddle.to_tensor(RNG.normal(size=(6, 5)).astype("float32"))
    y2 = paddle.to_tensor(Y[:6])
    np.testing.assert_array_equal(fresh(x2, y2).numpy(), head(x2, y2).numpy())


def test_heads_are_registered_and_config_validated():
    assert pl.list_heads() == sorted(set(pl.list_heads()) | {"AdaMargin", "ArcMargin", "CircleMargin", "CosMargin"})
    assert validate_head_config({"name": "ArcMargin", "embedding_size": 512, "class_num": 101, "margin": 0.15,
                                 "scale": 30}) is ArcMargin
    with pytest.raises(ConfigError, match="margin"):
        validate_head_config({"name": "CircleMargin", "embedding_size": 8, "class_num": 3, "scale": 64.0})


@pytest.mark.parametrize("name,params", [("ArcMargin", {}), ("CosMargin", {}),
                                         ("CircleMargin", {"margin": 0.35, "scale": 64.0}), ("AdaMargin", {})])
def test_bad_input_raises_input_error(name, params):
    head = HEADS[name](5, 4, **params)
    with pytest.raises(InputError, match=r"embedding_size=5"):
        head(paddle.ones([3, 6]), paddle.zeros([3], "int64"))
    with pytest.raises(InputError, match="2 entries but the batch has 3"):
        head(paddle.ones([3, 5]), paddle.zeros([2], "int64"))
    with pytest.raises(InputError, match="outside 0..3"):
        head(paddle.ones([3, 5]), paddle.to_tensor([0, 4, 1]))
    with pytest.raises(InputError, match="NaN"):
        head(paddle.full([3, 5], float("nan")), paddle.zeros([3], "int64"))
    with pytest.raises(InputError, match="empty batch"):
        head(paddle.zeros([0, 5]), paddle.zeros([0], "int64"))


@pytest.mark.parametrize("name,params", [("ArcMargin", {}), ("AdaMargin", {"t_alpha": 0.5})])
def test_runs_under_to_static(name, params):
    paddle.seed(3)
    dynamic, static = HEADS[name](5, 4, **params), HEADS[name](5, 4, **params)
    static.set_state_dict(dynamic.state_dict())
    compiled = paddle.jit.to_static(static)
    x = paddle.to_tensor(X.astype("float32"))
    y = paddle.to_tensor(Y.reshape(-1, 1))
    for _ in range(2):
        np.testing.assert_allclose(compiled(x, y).numpy(), dynamic(x, y).numpy(), rtol=1e-5, atol=1e-5)
    if name == "AdaMargin":
        np.testing.assert_allclose(static.batch_std.numpy(), dynamic.batch_std.numpy(), rtol=1e-6)
