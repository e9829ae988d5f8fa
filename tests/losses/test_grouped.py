"""TriHardLoss, MSMLoss, EmlLoss, NpairsLoss: layout-defined pairs, PaddleClas parity, any batch size."""
import math

import numpy as np
import paddle
import pytest

from golden import assert_close, case, cases, tensor
from gradcheck import assert_gradcheck
from paddle_losses.errors import InputError
from paddle_losses.losses.grouped import EmlLoss, MSMLoss, NpairsLoss, TriHardLoss


# ---------------------------------------------------------------- float64 references

def _layout(n, k, normalize, x):
    x = np.asarray(x, dtype=np.float64)
    if normalize:
        x = x / np.linalg.norm(x, axis=1, keepdims=True)
    q = ((x[:, None, :] - x[None, :, :]) ** 2).sum(-1)
    g = np.arange(n) // k
    same = g[:, None] == g[None, :]
    return q, same & ~np.eye(n, dtype=bool), ~same


def ref_trihard(x, k, margin):
    q, pos, neg = _layout(len(x), k, True, x)
    valid = pos.any(1)
    hp = np.where(pos, q, -np.inf).max(1)
    hn = np.where(neg, q, np.inf).min(1)
    return np.maximum(hp + margin - hn, 0)[valid].mean()


def ref_msm(x, k, margin):
    q, pos, neg = _layout(len(x), k, True, x)
    return max(q[pos].max() + margin - q[neg].min(), 0.0)


def ref_eml(x, k, tau=20.0, beta=1e5):
    q, pos, neg = _layout(len(x), k, False, x)
    out = []
    for i in range(len(x)):
        if not pos[i].any():
            continue
        p, n = q[i][pos[i]], q[i][neg[i]]
        pm, nm = np.exp(p - p.max()).mean(), np.exp(n.min() - n).mean()
        b, th = p.max() - n.min(), pm * nm
        f = lambda t, bb: math.log(1 + beta * t * math.exp(bb)) / math.log(1 + beta)  # noqa: E731
        g = lambda t, bb: (math.log(t) + bb + math.log(beta)) / math.log(1 + beta)  # noqa: E731
        out.append(f(th, min(b, tau)) + g(th, max(b, tau)) - f(th, tau))
    return np.mean(out)


def ref_npairs(x, reg_lambda):
    x = np.asarray(x, dtype=np.float64)
    logits = x[0::2] @ x[1::2].T
    logp = logits - logits.max(1, keepdims=True)
    logp = logp - np.log(np.exp(logp).sum(1, keepdims=True))
    return -np.diag(logp).mean() + 0.5 * reg_lambda * (x ** 2).sum(1).mean()


def _value(layer, x, label=None):
    out = layer({"features": paddle.to_tensor(x)}, None if label is None else paddle.to_tensor(label))
    return next(iter(out.values()))


# ---------------------------------------------------------------- golden replay

_CLASSES = {"TriHardLoss": TriHardLoss, "MSMLoss": MSMLoss, "EmlLoss": EmlLoss, "NpairsLoss": NpairsLoss}
_PARITY = [c.name for c in cases("metric") if c.meta["class"] in _CLASSES and "mismatch" not in c.name]


@pytest.mark.parametrize("name", _PARITY)
def test_golden_parity(name):
    c = case("metric", name)
    layer = _CLASSES[c.meta["class"]](**c.meta["params"])
    x = tensor(c["input__features"], grad=True)
    out = layer({"features": x}, tensor(c["label"]))
    (key,) = c.meta["output_keys"]
    assert list(out) == [key]
    assert_close(out[key], c["out__" + key], f"{name} output")
    out[key].backward()
    assert_close(x.grad, c["grad__features"], f"{name} grad")


def test_golden_cases_cover_every_class():
    assert {n.split("__")[0] for n in _PARITY} == set(_CLASSES)


# ---------------------------------------------------------------- any batch size

def test_msm_uses_the_actual_batch_not_a_truncated_matrix():
    # PaddleClas reads the first 36 entries of the flattened 8x8 matrix as a 6x6 matrix.
    c = case("metric", "MSMLoss__batch_size_mismatch_silent")
    x = c["input__features"]
    out = _value(MSMLoss(**c.meta["params"]), x)
    np.testing.assert_allclose(out.numpy(), ref_msm(x, 2, 0.1), rtol=1e-5)
    assert abs(float(out) - float(c["out__msmloss"])) > 0.1


@pytest.mark.parametrize("n", [6, 12, 7])
def test_batch_of_other_size_than_batch_size_is_computed_on_its_rows(n):
    # PaddleClas: TriHardLoss asserts N == batch_size; MSM/Eml raise IndexError for N < batch_size.
    x = np.random.default_rng(n).normal(size=(n, 5))
    np.testing.assert_allclose(_value(TriHardLoss(8, 2, 0.3), x).numpy(), ref_trihard(x, 2, 0.3), rtol=1e-5)
    np.testing.assert_allclose(_value(MSMLoss(8, 2, 0.3), x).numpy(), ref_msm(x, 2, 0.3), rtol=1e-5)
    np.testing.assert_allclose(_value(EmlLoss(8, 2), x).numpy(), ref_eml(x, 2), rtol=1e-5)


def test_trailing_singleton_group_is_left_out():
    x = np.random.default_rng(4).normal(size=(7, 5))
    x[6] = x[0] + 0.01  # the tail row becomes row 0's closest negative
    full = _value(TriHardLoss(6, 3, 0.2), x[:6])
    with_tail = _value(TriHardLoss(6, 3, 0.2), x)
    np.testing.assert_allclose(with_tail.numpy(), ref_trihard(x, 3, 0.2), rtol=1e-5)
    assert np.isfinite(_value(EmlLoss(6, 3), x).numpy())
    assert float(full) != float(with_tail)  # the tail row is a negative for the others


def test_labels_are_ignored():
    x = np.random.default_rng(1).normal(size=(8, 4)).astype("float32")
    for layer in (TriHardLoss(8, 2), MSMLoss(8, 2), EmlLoss(8, 2), NpairsLoss()):
        a = _value(layer, x, np.arange(8))
        b = _value(layer, x)
        assert float(a) == float(b)


@pytest.mark.parametrize("k", [2, 4])
def test_matches_float64_reference_on_random_batches(k):
    rng = np.random.default_rng(k)
    x = rng.normal(size=(12, 6))
    np.testing.assert_allclose(_value(TriHardLoss(12, k, 0.5), x).numpy(), ref_trihard(x, k, 0.5), rtol=1e-7)
    np.testing.assert_allclose(_value(MSMLoss(12, k, 0.5), x).numpy(), ref_msm(x, k, 0.5), rtol=1e-7)
    np.testing.assert_allclose(_value(EmlLoss(12, k), x).numpy(), ref_eml(x, k), rtol=1e-7)
    np.testing.assert_allclose(_value(EmlLoss(12, k), 3 * x).numpy(), ref_eml(3 * x, k), rtol=1e-7)
    np.testing.assert_allclose(_value(NpairsLoss(0.05), x).numpy(), ref_npairs(x, 0.05), rtol=1e-7)


@pytest.mark.parametrize("layer", [TriHardLoss(8, 2, 1.5), MSMLoss(8, 4, 2.0), EmlLoss(8, 2), NpairsLoss(0.1)],
                         ids=lambda layer: type(layer).__name__)
@pytest.mark.parametrize("scale", [1.0, 2.5])
def test_finite_difference_gradient(layer, scale):
    # scale 2.5 puts EmlLoss rows past the tau = 20 switch.
    x = scale * np.random.default_rng(7).normal(size=(8, 4))
    assert_gradcheck(lambda t: next(iter(layer({"features": t}, None).values())), [x], rtol=1e-4)


def test_runs_under_to_static():
    c = case("metric", "TriHardLoss__b12_k3")
    layer = TriHardLoss(**c.meta["params"])
    x = tensor(c["input__features"], grad=True)
    out = paddle.jit.to_static(lambda f: layer({"features": f})["trihardloss"])(x)
    out.backward()
    assert_close(out, c["out__trihardloss"], "to_static output")
    assert_close(x.grad, c["grad__features"], "to_static gradient")


# ---------------------------------------------------------------- boundary checks

@pytest.mark.parametrize("cls", [TriHardLoss, MSMLoss, EmlLoss])
def test_group_size_below_two_is_a_value_error(cls):
    with pytest.raises(ValueError, match="samples_each_class must be >= 2"):
        cls(8, 1)


def test_eml_batch_size_must_be_a_multiple_of_group_size():
    with pytest.raises(ValueError, match="multiple of samples_each_class"):
        EmlLoss(10, 4)


def test_npairs_odd_batch_is_an_input_error():
    with pytest.raises(InputError, match="even number of rows"):
        _value(NpairsLoss(), np.ones([5, 3], "float32"))


@pytest.mark.parametrize("layer", [TriHardLoss(8, 2), MSMLoss(8, 2), EmlLoss(8, 2), NpairsLoss()],
                         ids=lambda layer: type(layer).__name__)
@pytest.mark.parametrize("feats,message", [
    (np.ones([8], "float32"), r"shape \[N, D\]"),
    (np.full([8, 3], np.nan, "float32"), "NaN"),
    (np.ones([0, 3], "float32"), "empty batch"),
])
def test_bad_input_is_an_input_error(layer, feats, message):
    with pytest.raises(InputError, match=message):
        _value(layer, feats)


def test_missing_features_key_names_the_keys_present():
    with pytest.raises(InputError, match=r"input\['features'\].*\['backbone'\]"):
        TriHardLoss(8, 2)({"backbone": paddle.ones([8, 2])}, None)


def test_zero_feature_row_gives_finite_loss():
    x = np.random.default_rng(0).normal(size=(8, 3)).astype("float32")
    x[3] = 0.0
    for layer in (TriHardLoss(8, 2), MSMLoss(8, 2)):
        assert np.isfinite(_value(layer, x).numpy())


def test_layout_candidates_are_built_once_per_batch_size_and_match_the_group_masks():
    from paddle_losses.losses.grouped import group_masks, layout_candidates

    a, b = layout_candidates(10, 4), layout_candidates(10, 4)
    assert a is b  # eager calls reuse them
    pos, neg = group_masks(10, 4)
    np.testing.assert_array_equal(a.pos_excluded.numpy(), ~pos.numpy())
    np.testing.assert_array_equal(a.neg_excluded.numpy(), ~neg.numpy())
    # Rows 8 and 9 form a trailing partial group of 2: they still have a positive.
    assert a.has_pos.numpy().all() and a.has_neg.numpy().all()
    assert not layout_candidates(9, 4).has_pos.numpy()[8]  # a group of one has no positive
