"""AFDLoss: golden parity, float64 reference, gradients, the teacher-stage index fix, input validation."""
import numpy as np
import paddle
import pytest

import paddle_losses as pl
from gradcheck import assert_gradcheck
from losses.distillation import reference as ref
from losses.distillation.replay import load, replay
from paddle_losses.errors import InputError
from paddle_losses.losses.distillation.afd import AFDLoss, unique_shape_index


def f64(*shape, seed=0):
    return np.random.default_rng(seed).normal(size=shape)


def t64(a, grad=False):
    t = paddle.to_tensor(np.asarray(a, dtype=np.float64))
    t.stop_gradient = not grad
    return t


def inputs(s_shapes, t_shapes, qk, b=3, seed=0):
    """Random AttentionModel-style outputs for the given stage shapes (float64 arrays)."""
    unique, _ = unique_shape_index(t_shapes)
    S, T = len(s_shapes), len(t_shapes)
    rng = np.random.default_rng(seed)
    return {
        "key": rng.normal(size=(b, S, T, qk)),
        "values_s": [rng.normal(size=(b, S, h * w)) for _, h, w in unique],
        "query": rng.normal(size=(b, T, qk)),
        "values_t": [rng.normal(size=(b, h * w)) for _, h, w in t_shapes],
    }


def predicts(arrays, names=("Student", "Teacher")):
    s, t = names
    return {s: {"bilinear_key": t64(arrays["key"]), "value": [t64(v) for v in arrays["values_s"]]},
            t: {"query": t64(arrays["query"]), "value": [t64(v) for v in arrays["values_t"]]}}


def afd64(s_shapes, t_shapes, qk, **kw):
    loss = AFDLoss(s_shapes=s_shapes, t_shapes=t_shapes, qk_dim=qk, **kw)
    loss.to(dtype="float64")
    return loss


def expected(loss, arrays):
    return ref.afd(arrays["key"], arrays["values_s"], arrays["query"], arrays["values_t"],
                   loss.attention.p_t.numpy(), loss.attention.p_s.numpy(), loss.n_t)


def test_golden_replay_outputs_and_gradients():
    golden = load("AFDLoss")
    replay(golden, AFDLoss(**golden.params))


def test_seeded_initialisation_and_state_dict_names_match_paddleclas():
    golden = load("AFDLoss")
    paddle.seed(golden.meta["seed_init"])
    state = AFDLoss(**golden.params).state_dict()
    assert list(state) == golden.meta["state_dict_keys"]
    for key, param in state.items():
        np.testing.assert_allclose(param.numpy(), golden[f"param.{key}"], rtol=1e-6, err_msg=key)


def test_matches_reference_on_fresh_inputs():
    s_shapes, t_shapes = [[4, 4, 4], [8, 2, 2]], [[5, 3, 2], [5, 3, 2], [7, 2, 2]]
    loss, arrays = afd64(s_shapes, t_shapes, 6, name="afd"), inputs(s_shapes, t_shapes, 6, seed=1)
    out = loss(predicts(arrays), None)
    assert list(out) == ["afd"]
    np.testing.assert_allclose(float(out["afd"]), expected(loss, arrays), rtol=1e-10)


def test_gradients_reach_every_input_and_both_embeddings():
    s_shapes, t_shapes = [[2, 2, 2], [3, 2, 2]], [[4, 2, 1], [4, 1, 2]]
    loss, arrays = afd64(s_shapes, t_shapes, 3), inputs(s_shapes, t_shapes, 3, b=2, seed=2)
    flat = [arrays["key"], arrays["query"], *arrays["values_s"], *arrays["values_t"]]
    n_s = len(arrays["values_s"])

    def fn(key, query, *values):
        batch = {"Student": {"bilinear_key": key, "value": list(values[:n_s])},
                 "Teacher": {"query": query, "value": list(values[n_s:])}}
        return loss(batch)["loss_afd"]

    for index in range(len(flat)):
        assert_gradcheck(fn, flat, index)
    loss(predicts(arrays))["loss_afd"].backward()
    assert np.any(loss.attention.p_t.grad.numpy()) and np.any(loss.attention.p_s.grad.numpy())


def test_non_contiguous_teacher_shapes_use_the_values_of_their_own_shape():
    # expected_errors.json AFDLoss_noncontiguous_tshapes: PaddleClas maps the third stage ([5,3,2]) to the
    # second distinct shape ([7,2,2]) and fails with a broadcast error; we compare it with its own shape.
    golden_kwargs = {"s_shapes": [[4, 2, 2]], "t_shapes": [[5, 3, 2], [7, 2, 2], [5, 3, 2]], "qk_dim": 4}
    loss = afd64(**{k: v for k, v in golden_kwargs.items() if k != "qk_dim"}, qk=4)
    assert loss.n_t == [0, 1, 0]
    arrays = inputs(golden_kwargs["s_shapes"], golden_kwargs["t_shapes"], 4, b=2, seed=3)
    out = loss(predicts(arrays))["loss_afd"]
    np.testing.assert_allclose(float(out), expected(loss, arrays), rtol=1e-10)


def test_contiguous_shapes_index_like_paddleclas():
    assert unique_shape_index([[1, 5, 3, 2], [1, 5, 3, 2], [1, 7, 2, 2]]) == ([[1, 5, 3, 2], [1, 7, 2, 2]],
                                                                              [0, 0, 1])


def test_pair_call_with_student_and_teacher_outputs_gives_the_same_value():
    s_shapes, t_shapes = [[4, 4, 4]], [[5, 3, 2]]
    loss, arrays = afd64(s_shapes, t_shapes, 4), inputs(s_shapes, t_shapes, 4, seed=4)
    batch = predicts(arrays)
    direct = float(loss(batch)["loss_afd"])
    assert float(loss(batch["Student"], batch["Teacher"])["loss_afd"]) == direct


def test_missing_model_and_keys_are_input_errors():
    s_shapes, t_shapes = [[4, 4, 4]], [[5, 3, 2]]
    loss, arrays = afd64(s_shapes, t_shapes, 4), inputs(s_shapes, t_shapes, 4, seed=5)
    batch = predicts(arrays, names=("Student", "Teach"))
    with pytest.raises(InputError, match=r"AFDLoss, model_name_pair \['Student', 'Teacher'\]: model 'Teacher' is "
                                         r"not in the input; models present: \['Student', 'Teach'\]"):
        loss(batch)
    batch = predicts(arrays)
    del batch["Teacher"]["query"]
    with pytest.raises(InputError, match=r"model 'Teacher'.*reads input\['query'\].*keys \['value'\]"):
        loss(batch)


def test_wrong_shapes_and_value_counts_are_input_errors():
    s_shapes, t_shapes = [[4, 4, 4]], [[5, 3, 2], [7, 2, 2]]
    loss = afd64(s_shapes, t_shapes, 4)
    arrays = inputs(s_shapes, t_shapes, 4, seed=6)
    bad = dict(arrays, values_s=arrays["values_s"][:1])
    with pytest.raises(InputError, match="student values must be a list of 2 tensors .one per distinct teacher "
                                         "shape., got 1"):
        loss(predicts(bad))
    bad = dict(arrays, query=arrays["query"][:, :, :3])
    with pytest.raises(InputError, match=r"teacher query \[B, T, qk_dim\] must have shape \[3, 2, 4\], got "
                                         r"\[3, 2, 3\]"):
        loss(predicts(bad))
    bad = dict(arrays, values_t=[arrays["values_t"][0], arrays["values_t"][0]])
    with pytest.raises(InputError, match=r"teacher values\[1\] must have shape \[3, 4\], got \[3, 6\]"):
        loss(predicts(bad))


def test_constructor_validation():
    with pytest.raises(ValueError, match="model_name_pair must be a list"):
        AFDLoss(model_name_pair="Student")
    with pytest.raises(ValueError, match="student_keys must be two keys"):
        AFDLoss(student_keys=["bilinear_key"])


def test_builds_from_a_config_with_paddleclas_defaults():
    loss = pl.build_loss([{"AFDLoss": {"weight": 1.0}}])
    assert list(loss.state_dict()) == ["loss_func.0.attention.p_t", "loss_func.0.attention.p_s"]
    assert loss.loss_func[0].attention.p_t.shape == [3, 128]
    assert loss.loss_func[0].attention.p_s.shape == [4, 128]


@pytest.mark.parametrize("full_graph", [False, True])
def test_runs_under_to_static(full_graph):
    golden = load("AFDLoss")
    loss = AFDLoss(**golden.params)
    loss.attention.p_t.set_value(paddle.to_tensor(golden["param.attention.p_t"]))
    loss.attention.p_s.set_value(paddle.to_tensor(golden["param.attention.p_s"]))
    key = paddle.to_tensor(golden["arg.predicts.Student.bilinear_key"], stop_gradient=False)
    rest = {k: paddle.to_tensor(golden[f"arg.predicts.{k}"]) for k in
            ["Student.value.0", "Student.value.1", "Teacher.query", "Teacher.value.0", "Teacher.value.1",
             "Teacher.value.2", "Teacher.value.3"]}

    def run(key, sv0, sv1, q, tv0, tv1, tv2, tv3):
        return loss({"Student": {"bilinear_key": key, "value": [sv0, sv1]},
                     "Teacher": {"query": q, "value": [tv0, tv1, tv2, tv3]}})["loss_afd"]

    out = paddle.jit.to_static(run, full_graph=full_graph)(key, *rest.values())
    out.backward()
    np.testing.assert_allclose(float(out), golden["out.loss_afd"], rtol=1e-5)
    np.testing.assert_allclose(key.grad.numpy(), golden["grad.predicts.Student.bilinear_key"], rtol=1e-5,
                               atol=1e-5)
