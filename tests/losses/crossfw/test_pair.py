"""PMLContrastiveLoss, MultiSimilarityLoss, CircleLoss, LiftedStructureLoss: float64 NumPy references on
fresh batches (balanced, unbalanced, singleton), finite-difference gradients, miners, validation."""
import numpy as np
import paddle
import pytest

import paddle_losses as pl
from golden import tensor
from gradcheck import assert_gradcheck
from losses.crossfw import np_reference as R
from paddle_losses.losses.crossfw.pair import CircleLoss, LiftedStructureLoss, MultiSimilarityLoss, PMLContrastiveLoss

LABELS = {"pk": [0, 0, 0, 1, 1, 1, 2, 2, 2], "unbalanced": [1, 0, 2, 0, 0, 1, 0, 2, 1, 0],
          "singleton": [0, 1, 0, 2, 1, 0, 1]}
CASES = [
    (PMLContrastiveLoss, {"pos_margin": 0.1, "neg_margin": 0.9}, lambda x, y: R.contrastive(x, y, 0.1, 0.9)),
    (MultiSimilarityLoss, {}, R.multi_similarity),
    (CircleLoss, {}, R.circle),
    (LiftedStructureLoss, {}, R.lifted),
]

KEEP_ALIVE = []


def _data(kind, seed=0, d=5):
    labels = np.array(LABELS[kind])
    return np.random.default_rng(seed).normal(size=(len(labels), d)), labels


def _run(loss, x, y):
    return loss({"features": x}, y)[type(loss).__name__]


@pytest.mark.parametrize("kind", list(LABELS))
@pytest.mark.parametrize("cls,kw,ref", CASES, ids=[c[0].__name__ for c in CASES])
def test_matches_numpy_float64(cls, kw, ref, kind):
    x, y = _data(kind)
    np.testing.assert_allclose(float(_run(cls(**kw), tensor(x), paddle.to_tensor(y))), ref(x, y), rtol=1e-10)


@pytest.mark.parametrize("cls,kw", [(PMLContrastiveLoss, {"pos_margin": 0.1, "neg_margin": 1.2}),
                                    (MultiSimilarityLoss, {"alpha": 2.0, "beta": 5.0}),
                                    (LiftedStructureLoss, {})])
def test_finite_difference_gradient(cls, kw):
    x, y = _data("unbalanced", 1, d=4)
    loss, labels = cls(**kw), paddle.to_tensor(y)
    # CircleLoss detaches its weights on purpose (PML): see test_circle_weights_are_detached
    assert_gradcheck(lambda t: _run(loss, t, labels), [x])


def test_circle_weights_are_detached():
    """Autograd of CircleLoss equals the derivative with the [·]₊ weights held constant."""
    x, y = _data("pk", 2, d=4)
    loss, labels = CircleLoss(gamma=4.0), paddle.to_tensor(y)
    t = tensor(x, grad=True)
    _run(loss, t, labels).backward()
    s = R.cos(x)
    ap, an = np.maximum(1.4 - s, 0), np.maximum(s + 0.4, 0)

    def frozen(xx):
        ss = R.cos(xx)
        out = []
        for i in range(len(y)):
            ps = [j for j in range(len(y)) if j != i and y[j] == y[i]]
            ns = [k for k in range(len(y)) if y[k] != y[i]]
            z = np.logaddexp.reduce([-4.0 * ap[i, j] * (ss[i, j] - 0.6) for j in ps]) + \
                np.logaddexp.reduce([4.0 * an[i, k] * (ss[i, k] - 0.4) for k in ns])
            out.append(np.log1p(np.exp(z)))
        return R.avg_nonzero(out)

    num = np.zeros_like(x)
    for idx in np.ndindex(*x.shape):
        e = np.zeros_like(x)
        e[idx] = 1e-6
        num[idx] = (frozen(x + e) - frozen(x - e)) / 2e-6
    np.testing.assert_allclose(t.grad.numpy(), num, rtol=1e-5, atol=1e-8)


def test_multi_similarity_with_miner_uses_only_mined_pairs():
    x, y = _data("unbalanced", 3)
    loss = MultiSimilarityLoss(miner={"name": "MultiSimilarityMiner", "epsilon": 0.1})
    s = R.cos(x)
    out = []
    for i in range(len(y)):
        ps = [j for j in range(len(y)) if j != i and y[j] == y[i]]
        ns = [k for k in range(len(y)) if y[k] != y[i]]
        kp = [j for j in ps if s[i, j] - 0.1 < max(s[i, k] for k in ns)]
        kn = [k for k in ns if s[i, k] + 0.1 > min(s[i, j] for j in ps)]
        out.append(np.log1p(sum(np.exp(-2 * (s[i, j] - 0.5)) for j in kp)) / 2
                   + np.log1p(sum(np.exp(50 * (s[i, k] - 0.5)) for k in kn)) / 50)
    np.testing.assert_allclose(float(_run(loss, tensor(x), paddle.to_tensor(y))), np.mean(out), rtol=1e-10)


def test_contrastive_with_triplet_miner_uses_its_pairs():
    x, y = _data("pk", 4)
    loss = PMLContrastiveLoss(miner={"name": "BatchHardMiner"})
    d = R.l2(x)
    pos, neg = [], []
    for a in range(len(y)):
        ps = [p for p in range(len(y)) if p != a and y[p] == y[a]]
        ns = [n for n in range(len(y)) if y[n] != y[a]]
        pos.append(max(d[a, p] for p in ps))
        neg.append(max(1 - min(d[a, n] for n in ns), 0))
    np.testing.assert_allclose(float(_run(loss, tensor(x), paddle.to_tensor(y))),
                               R.avg_nonzero(pos) + R.avg_nonzero(neg), rtol=1e-10)


@pytest.mark.parametrize("cls", [PMLContrastiveLoss, MultiSimilarityLoss, CircleLoss, LiftedStructureLoss])
def test_single_class_batch_is_finite(cls):
    x = tensor(np.random.default_rng(5).normal(size=(4, 3)), grad=True)
    out = _run(cls(), x, paddle.to_tensor([2, 2, 2, 2]))
    out.backward()
    assert np.isfinite(float(out)) and np.all(np.isfinite(x.grad.numpy()))


def test_circle_rejects_a_distance():
    with pytest.raises(ValueError, match="similarity"):
        CircleLoss(distance="LpDistance")


def test_bad_reducer_and_distance():
    with pytest.raises(ValueError, match="reducer"):
        PMLContrastiveLoss(reducer="Avg")
    with pytest.raises(ValueError, match="distance"):
        MultiSimilarityLoss(distance="Euclid")


def test_pair_loss_runs_under_to_static():
    loss = MultiSimilarityLoss()
    x, y = _data("singleton", 6)
    xt, yt = tensor(x.astype("float32")), paddle.to_tensor(y)

    def pair_compute(f, t):
        return _run(loss, f, t)

    # SOT caches translations by code object; keeping the function alive stops a later test's
    # function from reusing its id and hitting the stale cache entry
    KEEP_ALIVE.append(pair_compute)

    static = paddle.jit.to_static(pair_compute)
    np.testing.assert_allclose(float(static(xt, yt)), float(pair_compute(xt, yt)),
                               rtol=1e-6)


@pytest.mark.parametrize("cls", [PMLContrastiveLoss, MultiSimilarityLoss, CircleLoss, LiftedStructureLoss])
def test_describable(cls):
    assert cls.output_keys == (cls.__name__,) and cls.input_keys and "Reads" in cls.__doc__
    assert pl.get_loss(cls.__name__) is cls


def test_triplet_selection_becomes_a_set_of_pairs_each_counted_once():
    """Divergence X1 (docs/compatibility.md): PML's list-based pair losses count a pair once per triplet
    that contains it; here a triplet selection becomes pair masks, each pair counted once."""
    x, y = _data("unbalanced", 7)
    got = float(_run(PMLContrastiveLoss(pos_margin=0.1, neg_margin=0.9, miner={"name": "BatchAllMiner"}),
                     tensor(x), paddle.to_tensor(y)))
    # the pairs of all triplets are all positive and all negative pairs: the set equals "no miner"
    np.testing.assert_allclose(got, R.contrastive(x, y, 0.1, 0.9), rtol=1e-10)
    # counting duplicates (PML) weights anchors of small classes differently: a different number
    d = R.l2(x)
    trip = [(a, p, n) for a in range(len(y)) for p in range(len(y)) for n in range(len(y))
            if a != p and y[a] == y[p] and y[n] != y[a]]
    pml = R.avg_nonzero([max(d[a, p] - 0.1, 0) for a, p, _ in trip]) + \
        R.avg_nonzero([max(0.9 - d[a, n], 0) for a, _, n in trip])
    assert abs(pml - got) > 1e-3
