"""The pair losses' closed-form core (functional.pair_core) against their generic autograd path: float64
values and gradients on random batches, every label form and core reducer, edge batches, and which calls
take the core."""
import numpy as np
import paddle
import pytest

from losses.crossfw import np_reference as R
from paddle_losses.losses.crossfw.pair import CircleLoss, LiftedStructureLoss, MultiSimilarityLoss, PMLContrastiveLoss
from paddle_losses.losses.crossfw.softmax import NTXentLoss, PMLSupConLoss

# PyLayer nodes of the closed-form cores (SupCon runs on functional.supcon's)
CORE_NODES = ("GradNodePyLayer__SimilarityCore", "GradNodePyLayer__SupConRows")


def _on_core(value):
    """Whether the autograd graph of ``value`` goes through a closed-form core."""
    todo, depth = [value.grad_fn], 0
    while todo and depth < 12:  # the cores sit a few nodes below the reducer
        if any(node.name() in CORE_NODES for node in todo):
            return True
        todo, depth = [nxt for node in todo for nxt in node.next_functions if nxt is not None], depth + 1
    return False

LOSSES = {
    "contrastive": (PMLContrastiveLoss, {"pos_margin": 0.1, "neg_margin": 0.9}),
    "contrastive_default": (PMLContrastiveLoss, {}),
    "multi_similarity": (MultiSimilarityLoss, {}),
    "multi_similarity_miner": (MultiSimilarityLoss, {"miner": "MultiSimilarityMiner", "beta": 10.0}),
    "circle": (CircleLoss, {}),
    "circle_soft": (CircleLoss, {"gamma": 4.0, "m": 0.25}),
    "lifted": (LiftedStructureLoss, {}),
    "lifted_margins": (LiftedStructureLoss, {"neg_margin": 0.5, "pos_margin": 0.3}),
    "ntxent": (NTXentLoss, {}),
    "ntxent_warm": (NTXentLoss, {"temperature": 0.5}),
    "supcon": (PMLSupConLoss, {}),
}
# P×K, unbalanced with singletons, a single class, no positives at all, the smallest batches
LABELS = {
    "pk": np.arange(16) // 4,
    "unbalanced": np.array([1, 0, 2, 0, 0, 1, 0, 2, 1, 0, 3]),
    "one_class": np.zeros(5, dtype=np.int64),
    "all_singletons": np.arange(6),
    "two_same": np.array([4, 4]),
    "two_different": np.array([4, 7]),
}
REDUCERS = ["MeanReducer", "AvgNonZeroReducer", "SumReducer"]


def _both(loss, x, target, **kw):
    """``(value, gradient, grad-node name)`` of the core path and of the generic path (float64)."""
    out = []
    for use_core in (True, False):
        loss._use_core = use_core
        t = paddle.to_tensor(x)
        t.stop_gradient = False
        value = loss({"features": t}, target, **kw)[type(loss).__name__]
        value.backward()
        out.append((float(value), t.grad.numpy(), _on_core(value)))
    return out


def _assert_same(fast, generic, rtol=1e-10, atol=1e-11):
    """Equal values and gradients (``atol`` relative to the largest gradient entry, or 1)."""
    (v1, g1, on_core), (v2, g2, generic_on_core) = fast, generic
    assert on_core and not generic_on_core
    np.testing.assert_allclose(v1, v2, rtol=rtol, atol=1e-12)
    np.testing.assert_allclose(g1, g2, rtol=rtol, atol=atol * max(1.0, np.abs(g2).max()))


def _x(n, seed, d=6):
    return np.random.default_rng(seed).normal(size=(n, d))


@pytest.mark.parametrize("labels", list(LABELS))
@pytest.mark.parametrize("case", list(LOSSES))
def test_core_equals_generic_path_on_class_ids(case, labels):
    cls, kw = LOSSES[case]
    y = LABELS[labels]
    fast, generic = _both(cls(**kw), _x(len(y), 3), paddle.to_tensor(y))
    _assert_same(fast, generic)


@pytest.mark.parametrize("reducer", REDUCERS)
@pytest.mark.parametrize("case", ["contrastive", "multi_similarity_miner", "circle", "lifted", "ntxent_warm",
                                  "supcon"])
def test_core_equals_generic_path_for_each_core_reducer(case, reducer):
    cls, kw = LOSSES[case]
    y = LABELS["unbalanced"]
    fast, generic = _both(cls(**kw, reducer=reducer), _x(len(y), 5), paddle.to_tensor(y))
    _assert_same(fast, generic)


@pytest.mark.parametrize("case", list(LOSSES))
def test_core_equals_generic_path_on_multi_hot_labels(case):
    cls, kw = LOSSES[case]
    rng = np.random.default_rng(8)
    multi_hot = (rng.uniform(size=(10, 4)) < 0.3).astype("float32")
    multi_hot[0] = 0  # a row without any label: a negative of every row
    fast, generic = _both(cls(**kw), _x(10, 9), paddle.to_tensor(multi_hot))
    _assert_same(fast, generic)


@pytest.mark.parametrize("case", ["contrastive", "multi_similarity", "multi_similarity_miner", "circle",
                                  "ntxent", "supcon"])
def test_core_equals_generic_path_on_an_asymmetric_positive_mask(case):
    cls, kw = LOSSES[case]
    mask = np.random.default_rng(10).uniform(size=(9, 9)) < 0.35
    fast, generic = _both(cls(**kw), _x(9, 11), None, positive_mask=paddle.to_tensor(mask))
    _assert_same(fast, generic)


@pytest.mark.parametrize("case", ["contrastive", "multi_similarity_miner", "circle", "lifted", "ntxent"])
def test_core_matches_generic_path_in_float32(case):
    cls, kw = LOSSES[case]
    y = np.arange(32) // 4
    fast, generic = _both(cls(**kw), _x(32, 12, d=16).astype("float32"), paddle.to_tensor(y))
    _assert_same(fast, generic, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("cls,ref", [(PMLContrastiveLoss, R.contrastive), (LiftedStructureLoss, R.lifted)])
@pytest.mark.parametrize("same_label", [True, False])
def test_duplicate_rows_are_at_distance_zero_with_a_finite_gradient(cls, ref, same_label):
    """d = 0 off the diagonal (a row repeated, also scaled: same unit row) is exactly 0, as the float64
    reference's explicit differences; its pair contributes no gradient through the distance (0 there)."""
    y = np.array([0, 0, 1, 1, 2, 2, 0, 1])
    x = _x(len(y), 13)
    x[7] = 2.0 * x[0 if not same_label else 3]  # x̂_7 == x̂_0 (labels 0 / 1) or x̂_3 (labels 1 / 1)
    loss = cls()
    t = paddle.to_tensor(x)
    t.stop_gradient = False
    value = loss({"features": t}, paddle.to_tensor(y))[cls.__name__]
    value.backward()
    assert _on_core(value)
    np.testing.assert_allclose(float(value), ref(x, y), rtol=1e-10)
    assert np.isfinite(t.grad.numpy()).all()


def test_half_precision_embeddings_take_the_core_in_float32():
    y = paddle.to_tensor(np.arange(16) // 4)
    t = paddle.to_tensor(_x(16, 15).astype("float16"))
    t.stop_gradient = False
    value = MultiSimilarityLoss(miner="MultiSimilarityMiner")({"features": t}, y)["MultiSimilarityLoss"]
    value.backward()
    assert _on_core(value) and value.dtype == paddle.float32
    assert t.grad.dtype == paddle.float16 and np.isfinite(t.grad.numpy().astype("float32")).all()


@pytest.mark.parametrize("loss,kw", [
    (PMLContrastiveLoss(reducer="DoNothingReducer"), {}),
    (PMLContrastiveLoss(distance={"name": "LpDistance", "power": 2}), {}),
    (PMLContrastiveLoss(miner="BatchHardMiner"), {}),
    (CircleLoss(reducer={"name": "ThresholdReducer", "low": 0.0}), {}),
    (MultiSimilarityLoss(miner={"name": "MultiSimilarityMiner", "distance": "LpDistance"}), {}),
    (MultiSimilarityLoss(beta=200.0), {}),  # e^{β(1 − base)} beyond float32's bound
    (NTXentLoss(temperature=0.02), {}),
    (LiftedStructureLoss(), {"positive_mask": np.eye(8, k=1, dtype=bool)}),
    (NTXentLoss(), {"indices_tuple": (np.array([0, 1]), np.array([1, 0]), np.array([4, 5]))}),
    (PMLSupConLoss(distance={"name": "DotProductSimilarity", "normalize_embeddings": False}), {}),
], ids=lambda v: type(v).__name__ if not isinstance(v, dict) else ",".join(v))
def test_calls_outside_the_core_take_the_generic_path(loss, kw):
    kw = {k: paddle.to_tensor(v) if not isinstance(v, tuple) else v for k, v in kw.items()}
    t = paddle.to_tensor(_x(8, 16).astype("float32"))
    t.stop_gradient = False
    value = loss({"features": t}, paddle.to_tensor(np.arange(8) // 2), **kw)[type(loss).__name__]
    assert not _on_core(value)
