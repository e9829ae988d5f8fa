"""TripletAngularMarginLoss and TripletAngularMarginLoss_XBM: PaddleClas parity, per-row mining on any
batch, the an_fallback option, the cross-batch memory and its persistence."""
import numpy as np
import paddle
import pytest

import paddle_losses as pl
from golden import assert_close, case, tensor
from gradcheck import analytic_grad, assert_gradcheck, numeric_grad
from paddle_losses.errors import InputError
from paddle_losses.functional.masks import positive_negative
from paddle_losses.losses.angular import TripletAngularMarginLoss, TripletAngularMarginLoss_XBM

KEY = "TripletAngularMarginLoss"
XKEY = "TripletAngularMarginLoss_XBM"


# ---------------------------------------------------------------- float64 reference

def ref_angular(x, y, keys=None, key_labels=None, margin=0.5, normalize=True, reduction="mean",
                add_absolute=False, absolute_loss_weight=1.0, ap_value=0.9, an_value=0.5, an_fallback=1.0):
    """Per-anchor hardest positive (self included) / negative; anchors lacking either are left out."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y).reshape(-1)
    if normalize:
        x = x / np.linalg.norm(x, axis=1, keepdims=True)
    if keys is None:
        keys, key_labels = x, y
    sim = x @ np.asarray(keys, dtype=np.float64).T
    pos = y[:, None] == np.asarray(key_labels).reshape(1, -1)
    neg = ~pos
    valid = pos.any(1) & neg.any(1)
    ap = np.where(valid, np.where(pos, sim, np.inf).min(1), 0.0)
    an = np.where(valid, np.where(neg, sim, -np.inf).max(1), 0.0)
    ranking = np.maximum(an - ap + margin, 0.0) * valid
    n_valid = max(valid.sum(), 1)
    if not add_absolute:
        return {"mean": ranking.sum() / n_valid, "sum": ranking.sum(), "none": ranking}[reduction]
    ranking = ranking.sum() if reduction == "sum" else ranking.sum() / n_valid
    pos_term = np.maximum(ap_value - ap, 0.0) * valid
    neg_term = np.where(an > an_value, an - an_value, an_fallback) * valid
    return (neg_term.sum() / n_valid + pos_term.sum() / n_valid) * absolute_loss_weight + ranking


def _value(layer, x, y, key=KEY):
    return layer({"features": paddle.to_tensor(x)}, paddle.to_tensor(y))[key]


# ---------------------------------------------------------------- golden replay

def _replay(c, loss, key, steps, check_state=True):
    for s in steps:
        inp = {k: tensor(v, grad=True) for k, v in c.with_prefix("input__", s).items()}
        out = loss(inp, tensor(c.with_prefix("label", s)[""]))[key]
        expected = c.with_prefix("out__", s)[key]
        assert_close(out, expected, f"{c.name} step {s} output")
        cot = c.arrays.get(f"cotangent__{key}")
        (out * tensor(cot)).sum().backward() if cot is not None else out.sum().backward()
        for name, g in c.with_prefix("grad__", s).items():
            assert_close(inp[name].grad, g, f"{c.name} step {s} grad {name}")
        if check_state:
            state = loss.state_dict()
            for name, v in c.with_prefix("state__", s).items():
                key_name = {"xbm_feats": "xbm.feats", "xbm_targets": "xbm.targets", "xbm_ptr": "xbm.ptr",
                            "iter": "iter"}[name]
                assert_close(state[key_name], v, f"{c.name} step {s} state {key_name}")


@pytest.mark.parametrize("name", ["pk_default", "pk_absolute", "no_normalize", "reduction_none",
                                  "all_singletons"])
def test_golden_parity(name):
    c = case("metric", f"{KEY}__{name}")
    _replay(c, TripletAngularMarginLoss(**c.meta["params"]), KEY, [None], check_state=False)


@pytest.mark.parametrize("name", ["seq_pk", "seq_unbalanced_absolute"])
def test_xbm_golden_sequence_parity_including_memory_state(name):
    c = case("metric", f"{XKEY}__{name}")
    _replay(c, TripletAngularMarginLoss_XBM(**c.meta["params"]), XKEY, range(c.meta["steps"]))


# ---------------------------------------------------------------- any batch composition

@pytest.mark.parametrize("name", ["unbalanced_error", "unbalanced_divisible_silent"])
def test_unbalanced_batch_is_mined_per_row(name):
    # PaddleClas raises (counts 3,2,3) or silently mixes rows (counts 2,4,2); we mine each row.
    c = case("metric", f"{KEY}__{name}")
    x, y = c["input__features"], c["label"]
    out = _value(TripletAngularMarginLoss(), x, y)
    np.testing.assert_allclose(out.numpy(), ref_angular(x, y), rtol=1e-5, atol=1e-6)
    if "out__" + KEY in c:
        assert abs(float(out) - float(c["out__" + KEY])) > 0.1, "should differ from PaddleClas's mixed rows"


def test_single_class_batch_gives_zero_with_a_gradient_path():
    c = case("metric", f"{KEY}__single_class_error")
    x = paddle.to_tensor(c["input__features"], stop_gradient=False)
    out = TripletAngularMarginLoss(add_absolute=True)({"features": x}, paddle.to_tensor(c["label"]))[KEY]
    assert float(out) == 0.0
    out.backward()
    assert x.grad is not None and np.all(x.grad.numpy() == 0.0)


def test_singleton_anchor_uses_itself_as_positive_on_a_mixed_batch():
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(7, 5)), np.array([0, 0, 1, 1, 1, 2, 3])
    out = _value(TripletAngularMarginLoss(reduction="none"), x, y)
    np.testing.assert_allclose(out.numpy(), ref_angular(x, y, reduction="none"), rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("params", [
    {}, {"reduction": "sum", "margin": 0.3}, {"reduction": "none"},
    {"add_absolute": True, "absolute_loss_weight": 0.3, "ap_value": 0.7, "an_value": 0.2},
    {"add_absolute": True, "reduction": "none", "an_fallback": 0.0},
    {"add_absolute": True, "reduction": "sum", "normalize_feature": False, "an_fallback": 0.25},
])
@pytest.mark.parametrize("labels", [[0, 0, 1, 1, 2, 2, 3, 3, 4, 4], [0, 0, 0, 1, 1, 2, 3, 3, 3, 3]])
def test_matches_float64_reference_on_random_batches(params, labels):
    rng = np.random.default_rng(len(params) * 7 + labels[2])
    x, y = rng.normal(size=(10, 6)), np.array(labels)
    out = _value(TripletAngularMarginLoss(**params), x, y)
    ref_params = {("normalize" if k == "normalize_feature" else k): v for k, v in params.items()}
    np.testing.assert_allclose(out.numpy(), ref_angular(x, y, **ref_params), rtol=1e-7, atol=1e-9)


def test_finite_difference_gradient_on_unbalanced_batch_with_absolute_terms():
    rng = np.random.default_rng(11)
    x, y = rng.normal(size=(7, 5)), np.array([0, 0, 0, 1, 1, 2, 3])
    loss = TripletAngularMarginLoss(margin=0.8, add_absolute=True, absolute_loss_weight=0.5, ap_value=0.95,
                                    an_value=0.1)
    assert_gradcheck(lambda t: loss({"features": t}, paddle.to_tensor(y))[KEY], [x])


def test_ties_split_gradient_equally_like_paddle_max():
    # Two identical negatives of anchor 0: each gets half the gradient.
    x = np.array([[1.0, 0.0], [0.9, 0.1], [0.6, 0.8], [0.6, 0.8]])
    t = paddle.to_tensor(x, stop_gradient=False)
    out = TripletAngularMarginLoss(normalize_feature=False, reduction="sum")({"features": t},
                                                                          paddle.to_tensor([0, 0, 1, 1]))[KEY]
    out.backward()
    g = t.grad.numpy()
    np.testing.assert_allclose(g[2], g[3])


# ---------------------------------------------------------------- an_fallback

def test_an_fallback_changes_value_by_satisfied_share_but_not_gradient():
    c = case("metric", f"{KEY}__pk_absolute")
    params = dict(c.meta["params"])
    x, y = c["input__features"], c["label"]
    grads, values = [], []
    for fallback in (1.0, 0.0):
        t = paddle.to_tensor(x, stop_gradient=False)
        out = TripletAngularMarginLoss(**params, an_fallback=fallback)({"features": t}, paddle.to_tensor(y))[KEY]
        out.backward()
        values.append(float(out))
        grads.append(t.grad.numpy())
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    yy = y.reshape(-1)
    an = np.where(yy[:, None] != yy[None], xn @ xn.T, -np.inf).max(1)
    satisfied = np.mean(an <= params["an_value"])
    assert 0 < satisfied < 1, "the case must have rows on both sides of an_value"
    np.testing.assert_allclose(values[0] - values[1], params["absolute_loss_weight"] * satisfied, rtol=1e-5)
    np.testing.assert_allclose(grads[0], grads[1], rtol=1e-6, atol=1e-8)


def test_an_fallback_default_is_paddleclas_value_and_configurable_by_yaml():
    loss = pl.build_loss([{KEY: {"weight": 1.0, "add_absolute": True, "an_fallback": 0.0}}])
    assert loss.loss_func[0].an_fallback == 0.0
    assert TripletAngularMarginLoss().an_fallback == 1.0
    assert TripletAngularMarginLoss_XBM(0, 8, 1.0, 4, an_fallback=0.5).an_fallback == 0.5


# ---------------------------------------------------------------- boundary checks

def test_zero_feature_row_gives_finite_loss():
    x = np.random.default_rng(0).normal(size=(4, 3))
    x[1] = 0.0
    out = _value(TripletAngularMarginLoss(), x, np.array([0, 0, 1, 1]))
    assert np.isfinite(out.numpy()).all()


@pytest.mark.parametrize("feats,labels,message", [
    (np.ones([4, 3, 2], "float32"), np.zeros([4], "int64"), r"shape \[N, D\]"),
    (np.ones([4, 3], "float32"), np.zeros([5], "int64"), "5 entries but the batch has 4"),
    (np.ones([4, 3], "float32"), np.zeros([4], "float32"), "integer class ids"),
    (np.full([4, 3], np.nan, "float32"), np.zeros([4], "int64"), "NaN"),
    (np.ones([0, 3], "float32"), np.zeros([0], "int64"), "empty batch"),
])
def test_bad_input_is_an_input_error(feats, labels, message):
    for layer in (TripletAngularMarginLoss(), TripletAngularMarginLoss_XBM(0, 8, 1.0, 3)):
        with pytest.raises(InputError, match=message):
            layer({"features": paddle.to_tensor(feats)}, paddle.to_tensor(labels))


def test_missing_feature_key_names_present_keys():
    with pytest.raises(InputError, match=r"input\['neck'\].*\['backbone', 'logits'\]"):
        TripletAngularMarginLoss(feature_from="neck")({"backbone": paddle.ones([2, 2]),
                                                       "logits": paddle.ones([2, 2])}, paddle.to_tensor([0, 1]))


def test_bad_constructor_values_are_value_errors():
    with pytest.raises(ValueError, match="reduction"):
        TripletAngularMarginLoss(reduction="avg")
    with pytest.raises(ValueError, match="start_iter"):
        TripletAngularMarginLoss_XBM(-1, 8, 1.0, 4)
    with pytest.raises(ValueError, match="size must be >= 1"):
        TripletAngularMarginLoss_XBM(0, 0, 1.0, 4)


def test_runs_under_to_static():
    c = case("metric", f"{KEY}__pk_absolute")
    layer = TripletAngularMarginLoss(**c.meta["params"])
    x = tensor(c["input__features"], grad=True)
    out = paddle.jit.to_static(lambda f, t: layer({"features": f}, t)[KEY])(x, tensor(c["label"]))
    out.backward()
    assert_close(out, c["out__" + KEY], "to_static output")
    assert_close(x.grad, c["grad__features"], "to_static gradient")


# ---------------------------------------------------------------- XBM

def test_xbm_memory_term_starts_after_start_iter_calls():
    rng = np.random.default_rng(5)
    loss = TripletAngularMarginLoss_XBM(start_iter=2, xbm_size=16, xbm_weight=0.5, feat_dim=4)
    y = np.array([0, 0, 1, 1])
    for call in range(1, 5):
        x = rng.normal(size=(4, 4)).astype("float32")
        out = float(_value(loss, x, y, XKEY))
        assert int(loss.iter) == call
        assert int(loss.xbm.filled) == (0 if call <= 2 else 4 * (call - 2))
        if call <= 2:
            np.testing.assert_allclose(out, ref_angular(x, y), rtol=1e-5)


def test_xbm_label_zero_in_last_slot_keeps_full_memory():
    # PaddleClas: after the wrap the memory looks empty and the forward pass raises.
    c = case("metric", f"{XKEY}__empty_memory_error")
    loss = TripletAngularMarginLoss_XBM(**c.meta["params"])
    _replay(c, loss, XKEY, [0])
    x, y = c["input__features__s1"], c["label__s1"]
    out = _value(loss, x, y, XKEY)
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    expected = ref_angular(x, y) + ref_angular(x, y, keys=xn, key_labels=y)
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-5)
    np.testing.assert_array_equal(loss.xbm.targets.numpy(), c["state__xbm_targets__s1"])
    assert int(loss.xbm.filled) == 4


def test_xbm_against_partial_memory_matches_reference_on_unbalanced_batches():
    rng = np.random.default_rng(9)
    params = dict(margin=0.3, add_absolute=True, absolute_loss_weight=0.2, ap_value=0.8, an_value=0.3)
    loss = TripletAngularMarginLoss_XBM(0, 20, 0.7, 5, **params)
    mem_x, mem_y = np.zeros((0, 5)), np.zeros(0, "int64")
    for y in ([1, 1, 2, 3, 3, 3], [0, 2, 2, 4, 4, 1]):
        y = np.array(y)
        x = rng.normal(size=(6, 5))
        xn = x / np.linalg.norm(x, axis=1, keepdims=True)
        mem_x, mem_y = np.concatenate([mem_x, xn]), np.concatenate([mem_y, y])
        out = _value(loss, x.astype("float32"), y, XKEY)
        expected = ref_angular(x, y, **params) + 0.7 * ref_angular(x, y, mem_x, mem_y, **params)
        np.testing.assert_allclose(out.numpy(), expected, rtol=1e-5, atol=1e-6)


def test_xbm_unnormalised_similarities_above_ten_are_mined_exactly():
    # PaddleClas fills masked entries with ±10, which wins the min/max once |S| > 10.
    rng = np.random.default_rng(2)
    x, y = 3.0 + rng.random((6, 4)), np.array([0, 0, 1, 1, 2, 2])
    loss = TripletAngularMarginLoss_XBM(0, 12, 1.0, 4, normalize_feature=False, margin=0.5)
    out = _value(loss, x, y, XKEY)
    expected = 2 * ref_angular(x, y, normalize=False)
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-5)


def test_xbm_single_class_batch_gives_zero_with_gradient_path():
    loss = TripletAngularMarginLoss_XBM(0, 8, 1.0, 3, add_absolute=True)
    x = paddle.to_tensor(np.random.default_rng(1).normal(size=(4, 3)), dtype="float32", stop_gradient=False)
    out = loss({"features": x}, paddle.to_tensor([5, 5, 5, 5]))[XKEY]
    assert float(out) == 0.0
    out.backward()
    assert np.all(x.grad.numpy() == 0.0)


def test_xbm_reduction_none_keeps_paddleclas_n_by_1_shape():
    loss = TripletAngularMarginLoss_XBM(0, 8, 1.0, 3, reduction="none")
    x = np.random.default_rng(1).normal(size=(4, 3)).astype("float32")
    assert _value(loss, x, np.array([0, 0, 1, 1]), XKEY).shape == [4, 1]


def test_xbm_accepts_float64_features_and_int32_labels():
    loss = TripletAngularMarginLoss_XBM(0, 8, 1.0, 3)
    x = np.random.default_rng(4).normal(size=(4, 3))
    out = _value(loss, x, np.array([0, 0, 1, 1], "int32"), XKEY)
    assert out.dtype == paddle.float64
    np.testing.assert_allclose(out.numpy(), 2 * ref_angular(x, [0, 0, 1, 1]), rtol=1e-6)


def test_xbm_memory_of_wrong_feature_size_is_an_input_error():
    loss = TripletAngularMarginLoss_XBM(3, 8, 1.0, feat_dim=5)  # rejected even before start_iter
    with pytest.raises(InputError, match="5-d features"):
        _value(loss, np.ones([4, 3], "float32"), np.array([0, 0, 1, 1]), XKEY)
    assert int(loss.iter) == 0, "a rejected batch must not count as a call"


def test_xbm_state_dict_resume_equals_uninterrupted_run():
    rng = np.random.default_rng(8)
    batches = [(rng.normal(size=(6, 4)).astype("float32"), rng.integers(0, 3, 6)) for _ in range(6)]
    make = lambda: TripletAngularMarginLoss_XBM(1, 10, 0.5, 4, add_absolute=True)  # noqa: E731
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
    for name, value in straight.state_dict().items():
        np.testing.assert_array_equal(resumed.state_dict()[name].numpy(), value.numpy(), err_msg=name)


def test_xbm_gradient_equals_finite_differences_with_memory_held_fixed():
    # The memory keys are detached, so the reference perturbs the queries only, against the memory
    # contents the step actually used (including the detached copy of the current batch).
    rng = np.random.default_rng(12)
    params = dict(margin=0.7, add_absolute=True, ap_value=0.95, an_value=0.05)
    loss = TripletAngularMarginLoss_XBM(0, 12, 0.6, 4, **params)
    _value(loss, rng.normal(size=(5, 4)).astype("float32"), np.array([0, 1, 1, 2, 3]), XKEY)
    x, y = rng.normal(size=(5, 4)), np.array([0, 0, 1, 2, 2])
    analytic = analytic_grad(lambda t: loss({"features": t}, paddle.to_tensor(y))[XKEY], [x], 0)
    keys, key_labels = loss.xbm.feats.astype("float64"), loss.xbm.targets.clone()
    slots = loss.xbm.valid_slots().reshape([1, -1])
    assert int(loss.xbm.filled) == 10
    plain = TripletAngularMarginLoss(**params)

    def fixed_memory(t):
        xn = paddle.nn.functional.normalize(t, axis=1)
        pos, neg = positive_negative(paddle.to_tensor(y), key_labels)
        pos, neg = paddle.logical_and(pos, slots), paddle.logical_and(neg, slots)
        memory_term = plain._terms(xn, keys, pos, neg)
        return plain({"features": t}, paddle.to_tensor(y))[KEY] + 0.6 * memory_term

    np.testing.assert_allclose(analytic, numeric_grad(fixed_memory, [x], 0), rtol=1e-5, atol=1e-7)


def test_xbm_under_to_static_matches_eager_and_updates_state():
    rng = np.random.default_rng(13)
    batches = [(rng.normal(size=(4, 4)).astype("float32"), np.array([0, 0, 1, 1])) for _ in range(3)]
    eager, static = TripletAngularMarginLoss_XBM(1, 16, 0.5, 4), TripletAngularMarginLoss_XBM(1, 16, 0.5, 4)
    fn = paddle.jit.to_static(lambda f, t: static({"features": f}, t)[XKEY])
    for x, y in batches:
        np.testing.assert_allclose(float(fn(paddle.to_tensor(x), paddle.to_tensor(y))),
                                   float(_value(eager, x, y, XKEY)), rtol=1e-6)
    assert int(static.iter) == 3 and int(static.xbm.filled) == 8
