"""Every crossfw pair/triplet loss with multi-hot labels, a positive mask and a precomputed indices_tuple:
float64 NumPy references (multi-label "equality" = sharing a label), equality with the miner path, PML's
tuple conversions, reducers, and InputErrors."""
import numpy as np
import paddle
import pytest

from golden import tensor
from losses.crossfw import np_reference as R
from paddle_losses.errors import InputError
from paddle_losses.functional.mining import BatchHardMiner, MultiSimilarityMiner, TripletMarginMiner
from paddle_losses.losses.crossfw.pair import CircleLoss, LiftedStructureLoss, MultiSimilarityLoss, PMLContrastiveLoss
from paddle_losses.losses.crossfw.softmax import NTXentLoss, PMLNPairsLoss, PMLSupConLoss
from paddle_losses.losses.crossfw.triplet import MinedTripletMarginLoss, PMLTripletMarginLoss, SquaredL2TripletLoss

TAGS = np.array([[1, 0, 0], [1, 1, 0], [0, 1, 0], [0, 0, 1], [0, 1, 1], [1, 0, 0], [0, 0, 1], [0, 0, 0]])


class Tags:
    """A multi-hot row for the loop references: ``==`` means "shares a label" (a row equals itself)."""

    def __init__(self, row):
        self.row = row

    def __eq__(self, other):
        return self is other or bool((self.row & other.row).any())

    def __ne__(self, other):
        return not self == other

    __hash__ = object.__hash__


def _tag_labels():
    out = np.empty(len(TAGS), dtype=object)
    out[:] = [Tags(r) for r in TAGS]
    return out


CASES = [
    (PMLTripletMarginLoss, {"margin": 0.2}, lambda x, y: R.triplet(x, y, 0.2)),
    (PMLContrastiveLoss, {"pos_margin": 0.1, "neg_margin": 0.9}, lambda x, y: R.contrastive(x, y, 0.1, 0.9)),
    (MultiSimilarityLoss, {}, R.multi_similarity),
    (CircleLoss, {}, R.circle),
    (LiftedStructureLoss, {}, R.lifted),
    (NTXentLoss, {}, R.ntxent),
    (PMLSupConLoss, {}, R.supcon),
]
IDS = [c[0].__name__ for c in CASES]


def _x(seed=0, n=len(TAGS)):
    return np.random.default_rng(seed).normal(size=(n, 5))


def _value(loss, x, target=None, **kw):
    return loss({"features": tensor(x)}, target, **kw)[type(loss).__name__]


@pytest.mark.parametrize("cls,kw,ref", CASES, ids=IDS)
def test_multi_hot_labels_match_numpy_with_shared_label_positives(cls, kw, ref):
    x = _x()
    got = float(_value(cls(**kw), x, paddle.to_tensor(TAGS)))
    np.testing.assert_allclose(got, ref(x, _tag_labels()), rtol=1e-10)


@pytest.mark.parametrize("cls,kw,ref", CASES, ids=IDS)
def test_positive_mask_gives_the_same_loss_as_the_labels_it_encodes(cls, kw, ref):
    x = _x(1)
    labels = np.array([0, 1, 0, 2, 1, 0, 2, 3])
    mask = paddle.to_tensor(labels[:, None] == labels[None])
    by_mask = float(_value(cls(**kw), x, positive_mask=mask))
    np.testing.assert_allclose(by_mask, ref(x, labels), rtol=1e-10)
    share = paddle.to_tensor((TAGS @ TAGS.T) > 0)
    np.testing.assert_allclose(float(_value(cls(**kw), x, positive_mask=share)), ref(x, _tag_labels()), rtol=1e-10)


@pytest.mark.parametrize("cls,kw", [(c[0], c[1]) for c in CASES] + [(MinedTripletMarginLoss, {}),
                                                                     (SquaredL2TripletLoss, {})],
                         ids=IDS + ["MinedTripletMarginLoss", "SquaredL2TripletLoss"])
def test_indices_tuple_of_a_miner_equals_the_loss_with_that_miner(cls, kw):
    x = _x(2)
    labels = paddle.to_tensor(np.array([0, 1, 0, 2, 1, 0, 2, 1]))
    tup = BatchHardMiner()(tensor(x), labels).indices()
    with_miner = float(_value(cls(miner={"name": "BatchHardMiner"}, **kw), x, labels))
    np.testing.assert_allclose(float(_value(cls(**kw), x, labels, indices_tuple=tup)), with_miner, rtol=1e-12)
    # also from the input dict, and without labels
    loss = cls(**kw)
    from_dict = loss({"features": tensor(x), "indices_tuple": tup})[cls.__name__]
    np.testing.assert_allclose(float(from_dict), with_miner, rtol=1e-12)


def test_indices_tuple_replaces_the_configured_miner():
    x = _x(3)
    labels = paddle.to_tensor(np.array([0, 1, 0, 2, 1, 0, 2, 1]))
    tup = BatchHardMiner()(tensor(x), labels).indices()
    loss = PMLTripletMarginLoss(margin=0.3, miner={"name": "TripletMarginMiner", "type_of_triplets": "all"})
    plain = PMLTripletMarginLoss(margin=0.3)
    np.testing.assert_allclose(float(_value(loss, x, labels, indices_tuple=tup)),
                               float(_value(plain, x, labels, indices_tuple=tup)), rtol=1e-12)


def test_pair_tuple_to_a_triplet_loss_joins_pairs_on_the_anchor_as_pml():
    x = _x(4)
    labels = np.array([0, 1, 0, 2, 1, 0, 2, 1])
    a1, p, a2, n = MultiSimilarityMiner(epsilon=0.5)(tensor(x), paddle.to_tensor(labels)).indices()
    a1, p, a2, n = (v.numpy() for v in (a1, p, a2, n))
    d = R.l2(x)
    ls = [max(d[a1[i], p[i]] - d[a2[j], n[j]] + 0.2, 0) for i in range(len(a1)) for j in range(len(a2))
          if a1[i] == a2[j]]
    got = float(_value(PMLTripletMarginLoss(margin=0.2), x, paddle.to_tensor(labels), indices_tuple=(a1, p, a2, n)))
    np.testing.assert_allclose(got, R.avg_nonzero(ls), rtol=1e-10)


def test_triplet_tuple_to_a_pair_loss_uses_its_ap_and_an_pairs():
    x = _x(5)
    a, p, n = np.array([0, 3, 5]), np.array([2, 6, 0]), np.array([1, 0, 4])
    d = R.l2(x)
    ref = R.avg_nonzero([max(d[i, j] - 0.1, 0) for i, j in zip(a, p)]) + \
        R.avg_nonzero([max(0.9 - d[i, k], 0) for i, k in zip(a, n)])
    got = _value(PMLContrastiveLoss(pos_margin=0.1, neg_margin=0.9), x, indices_tuple=(a, p, n))
    np.testing.assert_allclose(float(got), ref, rtol=1e-10)


def test_npairs_with_a_tuple_keeps_the_first_pair_per_anchor_label():
    x = _x(6)
    labels = np.array([0, 1, 0, 2, 1, 0, 2, 1])
    a, p = np.array([5, 1, 0, 4, 3]), np.array([2, 7, 5, 1, 6])
    s = R.cos(x)
    keep = {}
    for ai, pi in zip(a, p):
        keep.setdefault(labels[ai], (ai, pi))
    anchors, positives = zip(*[keep[k] for k in sorted(keep)])
    S = s[np.ix_(anchors, positives)]
    ref = np.mean([np.logaddexp.reduce(S[r]) - S[r, r] for r in range(len(anchors))])
    got = _value(PMLNPairsLoss(), x, paddle.to_tensor(labels), indices_tuple=(a, p, np.zeros_like(a)))
    np.testing.assert_allclose(float(got), ref, rtol=1e-10)
    all_pairs = np.nonzero((labels[:, None] == labels[None]) & ~np.eye(8, dtype=bool))
    np.testing.assert_allclose(float(_value(PMLNPairsLoss(), x, paddle.to_tensor(labels),
                                            indices_tuple=all_pairs + all_pairs)),
                               R.npairs(x, labels), rtol=1e-10)


def test_npairs_refuses_multi_hot_labels():
    with pytest.raises(InputError, match="one class id per sample"):
        _value(PMLNPairsLoss(), _x(), paddle.to_tensor(TAGS))


@pytest.mark.parametrize("cls", [PMLTripletMarginLoss, PMLContrastiveLoss, NTXentLoss, MinedTripletMarginLoss])
def test_bad_indices_tuple_or_mask_is_an_input_error_from_the_loss(cls):
    x = _x()
    with pytest.raises(InputError, match=f"{cls.__name__}: indices_tuple\\[2\\] has indices .* outside"):
        _value(cls(), x, indices_tuple=([0], [1], [8]))
    with pytest.raises(InputError, match="3 .* or 4 .* entries"):
        _value(cls(), x, indices_tuple=([0], [1]))
    with pytest.raises(InputError, match="positive_mask must be a bool"):
        _value(cls(), x, positive_mask=paddle.ones([8, 8]))


def test_do_nothing_and_threshold_reducers_on_the_triplet_loss():
    x = _x(7)
    labels = np.array([0, 1, 0, 2, 1, 0, 2, 1])
    d = R.l2(x)
    ls = np.array([d[a, p] - d[a, k] + 0.2 for a in range(8) for p in range(8) for k in range(8)
                   if a != p and labels[a] == labels[p] and labels[k] != labels[a]])
    hinge = np.maximum(ls, 0)
    got = _value(PMLTripletMarginLoss(margin=0.2, reducer="DoNothingReducer"), x, paddle.to_tensor(labels))
    np.testing.assert_allclose(got.numpy(), hinge, rtol=1e-10)  # PML's lexicographic (a, p, n) order
    th = _value(PMLTripletMarginLoss(margin=0.2, reducer={"name": "ThresholdReducer", "low": 0.1, "high": 0.5}),
                x, paddle.to_tensor(labels))
    np.testing.assert_allclose(float(th), hinge[(hinge > 0.1) & (hinge < 0.5)].mean(), rtol=1e-10)


def test_triplet_margin_miner_accepts_multi_hot_labels():
    x = _x(8)
    miner = TripletMarginMiner(margin=0.3, type_of_triplets="semihard")
    a, p, n = miner(tensor(x), paddle.to_tensor(TAGS)).indices()
    d = R.l2(x)
    tags = _tag_labels()
    ref = [(i, j, k) for i in range(8) for j in range(8) for k in range(8)
           if i != j and tags[i] == tags[j] and tags[i] != tags[k] and 0 < d[i, k] - d[i, j] <= 0.3]
    assert list(zip(a.numpy().tolist(), p.numpy().tolist(), n.numpy().tolist())) == ref


@pytest.mark.parametrize("distance,smooth", [(None, False), (None, True), ({"name": "LpDistance", "power": 2}, False),
                                             ("CosineSimilarity", False),
                                             ({"name": "DotProductSimilarity", "normalize_embeddings": False}, False)])
@pytest.mark.parametrize("target", ["ids", "multi_hot", "ties"])
def test_batch_hard_fast_core_equals_the_listed_triplets_in_value_and_gradient(distance, smooth, target):
    x = _x(9)
    if target == "ties":  # duplicated rows: equal distances, the first index must win as in the miner
        x[3], x[6], x[5] = x[1], x[1], x[0]
    y = paddle.to_tensor(TAGS if target == "multi_hot" else np.array([0, 1, 0, 2, 1, 0, 2, 1]))
    kw = {"margin": 0.3, "smooth_loss": smooth, "distance": distance}
    fast = PMLTripletMarginLoss(miner={"name": "BatchHardMiner", "distance": distance}, **kw)
    assert fast._batch_hard_metric() is not None
    xf, xl = tensor(x, grad=True), tensor(x, grad=True)
    got = fast({"features": xf}, y)["PMLTripletMarginLoss"]
    tup = BatchHardMiner(distance=distance)(xl, y).indices()
    ref = PMLTripletMarginLoss(**kw)({"features": xl}, y, indices_tuple=tup)["PMLTripletMarginLoss"]
    np.testing.assert_allclose(float(got), float(ref), rtol=1e-10, atol=1e-12)
    got.backward()
    ref.backward()
    np.testing.assert_allclose(xf.grad.numpy(), xl.grad.numpy(), rtol=1e-8, atol=1e-10)
