"""DMLLoss, KLDivLoss, DKDLoss, WSLLoss, SKDLoss, DISTLoss: golden parity, float64 references, gradients,
the DMLLoss gt_label fix and input validation."""
import numpy as np
import paddle
import pytest

import paddle_losses as pl
from gradcheck import assert_gradcheck, numeric_grad
from losses.distillation import reference as ref
from losses.distillation.replay import distill_case_names, load, replay
from paddle_losses.errors import ConfigError, InputError
from paddle_losses.losses.distillation.logit import (DISTLoss, DKDLoss, DMLLoss, KLDivLoss, SKDLoss,
                                                     WSLLoss)

LOGIT_CASES = distill_case_names(("DMLLoss_", "KLDivLoss", "DKDLoss_", "WSLLoss_", "SKDLoss_", "DISTLoss"))


def f64(*shape, seed=0, scale=2.0):
    return np.random.default_rng(seed).normal(size=shape) * scale


def t64(a, grad=False):
    t = paddle.to_tensor(np.asarray(a, dtype=np.float64))
    t.stop_gradient = not grad
    return t


def labels(n=6, c=10, seed=1):
    return np.random.default_rng(seed).integers(0, c, size=(n, 1))


def value(out):
    return float(next(iter(out.values()))) if isinstance(out, dict) else float(out)


def test_all_logit_golden_cases_are_collected():
    assert len(LOGIT_CASES) == 10


@pytest.mark.parametrize("name", LOGIT_CASES)
def test_golden_replay_outputs_and_gradients(name):
    golden = load(name)
    replay(golden, pl.get_loss(golden.meta["class"])(**golden.params))


# ---- float64 NumPy references on fresh inputs -------------------------------------------------------

@pytest.mark.parametrize("act,summed", [("softmax", False), ("sigmoid", True), (None, False)])
def test_dml_matches_reference(act, summed):
    x, t = f64(5, 7, seed=2), f64(5, 7, seed=3)
    if act is None:  # inputs are already probabilities
        x, t = ref.softmax(x), ref.softmax(t)
    out = DMLLoss(act=act, sum_across_class_dim=summed)(t64(x), t64(t))
    assert out.keys() == {"DMLLoss"}
    np.testing.assert_allclose(value(out), ref.dml(x, t, act, summed), rtol=1e-10)


def test_dml_sum_across_class_dim_is_c_times_the_mean():
    x, t = t64(f64(4, 9, seed=4)), t64(f64(4, 9, seed=5))
    mean = value(DMLLoss()(x, t))
    summed = value(DMLLoss(sum_across_class_dim=True)(x, t))
    np.testing.assert_allclose(summed, 9 * mean, rtol=1e-10)


def test_kldiv_matches_reference():
    s, t = f64(6, 8, seed=6), f64(6, 8, seed=7)
    np.testing.assert_allclose(value(KLDivLoss(3.0)(t64(s), t64(t))), ref.kldiv(s, t, 3.0), rtol=1e-10)


@pytest.mark.parametrize("with_labels,use_teacher", [(True, False), (False, False), (True, True)])
def test_dkd_matches_reference(with_labels, use_teacher):
    s, t, y = f64(6, 8, seed=8), f64(6, 8, seed=9), labels(6, 8)
    loss = DKDLoss(temperature=2.0, alpha=0.5, beta=4.0, use_target_as_gt=use_teacher)
    args = (t64(s), t64(t), paddle.to_tensor(y)) if with_labels else (t64(s), t64(t))
    expected = ref.dkd(s, t, y if with_labels else None, 2.0, 0.5, 4.0, use_teacher)
    np.testing.assert_allclose(value(loss(*args)), expected, rtol=1e-10)


def test_dkd_accepts_flat_labels_like_column_labels():
    s, t, y = t64(f64(6, 8, seed=8)), t64(f64(6, 8, seed=9)), labels(6, 8)
    loss = DKDLoss()
    assert value(loss(s, t, paddle.to_tensor(y))) == value(loss(s, t, paddle.to_tensor(y.reshape(-1))))


@pytest.mark.parametrize("with_labels", [True, False])
def test_wsl_matches_reference(with_labels):
    s, t, y = f64(6, 8, seed=10), f64(6, 8, seed=11), labels(6, 8)
    args = (t64(s), t64(t), paddle.to_tensor(y)) if with_labels else (t64(s), t64(t))
    np.testing.assert_allclose(value(WSLLoss(3.0)(*args)), ref.wsl(s, t, y if with_labels else None, 3.0),
                               rtol=1e-10)


def test_skd_matches_reference():
    s, t, y = f64(6, 8, seed=12), f64(6, 8, seed=13), labels(6, 8)
    out = SKDLoss(temperature=2.0, multiplier=3.0, alpha=0.7)(t64(s), t64(t), paddle.to_tensor(y))
    np.testing.assert_allclose(value(out), ref.skd(s, t, y, 2.0, 3.0, 0.7), rtol=1e-8)


def test_dist_matches_reference():
    s, t = f64(6, 8, seed=14), f64(6, 8, seed=15)
    np.testing.assert_allclose(value(DISTLoss(0.5, 2.0)(t64(s), t64(t))), ref.dist(s, t, 0.5, 2.0), rtol=1e-10)


# ---- float64 finite-difference gradients (teacher checked where PaddleClas lets a gradient through) ---

def scalar(loss):
    return lambda *ts: (lambda out: next(iter(out.values())) if isinstance(out, dict) else out)(loss(*ts))


@pytest.mark.parametrize("act", ["softmax", "sigmoid"])
def test_dml_gradients_reach_both_inputs(act):
    arrays = [f64(4, 5, seed=16), f64(4, 5, seed=17)]
    for index in (0, 1):
        assert_gradcheck(scalar(DMLLoss(act=act)), arrays, index)


def test_kldiv_student_gradient():
    assert_gradcheck(scalar(KLDivLoss(2.0)), [f64(4, 5, seed=18), f64(4, 5, seed=19)], 0)


def test_dkd_student_gradient():
    y = paddle.to_tensor(labels(4, 5))
    assert_gradcheck(lambda s, t: DKDLoss(2.0, 1.0, 3.0)(s, t, y), [f64(4, 5, seed=20), f64(4, 5, seed=21)], 0)


def test_teacher_gets_no_gradient_in_kldiv_and_dkd():
    s, t = t64(f64(4, 5, seed=22), grad=True), t64(f64(4, 5, seed=23), grad=True)
    (value_tensor := KLDivLoss()(s, t)["loss_kldiv"] + DKDLoss()(s, t)).backward()
    assert s.grad is not None and float(value_tensor) > 0
    assert t.grad is None or not np.any(t.grad.numpy())


def test_wsl_gradient_treats_the_weight_as_constant():
    s0, t0 = f64(4, 5, seed=24), f64(4, 5, seed=25)
    y = labels(4, 5)
    w = ref.wsl_weight(s0, t0, y)  # frozen at the evaluation point, as PaddleClas detaches it
    frozen = lambda s, t: ref.wsl(s.numpy(), t.numpy(), y, 2.0, weight=w)  # noqa: E731
    for index in (0, 1):
        ana = _analytic(lambda s, t: WSLLoss(2.0)(s, t, paddle.to_tensor(y)), [s0, t0], index)
        np.testing.assert_allclose(ana, numeric_grad(frozen, [s0, t0], index), rtol=1e-5, atol=1e-8)


def _analytic(fn, arrays, index):
    ts = [t64(a, grad=(i == index)) for i, a in enumerate(arrays)]
    fn(*ts).backward()
    return ts[index].grad.numpy()


def test_skd_gradients_reach_both_inputs():
    y = paddle.to_tensor(labels(4, 5))
    for index in (0, 1):
        assert_gradcheck(lambda s, t: SKDLoss(2.0)(s, t, y), [f64(4, 5, seed=26), f64(4, 5, seed=27)], index)


def test_dist_gradients_reach_both_inputs():
    for index in (0, 1):
        assert_gradcheck(DISTLoss(1.0, 2.0), [f64(5, 4, seed=28), f64(5, 4, seed=29)], index)


# ---- DMLLoss gt_label: PaddleClas raises TypeError (float * bool); we weight by the float mask --------

def _gt_label(n, c, seed=30):
    rng = np.random.default_rng(seed)
    g = rng.integers(0, 2, size=(n, c)).astype(np.float64)
    g[0, :2] = -1  # ignored attributes
    return np.stack([g, rng.uniform(0.05, 0.95, size=(n, c))], axis=1)


def test_dml_gt_label_is_weighted_as_intended_instead_of_raising():
    x, t, gt = f64(4, 6, seed=31), f64(4, 6, seed=32), _gt_label(4, 6)
    out = DMLLoss(act="sigmoid")(t64(x), t64(t), t64(gt))
    np.testing.assert_allclose(value(out), ref.dml(x, t, "sigmoid", gt_label=gt), rtol=1e-10)


def test_dml_gt_label_ignores_entries_labelled_minus_one():
    x, t, gt = f64(4, 6, seed=33), f64(4, 6, seed=34), _gt_label(4, 6)
    xs, ts = t64(x, grad=True), t64(t)
    DMLLoss(act="sigmoid")(xs, ts, t64(gt))["DMLLoss"].backward()
    assert not np.any(xs.grad.numpy()[0, :2])  # sigmoid keeps rows independent per entry
    assert np.all(xs.grad.numpy()[0, 2:] != 0)


def test_dml_gt_label_with_the_wrong_shape_is_an_input_error():
    x, t = t64(f64(4, 6)), t64(f64(4, 6, seed=1))
    with pytest.raises(InputError, match=r"gt_label must be a float tensor of shape \[N, 2, C\] = \[4, 2, 6\]"):
        DMLLoss()(x, t, t64(np.zeros((4, 6))))


# ---- validation --------------------------------------------------------------------------------------

PAIR_LOSSES = [DMLLoss(), KLDivLoss(), DKDLoss(), WSLLoss(), SKDLoss(1.0), DISTLoss()]


@pytest.mark.parametrize("loss", PAIR_LOSSES, ids=lambda l: type(l).__name__)
def test_mismatched_student_and_teacher_shapes_are_an_input_error(loss):
    with pytest.raises(InputError, match=r"must have the same shape, got student \[4, 6\] and teacher \[4, 7\]"):
        loss(t64(f64(4, 6)), t64(f64(4, 7)))


@pytest.mark.parametrize("loss", PAIR_LOSSES, ids=lambda l: type(l).__name__)
def test_nan_and_empty_inputs_are_input_errors(loss):
    bad = f64(4, 6)
    bad[1, 2] = np.nan
    with pytest.raises(InputError, match="NaN"):
        loss(t64(bad), t64(f64(4, 6)))
    with pytest.raises(InputError, match="empty batch"):
        loss(t64(np.zeros((0, 6))), t64(np.zeros((0, 6))))


@pytest.mark.parametrize("loss", [DKDLoss(), WSLLoss(), SKDLoss(1.0)], ids=lambda l: type(l).__name__)
def test_bad_targets_are_input_errors(loss):
    s, t = t64(f64(4, 6)), t64(f64(4, 6, seed=1))
    with pytest.raises(InputError, match="integer class ids"):
        loss(s, t, t64(np.zeros((4, 1))))
    with pytest.raises(InputError, match="3 entries but the batch has 4"):
        loss(s, t, paddle.to_tensor([[0], [1], [2]]))
    with pytest.raises(InputError, match=r"outside 0\.\.5"):
        loss(s, t, paddle.to_tensor([[0], [1], [6], [2]]))


def test_constructor_rejects_unknown_activation():
    with pytest.raises(ValueError, match="act must be 'softmax', 'sigmoid' or None"):
        DMLLoss(act="relu")


def test_skd_temperature_is_required_in_configs():
    with pytest.raises(ConfigError, match="needs the parameter"):
        pl.build_loss([{"SKDLoss": {"weight": 1.0}}])


@pytest.mark.parametrize("full_graph", [False, True])
def test_dkd_runs_under_to_static_with_the_same_value_and_gradient(full_graph):
    golden = load("DKDLoss_gt")
    s = paddle.to_tensor(golden["arg.logits_student"], stop_gradient=False)
    t = paddle.to_tensor(golden["arg.logits_teacher"])
    loss = paddle.jit.to_static(DKDLoss(**golden.params), full_graph=full_graph)
    out = loss(s, t, paddle.to_tensor(golden["arg.target"]))
    out.backward()
    np.testing.assert_allclose(float(out), golden["out"], rtol=1e-5)
    np.testing.assert_allclose(s.grad.numpy(), golden["grad.logits_student"], rtol=1e-5, atol=1e-5)
