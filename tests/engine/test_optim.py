"""Optimizer scopes (incl. ``scope: CenterLoss``), regularizers and the LR schedules with warm-up."""
import math

import numpy as np
import paddle
import pytest

from paddle_losses import build_loss
from paddle_losses.engine.model import build_model
from paddle_losses.engine.optim import build_lr, build_optimizer, select_scope
from paddle_losses.errors import ConfigError

ARCH = {"name": "RecModel", "Backbone": {"name": "DigitsMLP", "hidden": 8, "out_dim": 6},
        "Neck": {"name": "FC", "embedding_size": 6, "class_num": 4},
        "Head": {"name": "FC", "embedding_size": 4, "class_num": 3}}


def model_and_loss():
    model = build_model(ARCH)
    loss = build_loss([{"CELoss": {"weight": 1.0}},
                       {"CenterLoss": {"weight": 0.0005, "num_classes": 3, "feat_dim": 4}}])
    return model, loss


def ids(params):
    return {id(p) for p in params}


def opt_params(opt):
    return ids(opt._parameter_list)


def test_dict_form_optimises_model_and_loss_parameters():
    model, loss = model_and_loss()
    opts, scheds = build_optimizer({"name": "Momentum", "momentum": 0.9, "lr": {"name": "ConstLR",
                                    "learning_rate": 0.1}}, 2, 5, model, loss)
    assert len(opts) == 1 and type(scheds[0]).__name__ == "Constant"
    assert opt_params(opts[0]) == ids(model.parameters()) | ids(loss.parameters())
    assert ids(loss.parameters())  # the CenterLoss centers are trainable


def test_list_form_scopes_split_model_and_center_loss():
    model, loss = model_and_loss()
    cfg = [{"Adam": {"scope": "RecModel", "lr": {"name": "ConstLR", "learning_rate": 0.001}}},
           {"SGD": {"scope": "CenterLoss", "lr": {"name": "ConstLR", "learning_rate": 1000.0}}}]
    (adam, sgd), _ = build_optimizer(cfg, 2, 5, model, loss)
    assert opt_params(adam) == ids(model.parameters())
    centers = [p for n, p in loss.named_parameters() if n.endswith("centers")]
    assert opt_params(sgd) == ids(centers) and len(centers) == 1


def test_attribute_and_regex_scopes():
    model, loss = model_and_loss()
    assert ids(p for _, p in select_scope("neck", model, loss)) == ids(model.neck.parameters())
    by_regex = ids(p for _, p in select_scope("(neck|head).*", model, loss))
    assert by_regex == ids(model.neck.parameters()) | ids(model.head.parameters())


def test_scope_without_parameters_is_skipped_and_none_left_is_an_error():
    model, loss = model_and_loss()
    with pytest.warns(Warning, match="selects no trainable"):
        opts, _ = build_optimizer([{"SGD": {"scope": "TripletLossV2", "lr": 0.1}},
                                   {"SGD": {"scope": "all", "lr": 0.1}}], 1, 1, model, loss)
    assert len(opts) == 1
    with pytest.raises(ConfigError, match="no entry"), pytest.warns(Warning):
        build_optimizer([{"SGD": {"scope": "TripletLossV2", "lr": 0.1}}], 1, 1, model, loss)


def lrs(sched, n):
    out = []
    for _ in range(n):
        out.append(sched.last_lr)
        sched.step()
    return np.array(out)


def test_cosine_with_warmup_counts_iterations():
    s = build_lr({"name": "Cosine", "learning_rate": 0.1, "warmup_epoch": 1, "warmup_start_lr": 0.0}, 3, 4)
    assert type(s).__name__ == "LinearWarmup" and not s.by_epoch
    seq = lrs(s, 12)
    np.testing.assert_allclose(seq[:4], [0.0, 0.025, 0.05, 0.075])
    t_max = 8
    np.testing.assert_allclose(seq[4:], [0.05 * (1 + math.cos(math.pi * i / t_max)) for i in range(8)], rtol=1e-6)


def test_piecewise_by_epoch_and_default_values():
    s = build_lr({"name": "Piecewise", "learning_rate": 0.1, "decay_epochs": [2], "values": [0.1, 0.01],
                  "by_epoch": True}, 4, 100)
    assert s.by_epoch
    np.testing.assert_allclose(lrs(s, 4), [0.1, 0.1, 0.01, 0.01])
    s = build_lr({"name": "Piecewise", "learning_rate": 0.1}, 70, 1)  # x0.1 every 30 epochs
    seq = lrs(s, 70)
    np.testing.assert_allclose(seq[[0, 29, 30, 60]], [0.1, 0.1, 0.01, 0.001], rtol=1e-6)


def test_multistep_step_linear_schedules():
    np.testing.assert_allclose(lrs(build_lr({"name": "MultiStepDecay", "learning_rate": 1.0, "milestones": [1, 2],
                                             "gamma": 0.5}, 3, 2), 6), [1, 1, 0.5, 0.5, 0.25, 0.25])
    np.testing.assert_allclose(lrs(build_lr({"name": "Step", "learning_rate": 1.0, "step_size": 1, "gamma": 0.1},
                                            3, 2), 4), [1, 1, 0.1, 0.1], rtol=1e-6)
    np.testing.assert_allclose(lrs(build_lr({"name": "Linear", "learning_rate": 1.0, "end_lr": 0.0}, 2, 2), 4),
                               [1, 0.75, 0.5, 0.25])


def test_last_epoch_zero_starts_one_step_in():
    a = build_lr({"name": "Cosine", "learning_rate": 0.1, "warmup_epoch": 2, "warmup_start_lr": 0.0}, 10, 4)
    b = build_lr({"name": "Cosine", "learning_rate": 0.1, "warmup_epoch": 2, "warmup_start_lr": 0.0,
                  "last_epoch": 0}, 10, 4)
    assert b.last_lr == pytest.approx(lrs(a, 2)[1])


def test_warmup_longer_than_training_is_clamped_with_a_warning():
    with pytest.warns(Warning, match="clamped"):
        s = build_lr({"name": "Cosine", "learning_rate": 0.1, "warmup_epoch": 5}, 2, 3)
    assert s.warmup_steps == 6


def test_reduce_on_plateau_steps_with_the_metric():
    s = build_lr({"name": "ReduceOnPlateau", "learning_rate": 0.1, "mode": "max", "patience": 0,
                  "factor": 0.5}, 3, 4)
    assert s.on_plateau and s.by_epoch
    s.step(0.5)
    s.step(0.4)
    assert s.last_lr == pytest.approx(0.05)


def test_lr_without_name_and_unknown_optimizer_are_config_errors():
    model, loss = model_and_loss()
    with pytest.raises(ConfigError, match=r"Optimizer.lr must be a mapping with a `name`"):
        build_optimizer({"name": "SGD", "lr": {"learning_rate": 0.1}}, 1, 1, model, loss)
    with pytest.raises(ConfigError, match="Optimizer.name: optimizer .Lion. is not registered.*Momentum"):
        build_optimizer({"name": "Lion", "lr": 0.1}, 1, 1, model, loss)


def test_regularizer_wins_over_weight_decay_and_one_dim_params_can_skip_decay():
    model, loss = model_and_loss()
    with pytest.warns(Warning, match="regularizer is used"):
        (opt,), _ = build_optimizer({"name": "Momentum", "lr": 0.1, "weight_decay": 0.1,
                                     "regularizer": {"name": "L2", "coeff": 0.5}}, 1, 1, model, None)
    assert opt._regularization_method == "l2_decay" and opt._regularization_coeff == 0.5
    (opt,), _ = build_optimizer({"name": "Momentum", "lr": 0.1, "one_dim_param_no_weight_decay": True,
                                 "regularizer": {"name": "L2", "coeff": 0.5}}, 1, 1, model, None)
    groups = opt._param_groups
    assert len(groups) == 2 and all(len(p.shape) == 1 for p in groups[1]["params"])


def test_l2_regularized_sgd_step_matches_the_formula():
    lin = paddle.nn.Linear(2, 1, bias_attr=False)
    w0 = lin.weight.numpy().copy()
    (opt,), _ = build_optimizer({"name": "SGD", "lr": 0.1, "regularizer": {"name": "L2", "coeff": 0.5}},
                                1, 1, lin, None)
    x = paddle.to_tensor([[1.0, 2.0]])
    lin(x).sum().backward()
    opt.step()
    np.testing.assert_allclose(lin.weight.numpy(), w0 - 0.1 * (np.array([[1.0], [2.0]]) + 0.5 * w0), rtol=1e-6)


def test_optimizer_and_schedule_parameter_typos_name_the_path():
    model, loss = model_and_loss()
    with pytest.raises(ConfigError, match=r"Optimizer\.momentun: .*Did you mean 'momentum'"):
        build_optimizer({"name": "Momentum", "momentun": 0.9, "lr": 0.1}, 1, 1, model, loss)
    with pytest.raises(ConfigError, match=r"Optimizer\.lr\.eta_mn: .*Did you mean 'eta_min'"):
        build_optimizer({"name": "Momentum", "lr": {"name": "Cosine", "learning_rate": 0.1, "eta_mn": 0.0}},
                        1, 1, model, loss)
    with pytest.raises(ConfigError, match=r"Optimizer\.lr: Step needs the parameter\(s\) step_size"):
        build_lr({"name": "Step", "learning_rate": 0.1}, 2, 2, "Optimizer.lr")
    with pytest.raises(ConfigError, match=r"Optimizer\.lr\.name: lr 'Cosin' is not registered.*'Cosine'"):
        build_lr({"name": "Cosin", "learning_rate": 0.1}, 2, 2, "Optimizer.lr")
