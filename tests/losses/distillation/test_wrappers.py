"""The twelve Distillation* wrappers: golden parity, key naming, the PaddleClas crashes fixed
(expected_errors.json), bad input and config building."""
import json

import numpy as np
import paddle
import paddle.nn as nn
import pytest

import paddle_losses as pl
from golden import FIXTURES
from losses.distillation import reference as ref
from losses.distillation.replay import build_args, distill_case_names, load, replay
from paddle_losses.errors import ConfigError, ConfigWarning, InputError
from paddle_losses.losses.distillation.afd import AFDLoss
from paddle_losses.losses.distillation.wrappers import (DistillationDistanceLoss, DistillationDKDLoss,
                                                        DistillationDMLLoss, DistillationPairLoss,
                                                        DistillationRKDLoss)

WRAPPER_CASES = distill_case_names(("Distillation",))
WRAPPERS = ["DistillationCELoss", "DistillationGTCELoss", "DistillationDMLLoss", "DistillationDistanceLoss",
            "DistillationRKDLoss", "DistillationKLDivLoss", "DistillationDKDLoss", "DistillationWSLLoss",
            "DistillationSKDLoss", "DistillationMultiLabelLoss", "DistillationDISTLoss", "DistillationPairLoss"]


def build(golden):
    if golden.meta["seed_init"] is not None:
        paddle.seed(golden.meta["seed_init"])
    return pl.get_loss(golden.meta["class"])(**golden.params)


def models(n=4, c=5, d=3, seed=0, names=("Student", "Teacher")):
    rng = np.random.default_rng(seed)
    return {m: {"logits": paddle.to_tensor(rng.normal(size=(n, c)).astype("float32")),
                "feat": paddle.to_tensor(rng.normal(size=(n, d)).astype("float32"))} for m in names}


def labels(n=4, c=5, seed=1):
    return paddle.to_tensor(np.random.default_rng(seed).integers(0, c, size=(n, 1)))


def test_every_wrapper_is_registered_and_has_a_golden_case():
    assert set(pl.list_losses("Distillation*")) >= set(WRAPPERS)
    assert {load(n).meta["class"] for n in WRAPPER_CASES} == set(WRAPPERS)
    assert len(WRAPPER_CASES) == 17


@pytest.mark.parametrize("name", WRAPPER_CASES)
def test_golden_replay_outputs_keys_and_gradients(name):
    golden = load(name)
    loss = build(golden)
    assert list(loss.state_dict()) == golden.meta["state_dict_keys"]
    if golden.meta["seed_fwd"] is not None:
        paddle.seed(golden.meta["seed_fwd"])
    replay(golden, loss)


def test_pair_mgd_draws_the_recorded_mask_from_the_seeded_generator():
    golden = load("DistillationPairLoss_MGD")
    loss = build(golden)
    args, _ = build_args(golden)
    paddle.seed(golden.meta["seed_fwd"])
    loss(*args)
    np.testing.assert_array_equal(loss.loss_func.last_mask.numpy(), golden["aux.mgd_mask"])


def test_pair_parameters_are_checkpointed_under_paddleclas_names_inside_combined_loss():
    combined = pl.build_loss([
        {"DistillationGTCELoss": {"weight": 1.0, "model_names": ["Student"], "key": "logits"}},
        {"DistillationPairLoss": {"weight": 1.0, "base_loss_name": "MGDLoss", "model_name_pairs":
                                  [["Student", "Teacher"]], "s_key": "blocks[7]", "t_key": "blocks[15]",
                                  "name": "loss_mgd", "student_channels": 4, "teacher_channels": 4}}])
    assert list(combined.state_dict()) == [
        "loss_func.1.loss_func.generation.0.weight", "loss_func.1.loss_func.generation.0.bias",
        "loss_func.1.loss_func.generation.2.weight", "loss_func.1.loss_func.generation.2.bias"]


# ---- key naming ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("cls,params,keys", [
    ("DistillationCELoss", {"epsilon": 0.1}, ["CELoss_Student_Teacher", "CELoss_Teacher_Student"]),
    ("DistillationDMLLoss", {}, ["DMLLoss_Student_Teacher_0", "DMLLoss_Teacher_Student_1"]),
    ("DistillationKLDivLoss", {"name": "ignored"}, ["loss_kldiv_Student_Teacher", "loss_kldiv_Teacher_Student"]),
    ("DistillationDKDLoss", {"name": "dkd"}, ["dkd_Student_Teacher", "dkd_Teacher_Student"]),
    ("DistillationWSLLoss", {}, ["wsl_loss_Student_Teacher", "wsl_loss_Teacher_Student"]),
    ("DistillationSKDLoss", {"name": "s"}, ["s_Student_Teacher", "s_Teacher_Student"]),
    ("DistillationDISTLoss", {}, ["loss_dist_Student_Teacher", "loss_dist_Teacher_Student"]),
    ("DistillationDistanceLoss", {"mode": "smooth_l1", "name": "d_"},
     ["d_smooth_l1_loss_smooth_l1_0", "d_smooth_l1_loss_smooth_l1_1"]),
])
def test_pair_wrappers_name_results_like_paddleclas_in_pair_order(cls, params, keys):
    loss = pl.get_loss(cls)(model_name_pairs=[["Student", "Teacher"], ["Teacher", "Student"]], key="logits",
                            **params)
    out = loss(models(), labels())
    assert list(out) == keys
    assert all(v.shape == [] for v in out.values())


@pytest.mark.parametrize("cls,keys", [("DistillationGTCELoss", ["CELoss_Teacher", "CELoss_Student"]),
                                      ("DistillationMultiLabelLoss",
                                       ["MultiLabelLoss_Teacher", "MultiLabelLoss_Student"])])
def test_model_wrappers_name_results_per_model_in_order(cls, keys):
    target = labels() if cls == "DistillationGTCELoss" else paddle.to_tensor(
        np.random.default_rng(2).integers(0, 2, size=(4, 5)).astype("float32"))
    out = pl.get_loss(cls)(model_names=["Teacher", "Student"], key="logits")(models(), target)
    assert list(out) == keys


def test_rkd_keys_put_the_keepkey_index_before_the_model_names():
    loss = DistillationRKDLoss(model_name_pairs=[["Student", "Teacher"], ["Teacher", "Student"]],
                               student_keepkeys=["feat", "logits"], teacher_keepkeys=["logits", "feat"])
    assert list(loss(models(), labels())) == [
        "loss_angle_0_Student_Teacher", "loss_dist_0_Student_Teacher", "loss_angle_1_Student_Teacher",
        "loss_dist_1_Student_Teacher", "loss_angle_0_Teacher_Student", "loss_dist_0_Teacher_Student",
        "loss_angle_1_Teacher_Student", "loss_dist_1_Teacher_Student"]


def test_rkd_wrapper_does_not_pool_by_default_unlike_standalone_rkd_distance():
    feats = models()
    out = DistillationRKDLoss(student_keepkeys=["feat"], teacher_keepkeys=["feat"])(feats)
    expected = pl.get_loss("RkdDistance")(target_size=None)(feats["Student"]["feat"], feats["Teacher"]["feat"])
    assert float(out["loss_dist_0_Student_Teacher"]) == float(expected)


def test_pair_keys_for_tensor_and_dict_results():
    feats = models()
    tensor_result = DistillationPairLoss("DKDLoss", [["Student", "Teacher"]], "logits", "logits", name="kd")
    dict_result = DistillationPairLoss("DistanceLoss", [["Student", "Teacher"], ["Teacher", "Student"]],
                                       "feat", "feat", mode="l1")
    assert list(tensor_result(feats, labels())) == ["kd_0_Student_Teacher"]
    assert list(dict_result(feats, labels())) == ["loss_0_Student_Teacher_loss_l1", "loss_1_Teacher_Student_loss_l1"]


def test_pair_does_not_pass_labels_so_dkd_uses_the_teacher_argmax():
    feats, y = models(), labels()
    pair = DistillationPairLoss("DKDLoss", [["Student", "Teacher"]], "logits", "logits")(feats, y)
    wrapper = DistillationDKDLoss([["Student", "Teacher"]], key="logits")(feats, y)
    argmax = pl.get_loss("DKDLoss")()(feats["Student"]["logits"], feats["Teacher"]["logits"])
    assert float(pair["loss_0_Student_Teacher"]) == float(argmax)
    assert float(pair["loss_0_Student_Teacher"]) != float(wrapper["loss_dkd_Student_Teacher"])


def test_distance_wrapper_applies_the_activation_to_both_outputs():
    feats = models()
    out = DistillationDistanceLoss("l2", [["Student", "Teacher"]], act="sigmoid", key="logits")(feats)
    s, t = (ref.sigmoid(feats[m]["logits"].numpy().astype(np.float64)) for m in ("Student", "Teacher"))
    np.testing.assert_allclose(float(out["loss_l2_loss_l2_0"]), ref.distance(s, t, "l2"), rtol=1e-5)


def test_gtce_without_key_reads_logits_from_the_model_output_dict():
    # PaddleClas's Eval config: DistillationGTCELoss with model_names [Student] and no key.
    feats, y = models(), labels()
    out = pl.get_loss("DistillationGTCELoss")(model_names=["Student"])(feats, y)
    expected = pl.get_loss("CELoss")()(feats["Student"]["logits"], y)["CELoss"]
    assert float(out["CELoss_Student"]) == float(expected)


# ---- expected_errors.json entries of these classes ----------------------------------------------------

def _expected_error(case):
    entries = json.loads((FIXTURES / "other" / "expected_errors.json").read_text())
    return next(e for e in entries if e["case"] == case)


def _gt_label(n, c, seed=3):
    rng = np.random.default_rng(seed)
    g = rng.integers(0, 2, size=(n, c)).astype(np.float64)
    g[0, 0] = -1
    return np.stack([g, rng.uniform(0.1, 0.9, size=(n, c))], axis=1)


def test_expected_error_dml_weight_ratio_now_weights_by_label_ratio():
    entry = _expected_error("DMLLoss_gt_label_weight_ratio")
    assert entry["raised"] == "TypeError"  # PaddleClas: float32 * bool rejected by type promotion
    feats, gt = models(), _gt_label(4, 5)
    loss = DistillationDMLLoss([["Student", "Teacher"]], act="sigmoid", weight_ratio=True, key="logits")
    out = loss(feats, paddle.to_tensor(gt.astype("float32")))
    s, t = (feats[m]["logits"].numpy().astype(np.float64) for m in ("Student", "Teacher"))
    np.testing.assert_allclose(float(out["DMLLoss_Student_Teacher_0"]), ref.dml(s, t, "sigmoid", gt_label=gt),
                               rtol=1e-5)
    with pytest.raises(InputError, match=r"DistillationDMLLoss, pair 0 \['Student', 'Teacher'\].*gt_label must "
                                         r"be a float tensor of shape \[N, 2, C\]"):
        loss(feats, labels())


def test_expected_error_pair_without_keys_uses_the_whole_model_outputs():
    entry = _expected_error("DistillationPairLoss_no_keys")
    assert entry["raised"] == "TypeError"  # PaddleClas iterates s_key=None
    loss = DistillationPairLoss(**entry["kwargs"])
    s, t = paddle.randn([4, 3]), paddle.randn([4, 3])
    out = loss({"S": s, "T": t}, labels())
    expected = pl.get_loss("DistanceLoss")()(s, t)["loss_l2"]
    assert list(out) == ["loss_0_S_T_loss_l2"] and float(out["loss_0_S_T_loss_l2"]) == float(expected)
    with pytest.raises(InputError, match=r"DistillationPairLoss, pair 0 \['S', 'T'\] \(s_key None, t_key None\): "
                                         r"DistanceLoss: x input must be a paddle.Tensor, got dict"):
        loss({"S": {"feat": s}, "T": {"feat": t}}, labels())


def test_expected_error_pair_resolves_afd_through_the_registry():
    entry = _expected_error("DistillationPairLoss_AFD_not_in_namespace")
    assert entry["raised"] == "NameError"
    afd_kwargs = {"s_shapes": [[4, 4, 4]], "t_shapes": [[5, 3, 2]], "qk_dim": 4}
    pair = DistillationPairLoss(**entry["kwargs"], model_name_pairs=[["Student", "Teacher"]], **afd_kwargs)
    assert isinstance(pair.loss_func, AFDLoss)
    assert list(pair.state_dict()) == ["loss_func.attention.p_t", "loss_func.attention.p_s"]
    direct = AFDLoss(**afd_kwargs)
    direct.set_state_dict({k[len("loss_func."):]: v for k, v in pair.state_dict().items()})
    rng = np.random.default_rng(4)
    batch = {"Student": {"bilinear_key": paddle.to_tensor(rng.normal(size=(2, 1, 1, 4)).astype("float32")),
                         "value": [paddle.to_tensor(rng.normal(size=(2, 1, 6)).astype("float32"))]},
             "Teacher": {"query": paddle.to_tensor(rng.normal(size=(2, 1, 4)).astype("float32")),
                         "value": [paddle.to_tensor(rng.normal(size=(2, 6)).astype("float32"))]}}
    out = pair(batch, None)
    assert list(out) == ["loss_0_Student_Teacher_loss_afd"]
    assert float(out["loss_0_Student_Teacher_loss_afd"]) == float(direct(batch)["loss_afd"])


def test_pair_accepts_paddle_nn_loss_layers_without_eval():
    feats = models()
    out = DistillationPairLoss("nn.MSELoss", [["Student", "Teacher"]], "feat", "feat")(feats)
    expected = paddle.nn.functional.mse_loss(feats["Student"]["feat"], feats["Teacher"]["feat"])
    assert list(out) == ["loss_0_Student_Teacher"] and float(out["loss_0_Student_Teacher"]) == float(expected)
    with pytest.raises(ConfigError, match="'nn.os' is not a paddle.nn Layer class"):
        DistillationPairLoss("nn.os")


def test_pair_passes_lists_for_key_lists(scratch_registry):
    seen = []

    @scratch_registry.register_loss
    class ListPairProbe(nn.Layer):
        def forward(self, xs, ys):
            seen.append((xs, ys))
            return sum((x - y).abs().sum() for x, y in zip(xs, ys) if isinstance(x, paddle.Tensor))

    feats = models()
    loss = DistillationPairLoss("ListPairProbe", [["Student", "Teacher"]], ["feat", None], ["feat", None])
    out = loss(feats)
    xs, ys = seen[-1]
    assert xs[0] is feats["Student"]["feat"] and xs[1] is feats["Student"]  # None: the whole output
    assert ys[0] is feats["Teacher"]["feat"] and ys[1] is feats["Teacher"]
    loss = DistillationPairLoss("ListPairProbe", [["Student", "Teacher"]], ["feat", "logits"], ["feat", "logits"])
    expected = sum(float((feats["Student"][k] - feats["Teacher"][k]).abs().sum()) for k in ("feat", "logits"))
    assert list(out) == ["loss_0_Student_Teacher"]
    np.testing.assert_allclose(float(loss(feats)["loss_0_Student_Teacher"]), expected, rtol=1e-6)


def test_pair_base_loss_errors_are_config_errors():
    with pytest.raises(ConfigError, match="MGDLos.*is not registered.*MGDLoss"):
        DistillationPairLoss("MGDLos")
    with pytest.raises(ConfigError, match=r"DistillationPairLoss\(base_loss_name='MGDLoss'\)\.student_channel: "
                                          r"MGDLoss has no parameter"):
        DistillationPairLoss("MGDLoss", student_channel=4, teacher_channels=4)
    with pytest.raises(ValueError, match="s_key and t_key must be of the same kind"):
        DistillationPairLoss("DistanceLoss", [["S", "T"]], s_key="feat", t_key=None)


# ---- bad input ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("cls", ["DistillationKLDivLoss", "DistillationDMLLoss", "DistillationDISTLoss",
                                 "DistillationCELoss"])
def test_missing_model_is_an_input_error_naming_the_models_present(cls):
    loss = pl.get_loss(cls)(model_name_pairs=[["Student", "Teacher"]], key="logits")
    with pytest.raises(InputError, match=rf"{cls}, pair 0 \['Student', 'Teacher'\] \(key 'logits'\): model "
                                         r"'Teacher' is not in the input; models present: \['Assist', 'Student'\]"):
        loss(models(names=("Student", "Assist")), labels())


def test_missing_key_is_an_input_error_listing_the_output_keys():
    loss = pl.get_loss("DistillationGTCELoss")(model_names=["Student"], key="backbone")
    with pytest.raises(InputError, match=r"model 'Student' \(key 'backbone'\): the output of model 'Student' has "
                                         r"no key 'backbone'; its keys are \['feat', 'logits'\]"):
        loss(models(), labels())


def test_dict_output_without_key_asks_for_a_key():
    loss = pl.get_loss("DistillationKLDivLoss")(model_name_pairs=[["Student", "Teacher"]])
    with pytest.raises(InputError, match=r"model 'Student' returns a dict with keys \['feat', 'logits'\]; set "
                                         r"`key`"):
        loss(models(), labels())


def test_key_on_a_tensor_output_is_an_input_error():
    loss = pl.get_loss("DistillationDISTLoss")(model_name_pairs=[["Student", "Teacher"]], key="logits")
    with pytest.raises(InputError, match="key 'logits' selects an entry of the output of model 'Student', but "
                                         "that output is a Tensor"):
        loss({"Student": paddle.randn([4, 5]), "Teacher": paddle.randn([4, 5])})


def test_mismatched_student_and_teacher_shapes_name_the_pair():
    feats = models()
    feats["Teacher"]["logits"] = paddle.randn([4, 7])
    loss = pl.get_loss("DistillationDKDLoss")(model_name_pairs=[["Student", "Teacher"]], key="logits")
    with pytest.raises(InputError, match=r"DistillationDKDLoss, pair 0 \['Student', 'Teacher'\] \(key 'logits'\): "
                                         r"DKDLoss: student and teacher must have the same shape, got student "
                                         r"\[4, 5\] and teacher \[4, 7\]"):
        loss(feats, labels())


def test_input_that_is_not_a_model_dict_is_an_input_error():
    loss = pl.get_loss("DistillationDMLLoss")(model_name_pairs=[["Student", "Teacher"]])
    with pytest.raises(InputError, match=r"expected the output of a distillation model, a dict \{model_name: "
                                         r"output\}, got Tensor"):
        loss(paddle.randn([4, 5]), labels())


def test_constructor_validation():
    with pytest.raises(ValueError, match="model_name_pairs must be a list of \\[student, teacher\\] model-name pairs"):
        DistillationDMLLoss(model_name_pairs=["Student", "Teacher"])
    with pytest.raises(ValueError, match="student_keepkeys and teacher_keepkeys must have the same length"):
        DistillationRKDLoss(student_keepkeys=["a"], teacher_keepkeys=[])
    with pytest.raises(ValueError, match="act must be None, 'sigmoid' or 'softmax'"):
        DistillationDistanceLoss(model_name_pairs=[["S", "T"]], act="relu")
    with pytest.raises(ValueError, match="model_names must be a list of model names"):
        pl.get_loss("DistillationGTCELoss")(model_names="Student")


def test_empty_pairs_warn_and_return_no_values():
    with pytest.warns(ConfigWarning, match="model_name_pairs is empty"):
        loss = pl.get_loss("DistillationKLDivLoss")()
    assert loss(models(), labels()) == {}
    with pytest.warns(ConfigWarning, match="student_keepkeys is empty"):
        assert DistillationRKDLoss()(models()) == {}


# ---- configs ------------------------------------------------------------------------------------------------

def test_paddleclas_udml_recognition_config_builds_and_runs():
    train = [
        {"DistillationGTCELoss": {"weight": 1.0, "key": "logits", "model_names": ["Student", "Teacher"]}},
        {"DistillationDMLLoss": {"weight": 1.0, "key": "logits", "model_name_pairs": [["Student", "Teacher"]]}},
        {"DistillationDistanceLoss": {"weight": 1.0, "key": "backbone", "model_name_pairs": [["Student", "Teacher"]]}},
    ]
    feats = models()
    for m in feats:
        feats[m]["backbone"] = paddle.randn([4, 6])
    out = pl.build_loss(train)(feats, labels())
    assert list(out) == ["CELoss_Student", "CELoss_Teacher", "DMLLoss_Student_Teacher_0", "loss_l2_loss_l2_0",
                         "loss"]
    np.testing.assert_allclose(float(out["loss"]), sum(float(v) for k, v in out.items() if k != "loss"), rtol=1e-6)


def test_config_parameter_types_are_validated_before_construction():
    with pytest.raises(ConfigError, match=r"Loss.Train\[0\].DistillationKLDivLoss.model_name_pairs: expected list "
                                          r"of list of str"):
        pl.build_loss([{"DistillationKLDivLoss": {"weight": 1.0, "model_name_pairs": "Student"}}])
    with pytest.raises(ConfigError, match="temperatur"):
        pl.build_loss([{"DistillationKLDivLoss": {"weight": 1.0, "temperatur": 2}}])


@pytest.mark.parametrize("full_graph", [False, True])
def test_wrapper_runs_under_to_static(full_graph):
    golden = load("DistillationDKDLoss")
    loss = build(golden)
    student = paddle.to_tensor(golden["arg.predicts.Student.logits"], stop_gradient=False)
    teacher = paddle.to_tensor(golden["arg.predicts.Teacher.logits"])

    def run(s, t, y):
        return loss({"Student": {"logits": s}, "Teacher": {"logits": t}}, y)["loss_dkd_Student_Teacher"]

    static = paddle.jit.to_static(run, full_graph=full_graph)
    out = static(student, teacher, paddle.to_tensor(golden["arg.batch"]))
    out.backward()
    np.testing.assert_allclose(float(out), golden["out.loss_dkd_Student_Teacher"], rtol=1e-5)
    np.testing.assert_allclose(student.grad.numpy(), golden["grad.predicts.Student.logits"], rtol=1e-5, atol=1e-5)
