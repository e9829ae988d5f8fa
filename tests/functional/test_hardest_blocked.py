"""Blocked batch-hard mining (functional.mining.hardest): label candidates built per block of anchors and
any block size give the values, gradients and tie rules of the one-block path with dense masks."""
import numpy as np
import paddle
import pytest

import paddle_losses as pl
from golden import tensor
from paddle_losses.functional.masks import positive_negative
from paddle_losses.functional.mining import LabelCandidates, hardest_pairs, set_block_rows
from paddle_losses.functional.mining.hardest import choose_block_rows as block_rows

LABELS = np.array([0, 1, 0, 2, 1, 0, 2, 1, 3, 2, 0])
# Many labels (at most a quarter of the pairs share one): mined through per-label key lists, not masks.
MANY_LABELS = np.random.default_rng(1).permutation(np.r_[np.arange(30) // 3, [10, 11, 11, 12]])


def _x(ties, labels=LABELS):
    x = np.random.default_rng(0).normal(size=(len(labels), 4))
    if ties:  # identical rows give exactly tied scores
        x[4], x[7], x[9] = x[1], x[1], x[3]
    return x


def _run(x, pos, neg, metric, ties, keys=None, rows=None):
    xt = tensor(x, grad=True)
    kt = None if keys is None else tensor(keys, grad=True)
    ap, an, vp, vn = hardest_pairs(xt, pos, neg, metric, keys=kt, ties=ties, block_rows=rows)
    (ap * 1.3 + an * 0.7).sum().backward()
    grads = [xt.grad.numpy()] + ([] if kt is None else [kt.grad.numpy()])
    return [ap.numpy(), an.numpy(), vp.numpy(), vn.numpy()] + grads


@pytest.mark.parametrize("metric", ["dot", "euclidean", "sqeuclidean"])
@pytest.mark.parametrize("ties", ["split", "first"])
@pytest.mark.parametrize("has_ties", [False, True])
@pytest.mark.parametrize("exclude_self", [False, True])
def test_label_blocks_equal_dense_masks_for_any_block_size(metric, ties, has_ties, exclude_self):
    x = _x(has_ties)
    y = paddle.to_tensor(LABELS)
    pos, neg = positive_negative(y, exclude_self=exclude_self)
    ref = _run(x, pos, neg, metric, ties)
    for rows in (1, 3, 4, 11, None):
        got = _run(x, LabelCandidates.of(y, exclude_self=exclude_self), None, metric, ties, rows=rows)
        for g, r in zip(got, ref):
            np.testing.assert_allclose(g, r, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("metric", ["dot", "euclidean", "sqeuclidean"])
@pytest.mark.parametrize("ties", ["split", "first"])
@pytest.mark.parametrize("has_ties", [False, True])
@pytest.mark.parametrize("exclude_self", [False, True])
def test_label_lists_equal_dense_masks_for_any_block_size(metric, ties, has_ties, exclude_self):
    x = _x(has_ties, MANY_LABELS)
    if has_ties:  # a row tied with both a positive and a negative partner
        same = np.flatnonzero(MANY_LABELS == MANY_LABELS[0])
        x[same[1]] = x[same[2]]
        x[np.flatnonzero(MANY_LABELS != MANY_LABELS[0])[5]] = x[same[2]]
    y = paddle.to_tensor(MANY_LABELS)
    pos, neg = positive_negative(y, exclude_self=exclude_self)
    ref = _run(x, pos, neg, metric, ties)
    for rows in (1, 5, 34, None):
        got = _run(x, LabelCandidates.of(y, exclude_self=exclude_self), None, metric, ties, rows=rows)
        for g, r in zip(got, ref):
            np.testing.assert_allclose(g, r, rtol=1e-12, atol=1e-14)


def test_label_lists_are_used_only_when_labels_are_many():
    from paddle_losses.functional.mining.hardest import _SameLabelKeys
    assert _SameLabelKeys.of(LabelCandidates.of(paddle.to_tensor(MANY_LABELS))) is not None
    assert _SameLabelKeys.of(LabelCandidates.of(paddle.to_tensor(LABELS))) is None


@pytest.mark.parametrize("ties", ["split", "first"])
def test_label_blocks_against_separate_keys(ties):
    x, keys = _x(True)[:6], _x(True)
    y, ky = paddle.to_tensor(LABELS[:6]), paddle.to_tensor(LABELS)
    pos, neg = positive_negative(y, ky)
    ref = _run(x, pos, neg, "dot", ties, keys=keys)
    got = _run(x, LabelCandidates.of(y, ky), None, "dot", ties, keys=keys, rows=4)
    for g, r in zip(got, ref):
        np.testing.assert_allclose(g, r, rtol=1e-12, atol=1e-14)
    # keys with many labels, some of them absent from the anchors (label lists)
    x, keys = _x(True, MANY_LABELS)[:9], _x(True, MANY_LABELS)
    y, ky = paddle.to_tensor(MANY_LABELS[:9]), paddle.to_tensor(MANY_LABELS)
    pos, neg = positive_negative(y, ky)
    ref = _run(x, pos, neg, "sqeuclidean", ties, keys=keys)
    got = _run(x, LabelCandidates.of(y, ky), None, "sqeuclidean", ties, keys=keys, rows=4)
    for g, r in zip(got, ref):
        np.testing.assert_allclose(g, r, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("name,kw", [("TripletLossV2", {}), ("TripletLoss", {}), ("TripletAngularMarginLoss", {}),
                                     ("TripletAngularMarginLoss", {"add_absolute": True}),
                                     ("PMLTripletMarginLoss", {"miner": "BatchHardMiner"}),
                                     ("TriHardLoss", {"samples_each_class": 3}),
                                     ("MSMLoss", {"samples_each_class": 3})])
def test_losses_do_not_depend_on_the_block_size(name, kw):
    x = _x(True)
    y = paddle.to_tensor(LABELS)

    def run():
        xt = tensor(x, grad=True)
        loss = pl.get_loss(name)(**kw)
        out = next(iter(loss({"features": xt}, y).values()))
        out.backward()
        return float(out), xt.grad.numpy()

    ref = run()
    previous = set_block_rows(2)
    try:
        got = run()
    finally:
        set_block_rows(previous)
    np.testing.assert_allclose(got[0], ref[0], rtol=1e-12)
    np.testing.assert_allclose(got[1], ref[1], rtol=1e-12, atol=1e-14)


def test_block_rows_is_automatic_and_settable():
    assert block_rows(1024, 1024) == 1024  # fits one block
    assert block_rows(16384, 16384) == (1 << 24) // 16384
    assert block_rows(10, 10, rows=3) == 3
    previous = set_block_rows(5)
    try:
        assert block_rows(100, 100) == 5
    finally:
        set_block_rows(previous)
    with pytest.raises(ValueError, match="positive int"):
        set_block_rows(0)
