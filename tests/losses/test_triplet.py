"""TripletLoss and TripletLossV2: PaddleClas parity (incl. tie rules), per-row mining on any batch."""
import numpy as np
import paddle
import pytest

from golden import assert_close, case, tensor
from gradcheck import assert_gradcheck
from paddle_losses.errors import InputError
from paddle_losses.losses.triplet import TripletLoss, TripletLossV2


def ref_euclidean_triplet(x, y, margin, normalize=False):
    """Per-anchor farthest positive (self included) and closest negative; anchors lacking a negative are
    left out of the mean."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y).reshape(-1)
    if normalize:
        x = x / (np.linalg.norm(x, axis=1, keepdims=True) + 1e-12)
    d = np.sqrt(np.maximum(((x[:, None, :] - x[None, :, :]) ** 2).sum(-1), 1e-12))
    pos = y[:, None] == y[None, :]
    valid = (~pos).any(1)
    ap = np.where(pos, d, -np.inf).max(1)
    an = np.where(~pos, d, np.inf).min(1)
    per_row = np.where(valid, np.maximum(ap - an + margin, 0.0), 0.0)
    return per_row.sum() / max(valid.sum(), 1)


def _value(layer, x, y, key, feature_key="features"):
    return layer({feature_key: paddle.to_tensor(x)}, paddle.to_tensor(y))[key]


def _replay(c, layer, key):
    inp = {k: tensor(v, grad=True) for k, v in c.with_prefix("input__").items()}
    out = layer(inp, tensor(c["label"]))[key]
    assert_close(out, c["out__" + key], f"{c.name} output")
    out.backward()
    for name, g in c.with_prefix("grad__").items():
        assert_close(inp[name].grad, g, f"{c.name} grad {name}")


@pytest.mark.parametrize("name", ["pk_default", "tie_first_index", "unbalanced"])
def test_triplet_loss_golden_parity(name):
    c = case("metric", f"TripletLoss__{name}")
    _replay(c, TripletLoss(**c.meta["params"]), "TripletLoss")


@pytest.mark.parametrize("name", ["pk_default", "backbone_nonorm", "tie_equal_split"])
def test_triplet_loss_v2_golden_parity(name):
    c = case("metric", f"TripletLossV2__{name}")
    _replay(c, TripletLossV2(**c.meta["params"]), "TripletLossV2")


def test_tie_rules_differ_between_v1_first_index_and_v2_equal_split():
    c = case("metric", "TripletLoss__tie_first_index")
    grads = []
    for layer, key in ((TripletLoss(margin=0.5), "TripletLoss"),
                       (TripletLossV2(margin=0.5, normalize_feature=False), "TripletLossV2")):
        x = tensor(c["input__features"], grad=True)
        layer({"features": x}, tensor(c["label"]))[key].backward()
        grads.append(x.grad.numpy())
    assert not np.allclose(grads[0], grads[1])
    assert_close(grads[1], case("metric", "TripletLossV2__tie_equal_split")["grad__features"], "V2 split")


@pytest.mark.parametrize("name", ["unbalanced_error", "unbalanced_divisible_silent"])
def test_v2_unbalanced_batch_is_mined_per_row(name):
    # PaddleClas raises (counts 3,2,3) or silently mixes rows (counts 2,4,2).
    c = case("metric", f"TripletLossV2__{name}")
    x, y = c["input__features"], c["label"]
    out = _value(TripletLossV2(), x, y, "TripletLossV2")
    np.testing.assert_allclose(out.numpy(), ref_euclidean_triplet(x, y, 0.5, normalize=True), rtol=1e-5)
    if "out__TripletLossV2" in c:
        assert abs(float(out) - float(c["out__TripletLossV2"])) > 0.1


def test_single_class_batch_gives_zero_with_gradient_path():
    # PaddleClas: AttributeError ('float' object has no attribute 'unsqueeze') for TripletLoss.
    c = case("metric", "TripletLoss__single_class_error")
    for layer, key in ((TripletLoss(), "TripletLoss"), (TripletLossV2(), "TripletLossV2")):
        x = tensor(c["input__features"], grad=True)
        out = layer({"features": x}, tensor(c["label"]))[key]
        assert float(out) == 0.0
        out.backward()
        assert np.all(x.grad.numpy() == 0.0)


@pytest.mark.parametrize("labels", [[0, 0, 1, 1, 2, 2, 3, 3], [0, 0, 0, 0, 1, 2, 2, 3], [4, 4, 4, 1, 1, 1, 1, 1]])
@pytest.mark.parametrize("which", ["v1", "v2", "v2_raw"])
def test_matches_float64_reference_on_random_batches(labels, which):
    rng = np.random.default_rng(len(labels) + labels[3] + len(which))
    x, y = rng.normal(size=(8, 5)), np.array(labels)
    if which == "v1":
        out, ref = _value(TripletLoss(margin=0.7), x, y, "TripletLoss"), ref_euclidean_triplet(x, y, 0.7)
    elif which == "v2":
        out = _value(TripletLossV2(margin=0.4), x, y, "TripletLossV2")
        ref = ref_euclidean_triplet(x, y, 0.4, normalize=True)
    else:
        out = _value(TripletLossV2(margin=0.3, normalize_feature=False, feature_from="backbone"), x, y,
                     "TripletLossV2", "backbone")
        ref = ref_euclidean_triplet(x, y, 0.3)
    np.testing.assert_allclose(out.numpy(), ref, rtol=1e-7)


@pytest.mark.parametrize("layer,key", [(TripletLoss(margin=2.0), "TripletLoss"),
                                       (TripletLossV2(margin=0.9), "TripletLossV2")])
def test_finite_difference_gradient_on_unbalanced_batch(layer, key):
    rng = np.random.default_rng(21)
    x, y = rng.normal(size=(7, 4)), np.array([0, 0, 0, 1, 1, 2, 2])
    assert_gradcheck(lambda t: layer({"features": t}, paddle.to_tensor(y))[key], [x])


@pytest.mark.parametrize("layer", [TripletLoss(), TripletLossV2()])
def test_runs_under_to_static(layer):
    key = type(layer).__name__
    c = case("metric", f"{key}__pk_default")
    x = tensor(c["input__features"], grad=True)
    out = paddle.jit.to_static(lambda f, t: layer({"features": f}, t)[key])(x, tensor(c["label"]))
    out.backward()
    assert_close(out, c["out__" + key], "to_static output")
    assert_close(x.grad, c["grad__features"], "to_static gradient")


@pytest.mark.parametrize("layer", [TripletLoss(), TripletLossV2()])
@pytest.mark.parametrize("feats,labels,message", [
    (np.ones([4], "float32"), np.zeros([4], "int64"), r"shape \[N, D\]"),
    (np.ones([4, 3], "float32"), np.zeros([3], "int64"), "3 entries but the batch has 4"),
    (np.ones([4, 3], "float32"), np.zeros([4], "float64"), "integer class ids"),
    (np.ones([4, 3], "int64"), np.zeros([4], "int64"), "floating-point"),
])
def test_bad_input_is_an_input_error(layer, feats, labels, message):
    with pytest.raises(InputError, match=message):
        layer({"features": paddle.to_tensor(feats)}, paddle.to_tensor(labels))


def test_missing_key_names_the_keys_present():
    with pytest.raises(InputError, match=r"input\['features'\].*\['logits'\]"):
        TripletLoss()({"logits": paddle.ones([2, 2])}, paddle.to_tensor([0, 1]))
    with pytest.raises(InputError, match=r"input\['backbone'\]"):
        TripletLossV2(feature_from="backbone")({"features": paddle.ones([2, 2])}, paddle.to_tensor([0, 1]))


def test_self_pair_distance_is_exactly_the_clip_floor_for_large_features():
    # Every class is a singleton, so each anchor's only positive is itself. The explicit difference gives
    # d = sqrt(1e-12) = 1e-6 with no gradient; PaddleClas's Gram form gives float32 rounding noise of
    # ||x||² (here ~1e-5, so d ~ 3e-3) with a spurious gradient (docs/compatibility.md T16).
    rng = np.random.default_rng(16)
    xn = (30.0 * rng.normal(size=(6, 8))).astype(np.float32)
    x = paddle.to_tensor(xn, stop_gradient=False)
    out = TripletLoss(margin=1e3)({"features": x}, paddle.to_tensor(np.arange(6)))["TripletLoss"]
    out.backward()
    x64 = xn.astype(np.float64)
    dist = np.sqrt(((x64[:, None] - x64[None]) ** 2).sum(-1)) + np.diag(np.full(6, np.inf))
    an, nearest = dist.min(1), dist.argmin(1)
    np.testing.assert_allclose(float(out), (1e-6 + 1e3 - an).mean(), rtol=1e-6)
    grad = np.zeros_like(x64)  # d/dx of mean_i (-an_i): only the negative pairs contribute
    for i, j in enumerate(nearest):
        u = (x64[i] - x64[j]) / an[i]
        grad[i] -= u / 6
        grad[j] += u / 6
    np.testing.assert_allclose(x.grad.numpy(), grad, rtol=1e-4, atol=1e-6)
