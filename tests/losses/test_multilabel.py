"""MultiLabelLoss, MultiLabelAsymmetricLoss and ratio2weight: golden parity, NumPy references, gradients,
input validation and the scoped (not global) gradient stop of ASL."""
import numpy as np
import paddle
import pytest

import paddle_losses as pl
from golden import case, cases
from gradcheck import assert_gradcheck
from losses.other_case_replay import replay
from paddle_losses.errors import InputError
from paddle_losses.functional.multilabel import ratio2weight
from paddle_losses.losses.multilabel import MultiLabelAsymmetricLoss, MultiLabelLoss

GOLDEN = [c for c in cases("other", "MultiLabel*.npz")]


@pytest.mark.parametrize("golden_case", GOLDEN, ids=lambda c: c.name)
def test_golden_replay_outputs_and_gradients(golden_case):
    cls = pl.get_loss(golden_case.meta["class"])
    replay(golden_case, cls(**golden_case.params))


def test_golden_cases_cover_both_classes():
    assert {c.meta["class"] for c in GOLDEN} == {"MultiLabelLoss", "MultiLabelAsymmetricLoss"}
    assert len(GOLDEN) == 5


# ---------------------------------------------------------------- NumPy references (float64)

def _bce(x, y):
    return np.maximum(x, 0) - x * y + np.log1p(np.exp(-np.abs(x)))


def _np_ratio2weight(t, r):
    w = np.exp(t * (1 - r) + (1 - t) * r)
    return w - w * (t > 1)


def _np_multilabel(x, target, epsilon=None, size_sum=False, weight_ratio=False):
    c = x.shape[1]
    ratio = None
    if weight_ratio:
        y, ratio = target[:, 0, :], target[:, 1, :]
    elif target.ndim == 3:
        y = target[:, 0, :]
    else:
        y = target
    if epsilon is not None:
        if y.ndim == 1 or y.shape[-1] != c:
            y = np.eye(c)[y.reshape(-1)]
        y = (1 - epsilon) * y + epsilon / c
    cost = _bce(x, y)
    if weight_ratio:
        cost = cost * _np_ratio2weight((y > 0.5).astype(float), ratio) * (y > -1)
    return cost.sum(1).mean() if size_sum else cost.mean()


def _np_asl(x, t, gamma_pos=1, gamma_neg=4, clip=0.05, eps=1e-8, reduction="sum"):
    p = 1 / (1 + np.exp(-x))
    p_neg = np.minimum(1 - p + clip, 1) if clip and clip > 0 else 1 - p
    pt = p_neg * (1 - t) + p * t
    w = (1 - pt) ** (gamma_pos * t + gamma_neg * (1 - t))
    loss = -np.log(np.maximum(pt, eps)) * w
    return {"mean": loss.mean(), "sum": loss.sum(), "none": loss}[reduction]


def _rng_inputs(seed, n=5, c=7):
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 2, (n, c))
    labels = rng.choice([-1.0, 0.0, 1.0], size=(n, c), p=[0.2, 0.5, 0.3])
    ratio = rng.uniform(0.05, 0.95, (n, c))
    return x, labels, ratio


@pytest.mark.parametrize("params", [
    {}, {"size_sum": True}, {"epsilon": 0.2}, {"weight_ratio": True},
    {"weight_ratio": True, "epsilon": 0.1, "size_sum": True},
])
def test_multilabel_loss_matches_float64_numpy_reference(params):
    x, labels, ratio = _rng_inputs(1)
    target = np.stack([labels, ratio], axis=1) if params.get("weight_ratio") else np.clip(labels, 0, 1)
    got = MultiLabelLoss(**params)(paddle.to_tensor(x), paddle.to_tensor(target))["MultiLabelLoss"]
    np.testing.assert_allclose(got.numpy(), _np_multilabel(x, target, **params), rtol=1e-12)


def test_multilabel_loss_with_epsilon_one_hot_encodes_class_ids():
    x, _, _ = _rng_inputs(2)
    ids = np.array([[0], [3], [6], [2], [2]], dtype=np.int64)
    got = MultiLabelLoss(epsilon=0.1)(paddle.to_tensor(x), paddle.to_tensor(ids))["MultiLabelLoss"]
    np.testing.assert_allclose(got.numpy(), _np_multilabel(x, ids, epsilon=0.1), rtol=1e-12)


def test_multilabel_loss_uses_row_zero_of_a_3d_target_without_weight_ratio():
    x, labels, ratio = _rng_inputs(3)
    target = np.stack([np.clip(labels, 0, 1), ratio], axis=1)
    got = MultiLabelLoss()(paddle.to_tensor(x), paddle.to_tensor(target))["MultiLabelLoss"]
    np.testing.assert_allclose(got.numpy(), _bce(x, np.clip(labels, 0, 1)).mean(), rtol=1e-12)


def test_weight_ratio_ignores_minus_one_labels_without_epsilon():
    x, labels, ratio = _rng_inputs(4)
    target = paddle.to_tensor(np.stack([labels, ratio], axis=1))
    xt = paddle.to_tensor(x, stop_gradient=False)
    MultiLabelLoss(weight_ratio=True)(xt, target)["MultiLabelLoss"].backward()
    grad = xt.grad.numpy()
    assert np.all(grad[labels == -1] == 0) and np.all(grad[labels != -1] != 0)


@pytest.mark.parametrize("epsilon", [0, 1, 1.5, -0.2])
def test_epsilon_outside_open_unit_interval_turns_smoothing_off(epsilon):
    x, labels, _ = _rng_inputs(5)
    y = paddle.to_tensor(np.clip(labels, 0, 1))
    off = MultiLabelLoss()(paddle.to_tensor(x), y)["MultiLabelLoss"]
    assert MultiLabelLoss(epsilon=epsilon).epsilon is None
    np.testing.assert_allclose(MultiLabelLoss(epsilon=epsilon)(paddle.to_tensor(x), y)["MultiLabelLoss"].numpy(),
                               off.numpy())


def test_integer_multi_hot_target_equals_float_target():
    x, labels, _ = _rng_inputs(6)
    y = np.clip(labels, 0, 1)
    as_float = MultiLabelLoss()(paddle.to_tensor(x), paddle.to_tensor(y))["MultiLabelLoss"]
    as_int = MultiLabelLoss()(paddle.to_tensor(x), paddle.to_tensor(y.astype(np.int64)))["MultiLabelLoss"]
    np.testing.assert_allclose(as_int.numpy(), as_float.numpy(), rtol=1e-12)


def test_multilabel_loss_target_receives_no_gradient():
    x, labels, ratio = _rng_inputs(7)
    target = paddle.to_tensor(np.stack([labels, ratio], axis=1), stop_gradient=False)
    MultiLabelLoss(weight_ratio=True, epsilon=0.1)(paddle.to_tensor(x), target)["MultiLabelLoss"].backward()
    assert target.grad is None or not np.any(target.grad.numpy())


@pytest.mark.parametrize("params", [{}, {"weight_ratio": True, "size_sum": True}, {"epsilon": 0.3}])
def test_multilabel_loss_gradient_matches_finite_differences(params):
    x, labels, ratio = _rng_inputs(8)
    target = np.stack([labels, ratio], axis=1) if params.get("weight_ratio") else np.clip(labels, 0, 1)
    loss = MultiLabelLoss(**params)
    assert_gradcheck(lambda xt, tt: loss(xt, tt)["MultiLabelLoss"], [x, target], index=0)


@pytest.mark.parametrize("params", [
    {}, {"reduction": "mean"}, {"clip": 0, "gamma_pos": 0, "gamma_neg": 2}, {"clip": None},
    {"gamma_pos": 2.5, "gamma_neg": 1.5, "clip": 0.2, "disable_focal_loss_grad": False},
])
def test_asymmetric_loss_matches_float64_numpy_reference(params):
    x, labels, _ = _rng_inputs(9)
    t = np.clip(labels, 0, 1)
    got = MultiLabelAsymmetricLoss(**params)(paddle.to_tensor(x), paddle.to_tensor(t))
    kw = {k: v for k, v in params.items() if k != "disable_focal_loss_grad"}
    np.testing.assert_allclose(got["MultiLabelAsymmetricLoss"].numpy(), _np_asl(x, t, **kw), rtol=1e-12)


def test_asymmetric_loss_reduction_none_is_elementwise():
    x, labels, _ = _rng_inputs(10)
    t = np.clip(labels, 0, 1)
    got = MultiLabelAsymmetricLoss(reduction="none")(paddle.to_tensor(x), paddle.to_tensor(t))
    np.testing.assert_allclose(got["MultiLabelAsymmetricLoss"].numpy(), _np_asl(x, t, reduction="none"),
                               rtol=1e-12)


def test_asymmetric_loss_full_gradient_matches_finite_differences():
    x, labels, _ = _rng_inputs(11)
    t = np.clip(labels, 0, 1)
    loss = MultiLabelAsymmetricLoss(clip=0.05, disable_focal_loss_grad=False)
    # x away from the clip hinge 1 - p + clip = 1, i.e. p = clip
    x = np.where(np.abs(1 / (1 + np.exp(-x)) - 0.05) < 0.02, x + 1.0, x)
    assert_gradcheck(lambda xt, tt: loss(xt, tt)["MultiLabelAsymmetricLoss"], [x, t], index=0)
    # w.r.t. a soft target only without the clip: where the clip saturates, pt = 1 and the exponent's
    # derivative log(1 - pt) is -inf (NaN gradient, as in PaddleClas -- targets never require gradients).
    no_clip = MultiLabelAsymmetricLoss(clip=0, disable_focal_loss_grad=False)
    soft_t = np.clip(t, 0.1, 0.8)
    assert_gradcheck(lambda xt, tt: no_clip(xt, tt)["MultiLabelAsymmetricLoss"], [x, soft_t], index=1)


def test_asymmetric_loss_with_disabled_focal_grad_holds_the_weight_constant():
    x, labels, _ = _rng_inputs(12)
    t = np.clip(labels, 0, 1)
    p = 1 / (1 + np.exp(-x))
    pt = np.minimum(1 - p + 0.05, 1) * (1 - t) + p * t
    w = (1 - pt) ** (1 * t + 4 * (1 - t))
    # d(-log pt)/dx: positives -(1 - p); negatives p(1 - p)/pt inside the clip, 0 where it saturates
    dlog = np.where(t == 1, -(1 - p), np.where(1 - p + 0.05 < 1, p * (1 - p) / pt, 0.0))
    xt = paddle.to_tensor(x, stop_gradient=False)
    MultiLabelAsymmetricLoss()(xt, paddle.to_tensor(t))["MultiLabelAsymmetricLoss"].backward()
    np.testing.assert_allclose(xt.grad.numpy(), w * dlog, rtol=1e-10, atol=1e-14)


def test_asymmetric_loss_leaves_autograd_enabled_for_everything_else():
    x, labels, _ = _rng_inputs(13)
    MultiLabelAsymmetricLoss()(paddle.to_tensor(x), paddle.to_tensor(np.clip(labels, 0, 1)))
    assert paddle.is_grad_enabled()
    a = paddle.to_tensor([1.0, 2.0], stop_gradient=False)
    (a * a).sum().backward()
    np.testing.assert_allclose(a.grad.numpy(), [2.0, 4.0])


def test_asymmetric_loss_inside_no_grad_does_not_switch_autograd_back_on():
    x, labels, _ = _rng_inputs(14)
    with paddle.no_grad():
        MultiLabelAsymmetricLoss()(paddle.to_tensor(x), paddle.to_tensor(np.clip(labels, 0, 1)))
        assert not paddle.is_grad_enabled()
    assert paddle.is_grad_enabled()


def test_asymmetric_loss_rejects_unknown_reduction():
    with pytest.raises(ValueError, match="reduction"):
        MultiLabelAsymmetricLoss(reduction="avg")


# ---------------------------------------------------------------- ratio2weight

def test_ratio2weight_formula_and_zeroing_above_one():
    t = paddle.to_tensor([[0.0, 1.0, 2.0]])
    r = paddle.to_tensor([[0.2, 0.2, 0.2]])
    np.testing.assert_allclose(ratio2weight(t, r).numpy(), [[np.exp(0.2), np.exp(0.8), 0.0]], rtol=1e-6)


def test_ratio2weight_accepts_bool_targets():
    r = paddle.to_tensor([[0.3, 0.6]])
    w_bool = ratio2weight(paddle.to_tensor([[True, False]]), r)
    w_float = ratio2weight(paddle.to_tensor([[1.0, 0.0]]), r)
    np.testing.assert_allclose(w_bool.numpy(), w_float.numpy())


# ---------------------------------------------------------------- input validation

def test_target_shape_must_match_logits():
    x = paddle.randn([4, 5])
    with pytest.raises(InputError, match=r"logits' shape \[N, C\] = \[4, 5\]"):
        MultiLabelLoss()(x, paddle.zeros([4, 6]))
    with pytest.raises(InputError, match=r"logits' shape \[4, 5\]"):
        MultiLabelAsymmetricLoss()(x, paddle.zeros([4, 6]))


def test_weight_ratio_needs_labels_and_ratios():
    with pytest.raises(InputError, match=r"\[N, 2, C\]"):
        MultiLabelLoss(weight_ratio=True)(paddle.randn([4, 5]), paddle.zeros([4, 5]))


def test_integer_class_ids_without_epsilon_are_rejected():
    with pytest.raises(InputError, match="set epsilon"):
        MultiLabelLoss()(paddle.randn([4, 5]), paddle.to_tensor([[0], [1], [2], [3]]))


def test_float_class_ids_with_epsilon_are_rejected():
    with pytest.raises(InputError, match="must be integers"):
        MultiLabelLoss(epsilon=0.1)(paddle.randn([4, 5]), paddle.to_tensor([[0.0], [1.0], [2.0], [3.0]]))


def test_missing_logits_key_lists_present_keys():
    with pytest.raises(InputError, match="features"):
        MultiLabelLoss()({"features": paddle.randn([4, 5])}, paddle.zeros([4, 5]))


def test_nan_logits_and_empty_batch_are_rejected():
    with pytest.raises(InputError, match="NaN"):
        MultiLabelAsymmetricLoss()(paddle.to_tensor([[float("nan"), 0.0]]), paddle.zeros([1, 2]))
    with pytest.raises(InputError, match="empty batch"):
        MultiLabelLoss()(paddle.zeros([0, 3]), paddle.zeros([0, 3]))


def test_logits_taken_from_model_output_dict():
    x, labels, _ = _rng_inputs(15)
    y = paddle.to_tensor(np.clip(labels, 0, 1))
    bare = MultiLabelLoss()(paddle.to_tensor(x), y)["MultiLabelLoss"]
    from_dict = MultiLabelLoss()({"logits": paddle.to_tensor(x), "features": None}, y)["MultiLabelLoss"]
    np.testing.assert_allclose(from_dict.numpy(), bare.numpy())


# ---------------------------------------------------------------- config and static graph

def test_built_from_config_with_paddleclas_parameters():
    loss = pl.build_loss([{"MultiLabelLoss": {"weight": 1.0, "size_sum": True, "weight_ratio": True}},
                          {"MultiLabelAsymmetricLoss": {"weight": 0.5, "gamma_neg": 3, "reduction": "mean"}}])
    assert [type(f).__name__ for f in loss.loss_func] == ["MultiLabelLoss", "MultiLabelAsymmetricLoss"]
    assert loss.loss_func[0].weight_ratio and loss.loss_func[1].gamma_neg == 3


def test_losses_run_under_to_static():
    c = case("other", "MultiLabelLoss_ratio_eps_sizesum")
    layer = MultiLabelLoss(**c.params)

    def bce(x, t):
        return layer(x, t)["MultiLabelLoss"]

    x = paddle.to_tensor(c["arg.x"], stop_gradient=False)
    out = paddle.jit.to_static(bce)(x, paddle.to_tensor(c["arg.target"]))
    out.backward()
    np.testing.assert_allclose(out.numpy(), c["out.MultiLabelLoss"], rtol=1e-5)
    np.testing.assert_allclose(x.grad.numpy(), c["grad.x"], rtol=1e-5, atol=1e-5)

    c2 = case("other", "MultiLabelAsymmetricLoss_default")
    asl = MultiLabelAsymmetricLoss(**c2.params)

    def asymmetric(x, t):
        return asl(x, t)["MultiLabelAsymmetricLoss"]

    x2 = paddle.to_tensor(c2["arg.x"], stop_gradient=False)
    out2 = paddle.jit.to_static(asymmetric)(x2, paddle.to_tensor(c2["arg.target"]))
    out2.backward()
    np.testing.assert_allclose(out2.numpy(), c2["out.MultiLabelAsymmetricLoss"], rtol=1e-5)
    np.testing.assert_allclose(x2.grad.numpy(), c2["grad.x"], rtol=1e-5, atol=1e-5)
