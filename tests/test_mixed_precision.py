"""float16 / bfloat16 inputs for every registered loss, head and miner.

Each loss is called on the inputs of one golden case (or, for losses without a case, on a small P×K batch of
features), cast to float16 and to bfloat16. The reference is the same loss in float32 on the *cast* values
(so only the internal precision differs): values agree to 1e-2 relative, the loss comes back in float32 and
the gradient reaches every input finite and in the input's own dtype.
"""
import numpy as np
import paddle
import pytest

import paddle_losses  # noqa: F401  (registers everything)
from golden import cases
from paddle_losses import registry
from paddle_losses.errors import InputError
from paddle_losses.functional.mining import build_miner, list_miners
from paddle_losses.functional.normalize import l2_normalize
from paddle_losses.functional.reduction import row_sum

HALF = ("float16", "bfloat16")
RTOL = 1e-2


def _other_cases():
    out = {}
    for c in cases("other"):
        if c.meta.get("class") and "error" not in c.name and c.meta["class"] not in out:
            out[c.meta["class"]] = c
    return out


def _metric_cases():
    out = {}
    for c in cases("metric"):
        if (c.meta["call"] == "loss(input_dict, label)" and not c.meta.get("steps") and not c.meta.get("error")
                and "error" not in c.name and c.meta["class"] not in out and "label" in c):
            out[c.meta["class"]] = c
    return out


OTHER, METRIC = _other_cases(), _metric_cases()
METRIC_ANY = {c.meta["class"]: c for c in reversed(cases("metric"))}


def _other_args(case):
    """Positional arguments of an ``other`` case as numpy trees (an argument the case does not store is None)."""
    roots = {}
    for key, array in case.arrays.items():
        if key.startswith("arg."):
            *parents, leaf = key[len("arg."):].split(".")
            node = roots
            for part in parents:
                node = node.setdefault(part, {})
            node[leaf] = array
    return [_lists(roots.get(name)) for name in case.meta["arg_order"]]


def _lists(tree):
    """Dicts keyed "0", "1", ... (how a case flattens a list argument) back to lists."""
    if not isinstance(tree, dict):
        return tree
    tree = {k: _lists(v) for k, v in tree.items()}
    if tree and all(k.isdigit() for k in tree):
        return [tree[str(i)] for i in range(len(tree))]
    return tree


def _pk_batch():
    rng = np.random.default_rng(0)
    feats = rng.standard_normal((12, 16)).astype("float32")
    return [{"features": feats}, np.arange(12, dtype="int64") % 4]


# Losses without a plain golden case, or whose case needs more than (input_dict, label).
EXTRA_KWARGS = {
    "ArcFaceLoss": {"num_classes": 4, "embedding_size": 16},
    "CosFaceLoss": {"num_classes": 4, "embedding_size": 16},
    "SubCenterArcFaceLoss": {"num_classes": 4, "embedding_size": 16},
    "ProxyAnchorLoss": {"num_classes": 4, "embedding_size": 16},
    "ContrastiveLoss_XBM": {"xbm_size": 24, "xbm_weight": 1.0, "start_iter": 0, "margin": 0.5,
                            "embedding_size": 16},
    "TripletAngularMarginLoss_XBM": {"xbm_size": 24, "xbm_weight": 1.0, "start_iter": 0, "feat_dim": 16},
}
NOT_BUILDABLE = {"MixCELoss"}  # deprecated alias that refuses to build (CELoss takes its soft targets)


def recipe(name):
    """``(constructor kwargs, positional args as numpy trees)`` for loss ``name``."""
    if name in EXTRA_KWARGS:
        return dict(EXTRA_KWARGS[name]), _pk_batch()
    if name == "GoogLeNetLoss":
        c = METRIC_ANY[name]
        return {}, [[c["input__x0"], c["input__x1"], c["input__x2"]], c["label"]]
    if name == "SoftSupConLoss":
        c = METRIC_ANY[name]
        # max_probs is a detached pseudo-label confidence in training (Paddle's tile backward crashes
        # when it requires a gradient), so it stays a float32 constant here
        return {}, [c["input__feat"], {k: Const(v) if np.issubdtype(v.dtype, np.floating) else v
                                       for k, v in c.with_prefix("batch__").items()}]
    if name in OTHER:
        c = OTHER[name]
        return dict(c.params), _other_args(c)
    if name in METRIC:
        c = METRIC[name]
        return dict(c.params), [c.with_prefix("input__"), c["label"]]
    return {}, _pk_batch()


class Const:
    """A float array passed as a float32 tensor without gradient (not cast to the half dtype)."""

    def __init__(self, array):
        self.array = array


def _to_numpy(tree):
    if isinstance(tree, dict):
        return {k: _to_numpy(v) for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        return [_to_numpy(v) for v in tree]
    return tree.numpy() if isinstance(tree, paddle.Tensor) else tree


def _tensors(tree, dtype, leaves):
    """Numpy tree -> tensors; float arrays cast to ``dtype`` and made differentiable (collected in ``leaves``)."""
    if isinstance(tree, dict):
        return {k: _tensors(v, dtype, leaves) for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        return [_tensors(v, dtype, leaves) for v in tree]
    if isinstance(tree, Const):
        return paddle.to_tensor(tree.array.astype("float32"))
    if isinstance(tree, np.ndarray) and np.issubdtype(tree.dtype, np.floating):
        t = paddle.to_tensor(tree.astype("float32")).astype(dtype)
        t.stop_gradient = False
        leaves.append(t)
        return t
    return paddle.to_tensor(tree) if isinstance(tree, np.ndarray) else tree


def _half_values(tree, dtype):
    """The tree with every float array rounded through ``dtype`` (the float32 reference sees the cast values)."""
    if isinstance(tree, dict):
        return {k: _half_values(v, dtype) for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        return [_half_values(v, dtype) for v in tree]
    if isinstance(tree, np.ndarray) and np.issubdtype(tree.dtype, np.floating):
        return paddle.to_tensor(tree.astype("float32")).astype(dtype).astype("float32").numpy()
    return tree


def run(name, kwargs, args, dtype):
    paddle.seed(0)
    np.random.seed(0)
    loss = registry.get_loss(name)(**kwargs)
    leaves = []
    out = loss(*_tensors(args, dtype, leaves))
    if isinstance(out, paddle.Tensor):
        out = {"loss": out}
    total = sum(v.sum() for v in out.values() if isinstance(v, paddle.Tensor) and v.size > 0)
    if leaves and not total.stop_gradient:
        total.backward()
    return out, leaves


LOSSES = [n for n in registry.list_losses() if n not in NOT_BUILDABLE]


@pytest.mark.parametrize("dtype", HALF)
@pytest.mark.parametrize("name", LOSSES)
def test_loss_in_half_precision_matches_float32_on_the_cast_inputs(name, dtype):
    kwargs, args = recipe(name)
    half_args = _half_values(args, dtype)
    ref, _ = run(name, kwargs, half_args, "float32")
    out, leaves = run(name, kwargs, half_args, dtype)
    assert sorted(out) == sorted(ref)
    for key, value in out.items():
        if not isinstance(value, paddle.Tensor):
            continue
        # float32, or float64 where the loss accumulates in float64 for every input (as PaddleClas's does)
        assert value.dtype == ref[key].dtype and value.dtype in (paddle.float32, paddle.float64), \
            f"{name}.{key} returned {value.dtype}"
        got, want = value.numpy(), ref[key].numpy()
        assert np.isfinite(got).all(), f"{name}.{key}: non-finite"
        np.testing.assert_allclose(got, want, rtol=RTOL, atol=RTOL * max(1e-3, float(np.abs(want).max(initial=0))),
                                   err_msg=f"{name}.{key}")
    for t in leaves:
        if t.grad is not None:
            assert t.grad.dtype == t.dtype, f"{name}: gradient {t.grad.dtype} for a {t.dtype} input"
            assert np.isfinite(t.grad.astype("float32").numpy()).all(), f"{name}: non-finite gradient"


HEADS = {"ArcMargin": {"margin": 0.5, "scale": 64.0}, "CosMargin": {"margin": 0.35, "scale": 64.0},
         "CircleMargin": {"margin": 0.35, "scale": 64.0}, "AdaMargin": {"s": 64.0}, "FC": {}}


def test_every_registered_head_is_covered():
    assert sorted(HEADS) == sorted(registry.list_heads())


def _head_outputs(name, x, label):
    paddle.seed(0)
    head = registry.get_head(name)(embedding_size=x.shape[1], class_num=4, **HEADS[name])
    head.train()
    logits = head(x, label)
    loss = paddle.nn.functional.cross_entropy(logits.astype("float32"), label.reshape([-1, 1]))
    loss.backward()
    return logits, loss


@pytest.mark.parametrize("dtype", HALF)
@pytest.mark.parametrize("name", sorted(HEADS))
def test_head_in_half_precision_matches_float32_on_the_cast_inputs(name, dtype):
    rng = np.random.default_rng(1)
    half = paddle.to_tensor(rng.standard_normal((8, 16)).astype("float32")).astype(dtype)
    label = paddle.to_tensor(np.arange(8) % 4)
    ref_x = half.astype("float32")
    ref_x.stop_gradient = False
    ref, _ = _head_outputs(name, ref_x, label)
    half.stop_gradient = False
    out, loss = _head_outputs(name, half, label)
    assert out.dtype == paddle.float32
    np.testing.assert_allclose(out.numpy(), ref.numpy(), rtol=RTOL, atol=RTOL * float(np.abs(ref.numpy()).max()))
    assert half.grad.dtype == half.dtype and np.isfinite(half.grad.astype("float32").numpy()).all()


@pytest.mark.parametrize("dtype", ("float32",) + HALF)
@pytest.mark.parametrize("name", ["ArcMargin", "CosMargin", "CircleMargin", "AdaMargin"])
def test_margin_head_at_scale_64_with_cosines_at_plus_minus_one_stays_finite(name, dtype):
    paddle.seed(0)
    head = registry.get_head(name)(embedding_size=4, class_num=4, **HEADS[name])
    head.train()
    with paddle.no_grad():
        weight = [p for p in head.parameters() if p.shape == [4, 4]][0]
        weight.set_value(paddle.eye(4))  # class j's weight is the unit vector e_j
    # rows equal to +e_0 and -e_1: cosines exactly 1 and -1 against their classes
    x = paddle.to_tensor(np.array([[1, 0, 0, 0], [0, -1, 0, 0], [0, 0, 1, 0], [0, 0, 0, -1]], "float32")).astype(dtype)
    x.stop_gradient = False
    label = paddle.to_tensor(np.array([0, 1, 2, 3]))
    logits = head(x, label)
    loss = paddle.nn.functional.cross_entropy(logits, label.reshape([-1, 1]))
    loss.backward()
    assert np.isfinite(logits.numpy()).all() and np.isfinite(float(loss))
    assert np.isfinite(x.grad.astype("float32").numpy()).all()


@pytest.mark.parametrize("dtype", HALF)
@pytest.mark.parametrize("name", list_miners())
def test_miner_in_half_precision_mines_what_float32_mines(name, dtype):
    rng = np.random.default_rng(2)
    half = paddle.to_tensor(rng.standard_normal((12, 8)).astype("float32")).astype(dtype)
    labels = paddle.to_tensor(np.arange(12) % 3)
    miner = build_miner(name)
    got, want = miner(half, labels), miner(half.astype("float32"), labels)
    flat_got = [t for t in paddle.utils.flatten(got) if isinstance(t, paddle.Tensor)]
    flat_want = [t for t in paddle.utils.flatten(want) if isinstance(t, paddle.Tensor)]
    assert len(flat_got) == len(flat_want)
    for g, w in zip(flat_got, flat_want):
        assert g.dtype == w.dtype
        np.testing.assert_allclose(g.numpy(), w.numpy(), rtol=1e-6)


@pytest.mark.parametrize("dtype", ["int64", "int32", "bool", "complex64"])
def test_integer_bool_or_complex_features_are_refused_naming_the_dtype(dtype):
    loss = registry.get_loss("TripletLoss")()
    x = paddle.to_tensor(np.ones((4, 3))).astype(dtype)
    with pytest.raises(InputError, match=rf"{dtype}.*float16, bfloat16, float32, float64|"
                                         rf"float16, bfloat16, float32, float64.*{dtype}"):
        loss({"features": x}, paddle.to_tensor(np.array([0, 0, 1, 1])))


@pytest.mark.parametrize("variant", ["plain", "clamp", "add"])
@pytest.mark.parametrize("magnitude", [1e-30, 1e-12, 1.0, 1e19, 1e30, 3e37])
def test_l2_normalize_is_scale_safe(variant, magnitude):
    row = np.array([[3.0, -4.0, 0.0], [1.0, 2.0, -2.0]])
    x = paddle.to_tensor((row * magnitude).astype("float32"))
    x.stop_gradient = False
    y = l2_normalize(x, variant)
    y.sum().backward()
    expected = row / np.linalg.norm(row, axis=1, keepdims=True)
    if variant != "plain" and magnitude <= 1e-12:
        expected = row * magnitude / np.maximum(np.linalg.norm(row * magnitude, axis=1, keepdims=True), 1e-12) \
            if variant == "clamp" else row * magnitude / (np.sqrt(np.maximum(
                ((row * magnitude) ** 2).sum(axis=1, keepdims=True), 1e-30)) + 1e-12)
    np.testing.assert_allclose(y.numpy(), expected, rtol=1e-5, atol=1e-30)
    assert np.isfinite(x.grad.numpy()).all()


def test_l2_normalize_of_ordinary_rows_is_bit_identical_to_the_unscaled_formula():
    rng = np.random.default_rng(3)
    x = paddle.to_tensor(rng.standard_normal((16, 8)).astype("float32") * 100)
    x.stop_gradient = False
    y = l2_normalize(x, "clamp")
    y.sum().backward()
    x2 = paddle.to_tensor(x.numpy())
    x2.stop_gradient = False
    y2 = x2 * paddle.rsqrt(paddle.clip(row_sum(x2 * x2, keepdim=True), min=1e-24))  # the formula before scaling
    y2.sum().backward()
    assert np.array_equal(y.numpy(), y2.numpy())
    np.testing.assert_allclose(x.grad.numpy(), x2.grad.numpy(), rtol=1e-6, atol=1e-9)
