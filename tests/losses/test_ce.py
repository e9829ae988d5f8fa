"""CELoss, MixCELoss, GoogLeNetLoss: golden parity (metric and other layouts), float64 NumPy references,
finite-difference gradients, the N == C label fix and input validation."""
import numpy as np
import paddle
import pytest

import paddle_losses as pl
from golden import assert_close, case, cases, tensor
from gradcheck import assert_gradcheck
from losses.other_case_replay import replay
from paddle_losses.errors import InputError
from paddle_losses.losses.ce import CELoss, GoogLeNetLoss, MixCELoss

METRIC_CE = cases("metric", "CELoss__*.npz")
OTHER_CE = cases("other", "CELoss_*.npz")


def np_log_softmax(x):
    z = x - x.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def np_softmax(x):
    return np.exp(np_log_softmax(x))


def np_reduce(rows, reduction):
    return {"mean": rows.mean(), "sum": rows.sum(), "none": rows}[reduction]


def f64(a):
    return paddle.to_tensor(np.asarray(a, dtype=np.float64))


# ---------------------------------------------------------------- golden parity

@pytest.mark.parametrize("golden_case", METRIC_CE, ids=lambda c: c.name)
def test_golden_metric_celoss_outputs_and_gradients(golden_case):
    c = golden_case
    inputs = {k: tensor(v, grad=True) for k, v in c.with_prefix("input__").items()}
    arg = inputs["x"] if "x" in inputs else inputs
    out = CELoss(**c.params)(arg, tensor(c["label"], grad=False))
    assert list(out) == ["CELoss"]
    assert_close(out["CELoss"], c["out__CELoss"], f"{c.name}: out")
    assert list(out["CELoss"].shape) == list(c["out__CELoss"].shape), "reduction='none' shape must match"
    cot = c.arrays.get("cotangent__CELoss")
    (out["CELoss"] * tensor(cot) if cot is not None else out["CELoss"]).sum().backward()
    for k, t in inputs.items():
        assert_close(t.grad, c[f"grad__{k}"], f"{c.name}: grad {k}")


@pytest.mark.parametrize("golden_case", OTHER_CE, ids=lambda c: c.name)
def test_golden_other_celoss_outputs_and_gradients(golden_case):
    replay(golden_case, pl.get_loss("CELoss")(**golden_case.params))


def test_golden_googlenet_loss_key_value_and_gradients():
    c = case("metric", "GoogLeNetLoss__basic")
    xs = [tensor(c[f"input__x{i}"], grad=True) for i in range(3)]
    out = GoogLeNetLoss()(xs, tensor(c["label"]))
    assert list(out) == ["GooleNetLoss"]  # PaddleClas's misspelt key is kept
    assert_close(out["GooleNetLoss"], c["out__GooleNetLoss"], "GooleNetLoss")
    out["GooleNetLoss"].backward()
    for i, x in enumerate(xs):
        assert_close(x.grad, c[f"grad__x{i}"], f"grad x{i}")


def test_golden_case_counts():
    assert len(METRIC_CE) == 9 and len(OTHER_CE) == 4


# ---------------------------------------------------------------- float64 NumPy references

RNG = np.random.default_rng(7)
X = RNG.normal(size=(6, 4)) * 2
Y = np.array([0, 3, 1, 1, 2, 0])


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_hard_label_matches_numpy(reduction):
    rows = -np_log_softmax(X)[np.arange(6), Y]
    out = CELoss(reduction=reduction)(f64(X), paddle.to_tensor(Y))["CELoss"]
    np.testing.assert_allclose(out.numpy(), np_reduce(rows, reduction), rtol=1e-12)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_label_smoothing_matches_numpy(reduction):
    eps = 0.15
    target = (1 - eps) * np.eye(4)[Y] + eps / 4
    rows = -(target * np_log_softmax(X)).sum(-1)
    out = CELoss(reduction=reduction, epsilon=eps)(f64(X), paddle.to_tensor(Y.reshape(-1, 1)))["CELoss"]
    assert list(out.shape) == ([6] if reduction == "none" else [])
    np.testing.assert_allclose(out.numpy(), np_reduce(rows, reduction), rtol=1e-12)


def test_soft_label_without_epsilon_is_softmaxed_again():
    soft = RNG.dirichlet(np.ones(4), size=6)
    quirk = -(np_softmax(soft) * np_log_softmax(X)).sum(-1).mean()
    textbook = -(soft * np_log_softmax(X)).sum(-1).mean()
    out = float(CELoss()(f64(X), f64(soft))["CELoss"])
    np.testing.assert_allclose(out, quirk, rtol=1e-12)
    assert abs(out - textbook) > 1e-3


def test_soft_label_none_reduction_is_column_and_label_gets_no_gradient():
    soft = f64(RNG.dirichlet(np.ones(4), size=6))
    soft.stop_gradient = False
    out = CELoss(reduction="none")(f64(X), soft)["CELoss"]
    assert list(out.shape) == [6, 1]
    out.sum().backward()
    assert soft.grad is None or not np.any(soft.grad.numpy())


def test_soft_label_with_epsilon_is_smoothed_as_given():
    soft = RNG.dirichlet(np.ones(4), size=6)
    target = 0.9 * soft + 0.1 / 4
    out = float(CELoss(epsilon=0.1)(f64(X), f64(soft))["CELoss"])
    np.testing.assert_allclose(out, -(target * np_log_softmax(X)).sum(-1).mean(), rtol=1e-12)


def test_ignore_index_contributes_zero_and_mean_divides_by_full_batch():
    y = Y.copy()
    y[[1, 4]] = -100
    keep = y != -100
    rows = np.where(keep, -np_log_softmax(X)[np.arange(6), np.where(keep, y, 0)], 0.0)
    out = float(CELoss()(f64(X), paddle.to_tensor(y))["CELoss"])
    np.testing.assert_allclose(out, rows.sum() / 6, rtol=1e-12)


@pytest.mark.parametrize("eps", [0, 1, 1.5, -0.2])
def test_epsilon_outside_open_unit_interval_turns_smoothing_off(eps):
    assert CELoss(epsilon=eps).epsilon is None
    a = float(CELoss(epsilon=eps)(f64(X), paddle.to_tensor(Y))["CELoss"])
    b = float(CELoss()(f64(X), paddle.to_tensor(Y))["CELoss"])
    assert a == b


def test_googlenet_matches_numpy_weighted_sum():
    xs = [RNG.normal(size=(6, 4)) for _ in range(3)]
    ce = [-np_log_softmax(x)[np.arange(6), Y].mean() for x in xs]
    out = float(GoogLeNetLoss()([f64(x) for x in xs], paddle.to_tensor(Y))["GooleNetLoss"])
    np.testing.assert_allclose(out, ce[0] + 0.3 * ce[1] + 0.3 * ce[2], rtol=1e-12)


# ---------------------------------------------------------------- gradients (finite differences)

def test_hard_label_gradient_matches_finite_differences():
    assert_gradcheck(lambda x: CELoss()(x, paddle.to_tensor(Y))["CELoss"], [X])


def test_label_smoothing_gradient_matches_finite_differences():
    assert_gradcheck(lambda x: CELoss(epsilon=0.1)(x, paddle.to_tensor(Y))["CELoss"], [X])


def test_soft_label_with_epsilon_gradient_reaches_logits_and_label():
    soft = RNG.dirichlet(np.ones(4), size=6)
    fn = lambda x, t: CELoss(epsilon=0.1)(x, t)["CELoss"]  # noqa: E731
    assert_gradcheck(fn, [X, soft], index=0)
    assert_gradcheck(fn, [X, soft], index=1)


def test_googlenet_gradient_matches_finite_differences():
    xs = [RNG.normal(size=(6, 4)) for _ in range(3)]
    fn = lambda a, b, c: GoogLeNetLoss()([a, b, c], paddle.to_tensor(Y))["GooleNetLoss"]  # noqa: E731
    for i in range(3):
        assert_gradcheck(fn, xs, index=i)


# ---------------------------------------------------------------- divergence: integer labels are class ids

def test_one_dimensional_label_with_n_equal_c_is_treated_as_class_ids():
    x = RNG.normal(size=(4, 4))
    y = np.array([2, 0, 3, 1])  # PaddleClas takes this for a soft label and crashes in softmax
    out = float(CELoss()(f64(x), paddle.to_tensor(y))["CELoss"])
    np.testing.assert_allclose(out, -np_log_softmax(x)[np.arange(4), y].mean(), rtol=1e-12)
    out_ls = float(CELoss(epsilon=0.1)(f64(x), paddle.to_tensor(y))["CELoss"])
    target = 0.9 * np.eye(4)[y] + 0.1 / 4
    np.testing.assert_allclose(out_ls, -(target * np_log_softmax(x)).sum(-1).mean(), rtol=1e-12)


# ---------------------------------------------------------------- constructor, registry, bad input

def test_invalid_reduction_is_rejected():
    with pytest.raises(ValueError, match="reduction"):
        CELoss(reduction="avg")


def test_registry_and_config_build_celoss():
    assert pl.get_loss("CELoss") is CELoss and pl.get_loss("GoogLeNetLoss") is GoogLeNetLoss
    loss = pl.build_loss([{"CELoss": {"weight": 1.0, "epsilon": 0.1}}])
    out = loss({"logits": f64(X)}, paddle.to_tensor(Y.reshape(-1, 1)))
    assert set(out) == {"CELoss", "loss"}


def test_mixceloss_cannot_be_built():
    with pytest.raises(DeprecationWarning, match="CELoss"):
        MixCELoss()
    with pytest.raises(pl.ConfigError, match=r'^Loss.Train\[0\].MixCELoss: "MixCELoss" is deprecated'):
        pl.build_loss([{"MixCELoss": {"weight": 1.0}}])


def test_googlenet_rejects_label_smoothing():
    with pytest.raises(ValueError, match="label smoothing"):
        GoogLeNetLoss(epsilon=0.1)
    GoogLeNetLoss(epsilon=0.0)


@pytest.mark.parametrize("logits,label,match", [
    (paddle.zeros([6]), paddle.zeros([6], "int64"), r"shape \[N, D\]"),
    (paddle.zeros([6, 4]), paddle.zeros([5], "int64"), "5 entries but the batch has 6"),
    (paddle.zeros([0, 4]), paddle.zeros([0], "int64"), "empty batch"),
    (paddle.full([6, 4], float("nan")), paddle.zeros([6], "int64"), "NaN"),
    (paddle.zeros([6, 4]), paddle.zeros([6, 3]), r"soft label and must have shape \[N, C\]"),
    (paddle.zeros([6, 4]), paddle.full([6], 4, "int64"), "outside 0..3"),
])
@pytest.mark.parametrize("epsilon", [None, 0.1])
def test_bad_input_raises_input_error(logits, label, match, epsilon):
    with pytest.raises(InputError, match=match):
        CELoss(epsilon=epsilon)(logits, label)


def test_class_ids_beyond_the_class_axis_name_both_sizes_with_smoothing():
    with pytest.raises(InputError, match=r"outside 0\.\.3: \[7\] \(logits have 4 classes\)"):
        CELoss(epsilon=0.1)(paddle.zeros([2, 4]), paddle.full([2], 7, "int64"))


def test_missing_logits_key_lists_present_keys():
    with pytest.raises(InputError, match=r"'features'"):
        CELoss()({"features": paddle.zeros([6, 4])}, paddle.zeros([6], "int64"))


def test_out_of_range_label_with_smoothing_is_rejected_even_minus_100():
    with pytest.raises(InputError, match="outside"):
        CELoss(epsilon=0.1)(paddle.zeros([6, 4]), paddle.full([6], -100, "int64"))


def test_googlenet_needs_three_outputs_of_equal_shape():
    with pytest.raises(InputError, match="3 outputs"):
        GoogLeNetLoss()([paddle.zeros([6, 4])] * 2, paddle.zeros([6], "int64"))
    with pytest.raises(InputError, match="output 1"):
        GoogLeNetLoss()([paddle.zeros([6, 4]), paddle.zeros([6, 5]), paddle.zeros([6, 4])],
                        paddle.zeros([6], "int64"))


def test_celoss_runs_under_to_static():
    loss = CELoss(epsilon=0.1)

    def compute(x, y):
        return loss({"logits": x}, y)["CELoss"]

    y = paddle.to_tensor(Y.reshape(-1, 1))
    grads = []
    for fn in (compute, paddle.jit.to_static(compute)):
        x = paddle.to_tensor(X.astype("float32"), stop_gradient=False)
        out = fn(x, y)
        out.backward()
        grads.append((float(out), x.grad.numpy()))
    np.testing.assert_allclose(grads[1][0], grads[0][0], rtol=1e-6)
    np.testing.assert_allclose(grads[1][1], grads[0][1], rtol=1e-6, atol=1e-7)
