"""ContrastiveLoss and ContrastiveLoss_XBM: PaddleClas parity, the [N, 1] label fix, memory and resume."""
import numpy as np
import paddle
import pytest

from golden import assert_close, case, tensor
from gradcheck import assert_gradcheck
from paddle_losses.errors import InputError
from paddle_losses.losses.contrastive import ContrastiveLoss, ContrastiveLoss_XBM

KEY, XKEY = "ContrastiveLoss", "ContrastiveLoss_XBM"


def ref_contrastive(x, y, margin, epsilon=1e-5, normalize=True, keys=None, key_labels=None):
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y).reshape(-1)
    if normalize:
        x = x / np.linalg.norm(x, axis=1, keepdims=True)
    if keys is None:
        keys, key_labels = x, y
    sim = x @ np.asarray(keys, dtype=np.float64).T
    same = y[:, None] == np.asarray(key_labels).reshape(1, -1)
    pos = same & (sim < 1 - epsilon)
    neg = ~same & (sim > margin)
    return ((1 - sim)[pos].sum() + sim[neg].sum()) / len(x)


def _value(layer, x, y, key=KEY):
    return layer({"features": paddle.to_tensor(x)}, paddle.to_tensor(y))[key]


def _replay_step(c, layer, key, step=None):
    inp = {k: tensor(v, grad=True) for k, v in c.with_prefix("input__", step).items()}
    out = layer(inp, tensor(c.with_prefix("label", step)[""]))[key]
    assert_close(out, c.with_prefix("out__", step)[key], f"{c.name} step {step} output")
    out.backward()
    for name, g in c.with_prefix("grad__", step).items():
        assert_close(inp[name].grad, g, f"{c.name} step {step} grad {name}")
    state = layer.state_dict()
    for name, v in c.with_prefix("state__", step).items():
        assert_close(state[{"xbm_feats": "xbm.feats", "xbm_targets": "xbm.targets", "xbm_ptr": "xbm.ptr",
                            "iter": "iter"}[name]], v, f"{c.name} step {step} state {name}")
    return out


@pytest.mark.parametrize("name", ["label_N", "no_normalize", "unbalanced"])
def test_golden_parity(name):
    c = case("metric", f"{KEY}__{name}")
    _replay_step(c, ContrastiveLoss(**c.meta["params"]), KEY)


def test_n_by_1_labels_give_the_same_value_as_n_labels():
    # PaddleClas broadcasts the [N, 1] label mask and counts whole rows many times (22.75 vs 1.758).
    bug = case("metric", f"{KEY}__label_N1_broadcast_bug")
    good = case("metric", f"{KEY}__label_N")
    assert bug["label"].shape == (8, 1)
    _replay_step(good, ContrastiveLoss(**bug.meta["params"]), KEY)  # same data, [N] labels
    layer = ContrastiveLoss(**bug.meta["params"])
    x = tensor(bug["input__features"], grad=True)
    out = layer({"features": x}, tensor(bug["label"]))[KEY]
    out.backward()
    assert_close(out, good["out__" + KEY], "[N, 1] labels output")
    assert_close(x.grad, good["grad__features"], "[N, 1] labels gradient")
    assert float(bug["out__" + KEY]) > 10 * float(out)


@pytest.mark.parametrize("params", [dict(margin=0.2), dict(margin=-0.1, epsilon=1e-3),
                                    dict(margin=0.3, normalize_feature=False)])
def test_matches_float64_reference_on_random_batches(params):
    rng = np.random.default_rng(int(100 * params["margin"]) + 50)
    x, y = 0.5 * rng.normal(size=(9, 4)), np.array([0, 0, 0, 1, 1, 2, 3, 3, 3])
    ref = ref_contrastive(x, y, params["margin"], params.get("epsilon", 1e-5),
                          params.get("normalize_feature", True))
    np.testing.assert_allclose(_value(ContrastiveLoss(embedding_size=4, **params), x, y).numpy(), ref, rtol=1e-7)


def test_finite_difference_gradient():
    rng = np.random.default_rng(6)
    x, y = rng.normal(size=(8, 4)), np.array([0, 0, 1, 1, 1, 2, 3, 3])
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    assert np.abs(xn @ xn.T - 0.1).min() > 1e-3, "inputs must stay away from the margin threshold"
    layer = ContrastiveLoss(margin=0.1, embedding_size=4)
    assert_gradcheck(lambda t: layer({"features": t}, paddle.to_tensor(y))[KEY], [x])


@pytest.mark.parametrize("full_graph", [False, True])
def test_runs_under_to_static(full_graph):
    c = case("metric", f"{KEY}__unbalanced")
    layer = ContrastiveLoss(**c.meta["params"])
    x = tensor(c["input__features"], grad=True)

    def compute(f, t):
        return layer({"features": f}, t)[KEY]

    out = paddle.jit.to_static(compute, full_graph=full_graph)(x, tensor(c["label"]))
    out.backward()
    assert_close(out, c["out__" + KEY], "to_static output")
    assert_close(x.grad, c["grad__features"], "to_static gradient")


# ---------------------------------------------------------------- XBM

def test_xbm_golden_sequence_parity_including_memory_state():
    c = case("metric", f"{XKEY}__seq_pk")
    layer = ContrastiveLoss_XBM(**c.meta["params"])
    for s in range(c.meta["steps"]):
        _replay_step(c, layer, XKEY, s)


def test_xbm_label_zero_in_last_slot_keeps_the_memory_term():
    # PaddleClas: at step 1 the memory looks empty, the memory term is 0 and backward raises.
    c = case("metric", f"{XKEY}__empty_memory")
    params = c.meta["params"]
    layer = ContrastiveLoss_XBM(**params)
    _replay_step(c, layer, XKEY, 0)
    x = tensor(c["input__features__s1"], grad=True)
    y = c["label__s1"]
    out = layer({"features": x}, tensor(y))[XKEY]
    out.backward()
    assert x.grad is not None and np.isfinite(x.grad.numpy()).all()
    xn = c["input__features__s1"] / np.linalg.norm(c["input__features__s1"], axis=1, keepdims=True)
    expected = 2 * ref_contrastive(xn, y, params["margin"], normalize=False)
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-5)
    assert float(out) > float(c["out__ContrastiveLoss_XBM__s1"]) + 0.5
    _replay_step(c, layer, XKEY, 2)  # from here PaddleClas's memory is whole again


def test_xbm_memory_term_starts_after_start_iter_calls_and_uses_written_slots_only():
    rng = np.random.default_rng(3)
    layer = ContrastiveLoss_XBM(xbm_size=12, xbm_weight=0.5, start_iter=1, margin=0.1, embedding_size=4)
    mem_x, mem_y = np.zeros((0, 4)), np.zeros(0, "int64")
    for call, y in enumerate(([0, 0, 1, 1], [1, 2, 2, 0], [3, 3, 0, 0]), start=1):
        x, y = rng.normal(size=(4, 4)).astype("float32"), np.array(y)
        xn = x / np.linalg.norm(x, axis=1, keepdims=True)
        expected = ref_contrastive(x, y, 0.1)
        if call > 1:
            mem_x, mem_y = np.concatenate([mem_x, xn]), np.concatenate([mem_y, y])
            expected += 0.5 * ref_contrastive(x, y, 0.1, keys=mem_x, key_labels=mem_y)
        np.testing.assert_allclose(_value(layer, x, y, XKEY).numpy(), expected, rtol=1e-5, atol=1e-6)
        assert int(layer.iter) == call


def test_xbm_state_dict_resume_equals_uninterrupted_run():
    rng = np.random.default_rng(8)
    batches = [(rng.normal(size=(6, 4)).astype("float32"), rng.integers(0, 3, 6)) for _ in range(6)]
    make = lambda: ContrastiveLoss_XBM(10, 0.5, 1, 0.2, 4)  # noqa: E731
    straight = make()
    expected = [float(_value(straight, x, y, XKEY)) for x, y in batches]
    first = make()
    for x, y in batches[:3]:
        _value(first, x, y, XKEY)
    state = first.state_dict()
    assert set(state) == {"iter", "xbm.feats", "xbm.targets", "xbm.ptr", "xbm.filled"}
    resumed = make()
    resumed.set_state_dict(state)
    got = [float(_value(resumed, x, y, XKEY)) for x, y in batches[3:]]
    np.testing.assert_allclose(got, expected[3:], rtol=1e-6)


def test_xbm_accepts_float64_features():
    x, y = np.random.default_rng(2).normal(size=(4, 3)), np.array([0, 0, 1, 1])
    out = _value(ContrastiveLoss_XBM(8, 1.0, 0, 0.0, 3), x, y, XKEY)
    np.testing.assert_allclose(out.numpy(), 2 * ref_contrastive(x, y, 0.0), rtol=1e-5)


def test_xbm_memory_of_wrong_feature_size_is_an_input_error():
    layer = ContrastiveLoss_XBM(8, 1.0, 0, 0.5, embedding_size=5)
    with pytest.raises(InputError, match="5-d features"):
        _value(layer, np.ones([4, 3], "float32"), np.array([0, 0, 1, 1]), XKEY)
    assert int(layer.iter) == 0, "a rejected batch must not count as a call"


# ---------------------------------------------------------------- boundary checks

@pytest.mark.parametrize("layer", [ContrastiveLoss(0.5, 3), ContrastiveLoss_XBM(8, 1.0, 0, 0.5, 3)],
                         ids=lambda layer: type(layer).__name__)
@pytest.mark.parametrize("feats,labels,message", [
    (np.ones([4, 3, 1], "float32"), np.zeros([4], "int64"), r"shape \[N, D\]"),
    (np.ones([4, 3], "float32"), np.zeros([2], "int64"), "2 entries but the batch has 4"),
    (np.ones([4, 3], "float32"), np.zeros([4, 1], "float32"), "integer class ids"),
    (np.full([4, 3], np.inf, "float32"), np.zeros([4], "int64"), "NaN or Inf"),
])
def test_bad_input_is_an_input_error(layer, feats, labels, message):
    with pytest.raises(InputError, match=message):
        layer({"features": paddle.to_tensor(feats)}, paddle.to_tensor(labels))


def test_missing_feature_key_names_the_keys_present():
    with pytest.raises(InputError, match=r"input\['neck'\].*\['features'\]"):
        ContrastiveLoss(0.5, 3, feature_from="neck")({"features": paddle.ones([2, 3])}, paddle.to_tensor([0, 1]))


def test_negative_start_iter_is_a_value_error():
    with pytest.raises(ValueError, match="start_iter"):
        ContrastiveLoss_XBM(8, 1.0, -2, 0.5, 3)
