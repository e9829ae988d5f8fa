"""BatchEasyHardMiner / BatchHardMiner strategies and allowed ranges against a NumPy loop port of PML 2.x's
rule (strategy -> per-row max/min in the distance's own units, semihard thresholds, inclusive ranges)."""
import itertools

import numpy as np
import paddle
import pytest

from paddle_losses.errors import ConfigError
from paddle_losses.functional.mining import BatchEasyHardMiner, BatchHardMiner

LABELS = np.array([1, 0, 2, 0, 0, 1, 0, 2, 1, 0, 3])
STRATEGIES = ["hard", "semihard", "easy", "all"]


def _mat(x, inverted):
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    return xn @ xn.T if inverted else np.linalg.norm(xn[:, None] - xn[None], axis=-1)


def _per_row(mat, cand, largest, rng=None, thr=None):
    idx, val, ok = [], [], []
    for i in range(mat.shape[0]):
        js = [j for j in range(mat.shape[1]) if cand[i, j]
              and (rng is None or rng[0] <= mat[i, j] <= rng[1])
              and (thr is None or (mat[i, j] < thr[i] if largest else mat[i, j] > thr[i]))]
        if not js:
            idx.append(0), val.append(-np.inf if largest else np.inf), ok.append(False)
            continue
        vals = mat[i, js]
        k = int(np.argmax(vals) if largest else np.argmin(vals))
        idx.append(js[k]), val.append(vals[k]), ok.append(True)
    return np.array(idx), np.array(val), np.array(ok)


def _reference(mat, labels, ps, ns, prange, nrange, inverted):
    n = len(labels)
    pos = (labels[:, None] == labels[None]) & ~np.eye(n, dtype=bool)
    neg = labels[:, None] != labels[None]
    pos_largest = (ps in ("hard", "semihard")) != inverted
    neg_largest = (ns == "easy") != inverted
    if ps == "semihard" and ns != "all":
        ni, nv, nok = _per_row(mat, neg, neg_largest, nrange)
        pi, _, pok = _per_row(mat, pos, pos_largest, prange, nv)
    elif ns == "semihard" and ps != "all":
        pi, pv, pok = _per_row(mat, pos, pos_largest, prange)
        ni, _, nok = _per_row(mat, neg, neg_largest, nrange, pv)
    else:
        pi, _, pok = _per_row(mat, pos, pos_largest, prange)
        ni, _, nok = _per_row(mat, neg, neg_largest, nrange)
    rows = np.arange(n)
    if "all" not in (ps, ns):
        keep = pok & nok
        return rows[keep], pi[keep], ni[keep]
    a1, p = np.nonzero(pos) if ps == "all" else (rows[pok], pi[pok])
    a2, nn = np.nonzero(neg) if ns == "all" else (rows[nok], ni[nok])
    return a1, p, a2, nn


COMBOS = [(p, n) for p, n in itertools.product(STRATEGIES, STRATEGIES)
          if not (p == n == "semihard") and {p, n} != {"semihard", "all"}]


@pytest.mark.parametrize("distance", ["LpDistance", "CosineSimilarity"])
@pytest.mark.parametrize("ps,ns", COMBOS)
def test_strategies_match_numpy(ps, ns, distance):
    x = np.random.default_rng(3).normal(size=(len(LABELS), 6))
    inverted = distance == "CosineSimilarity"
    mat = _mat(x, inverted)
    prange, nrange = ((-0.5, 0.6), (-0.4, 0.9)) if inverted else ((0.3, 1.6), (0.5, 1.7))
    for pr, nr in [(None, None), (prange, nrange)]:
        miner = BatchEasyHardMiner(ps, ns, pr, nr, distance=distance)
        got = miner(paddle.to_tensor(x), paddle.to_tensor(LABELS)).indices()
        ref = _reference(mat, LABELS, ps, ns, pr, nr, inverted)
        assert len(got) == len(ref)
        for g, r in zip(got, ref):
            np.testing.assert_array_equal(g.numpy(), r)


def test_batch_hard_miner_defaults_are_hard_hard_and_take_ranges():
    x = np.random.default_rng(4).normal(size=(len(LABELS), 6))
    mat = _mat(x, False)
    for pr, nr in [(None, None), ((0.3, 1.2), (0.6, 1.7))]:
        got = BatchHardMiner(allowed_pos_range=pr, allowed_neg_range=nr)(paddle.to_tensor(x), paddle.to_tensor(LABELS))
        for g, r in zip(got.indices(), _reference(mat, LABELS, "hard", "hard", pr, nr, False)):
            np.testing.assert_array_equal(g.numpy(), r)


def test_multi_hot_labels_mine_rows_sharing_a_label():
    tags = np.array([[1, 0], [1, 1], [0, 1], [0, 1], [1, 0]])
    x = np.random.default_rng(5).normal(size=(5, 4))
    mat = _mat(x, False)
    share = (tags @ tags.T) > 0
    a, p, n = BatchHardMiner()(paddle.to_tensor(x), paddle.to_tensor(tags)).indices()
    for i, (ai, pi, ni) in enumerate(zip(a.numpy(), p.numpy(), n.numpy())):
        pos = [j for j in range(5) if j != ai and share[ai, j]]
        negs = [j for j in range(5) if not share[ai, j]]
        assert pi == pos[int(np.argmax(mat[ai, pos]))] and ni == negs[int(np.argmin(mat[ai, negs]))]


@pytest.mark.parametrize("kw,match", [
    ({"pos_strategy": "semihard", "neg_strategy": "semihard"}, "cannot both be 'semihard'"),
    ({"pos_strategy": "all", "neg_strategy": "semihard"}, "cannot be combined with 'all'"),
    ({"pos_strategy": "hardest"}, "pos_strategy must be one of"),
    ({"allowed_pos_range": [1.0, 0.0]}, "low <= high"),
    ({"allowed_neg_range": [0.0]}, "pair \\[low, high\\]"),
])
def test_invalid_strategy_or_range_is_a_config_error(kw, match):
    with pytest.raises(ConfigError, match=match):
        BatchEasyHardMiner(**kw)
