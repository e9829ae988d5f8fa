"""Miners as pure functions: exact agreement with brute-force enumeration (order included where PML
defines one) on balanced, unbalanced and singleton batches; O(N²) windows equal the expanded lists."""
import itertools

import numpy as np
import paddle
import pytest

from golden import tensor
from paddle_losses.functional.mining import selections as M
from paddle_losses.functional.triplet_window import explicit_triplet_losses, windowed_triplet_totals

BATCHES = {
    "pk": [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3],
    "unbalanced": [2, 0, 1, 0, 3, 0, 2, 1, 0, 2, 0, 1, 3],
    "singleton": [1, 0, 2, 1, 0, 3, 1, 2, 0, 2, 1],
    "one_class": [5, 5, 5, 5],
    "all_singletons": [0, 1, 2, 3, 4],
}


def _setup(kind, seed=0):
    labels = np.array(BATCHES[kind])
    u = np.random.default_rng(seed).uniform(0.0, 2.0, size=(len(labels), len(labels)))
    u = (u + u.T) / 2
    np.fill_diagonal(u, 0.0)
    pos, neg = M.label_masks(paddle.to_tensor(labels))
    return labels, u, paddle.to_tensor(u), pos, neg


def brute_triplets(labels):
    n = len(labels)
    return [(a, p, k) for a, p, k in itertools.product(range(n), repeat=3)
            if a != p and labels[a] == labels[p] and labels[k] != labels[a]]


def brute_margin_miner(labels, u, margin, kind):
    out = []
    for a, p, n in brute_triplets(labels):
        m = u[a, n] - u[a, p]
        keep = {"all": m <= margin, "hard": m <= margin and m <= 0, "semihard": 0 < m <= margin,
                "easy": m > margin, "none": True}[kind]
        if keep:
            out.append((a, p, n))
    return out


def _tuples(sel):
    return list(zip(*[t.numpy().tolist() for t in sel.indices()]))


@pytest.mark.parametrize("kind", list(BATCHES))
@pytest.mark.parametrize("mtype", ["all", "hard", "semihard", "easy"])
def test_triplet_margin_window_equals_brute_force_in_pml_order(kind, mtype):
    labels, u, ut, pos, neg = _setup(kind)
    sel = M.margin_window(ut, pos, neg, 0.2, mtype)
    assert _tuples(sel) == brute_margin_miner(labels, u, 0.2, mtype)


@pytest.mark.parametrize("kind", list(BATCHES))
def test_batch_all_equals_every_valid_triplet(kind):
    labels, u, ut, pos, neg = _setup(kind, 1)
    assert _tuples(M.all_triplets(ut, pos, neg)) == brute_triplets(labels)


@pytest.mark.parametrize("kind", list(BATCHES))
def test_semihard_tfa_equals_brute_force(kind):
    labels, u, ut, pos, neg = _setup(kind, 2)
    expected = []
    n = len(labels)
    for a, p in itertools.product(range(n), repeat=2):
        if a == p or labels[a] != labels[p]:
            continue
        negs = [k for k in range(n) if labels[k] != labels[a]]
        if not negs:
            continue
        above = [k for k in negs if u[a, k] > u[a, p]]
        expected.append((a, p, min(above, key=lambda k: u[a, k]) if above else max(negs, key=lambda k: u[a, k])))
    assert _tuples(M.semihard(ut, pos, neg, definition="tfa")) == expected


@pytest.mark.parametrize("kind", list(BATCHES))
def test_batch_hard_equals_brute_force(kind):
    labels, u, ut, pos, neg = _setup(kind, 3)
    n = len(labels)
    expected = []
    for a in range(n):
        ps = [p for p in range(n) if p != a and labels[p] == labels[a]]
        ns = [k for k in range(n) if labels[k] != labels[a]]
        if ps and ns:
            expected.append((a, max(ps, key=lambda p: u[a, p]), min(ns, key=lambda k: u[a, k])))
    assert _tuples(M.batch_hard(ut, pos, neg)) == expected


@pytest.mark.parametrize("kind", list(BATCHES))
def test_multi_similarity_pairs_equal_brute_force_in_pml_order(kind):
    labels, u, ut, pos, neg = _setup(kind, 4)
    s = -u  # a similarity
    n, eps = len(labels), 0.1
    a1, pp, a2, nn_ = [], [], [], []
    for i in range(n):
        ps = [j for j in range(n) if j != i and labels[j] == labels[i]]
        ns = [k for k in range(n) if labels[k] != labels[i]]
        if not ps or not ns:
            continue
        kept_p = sorted([j for j in ps if s[i, j] - eps < max(s[i, k] for k in ns)], key=lambda j: s[i, j])
        kept_n = sorted([k for k in ns if s[i, k] + eps > min(s[i, j] for j in ps)], key=lambda k: s[i, k])
        a1 += [i] * len(kept_p)
        pp += kept_p
        a2 += [i] * len(kept_n)
        nn_ += kept_n
    got = M.multi_similarity(ut, pos, neg, eps, order=paddle.to_tensor(s)).indices()
    assert [g.numpy().tolist() for g in got] == [a1, pp, a2, nn_]


@pytest.mark.parametrize("kind", ["pk", "unbalanced", "singleton", "one_class"])
@pytest.mark.parametrize("mtype", ["none", "all", "hard", "semihard", "easy"])
def test_windowed_totals_equal_the_expanded_triplets(kind, mtype):
    labels, u, ut, pos, neg = _setup(kind, 5)
    margin = 0.3
    sel = M.all_triplets(ut, pos, neg) if mtype == "none" else M.margin_window(ut, pos, neg, 0.2, mtype)
    trip = brute_margin_miner(labels, u, 0.2, mtype)
    losses = np.array([max(u[a, p] - u[a, n] + margin, 0.0) for a, p, n in trip])
    total, count, count_pos = windowed_triplet_totals(ut, sel, margin)
    np.testing.assert_allclose(float(total), losses.sum(), rtol=1e-10, atol=1e-12)
    assert int(count) == len(trip)
    assert int(count_pos) == int((losses > 0).sum())


def test_windowed_gradient_equals_explicit_gradient():
    labels, u, _, pos, neg = _setup("unbalanced", 6)
    g = []
    for windowed in (True, False):
        ut = tensor(u, grad=True)
        sel = M.margin_window(ut.detach(), pos, neg, 0.5, "all")
        if windowed:
            total = windowed_triplet_totals(ut, sel, 0.3)[0]
        else:
            a, p, n = sel.indices()
            total = explicit_triplet_losses(ut, a, p, n, 0.3).sum()
        total.backward()
        g.append(ut.grad.numpy())
    np.testing.assert_allclose(g[0], g[1], rtol=1e-10, atol=1e-12)


def test_window_memory_is_quadratic():
    """The window holds [N, N] matrices only, however many triplets it describes."""
    labels = np.arange(64) % 4
    u = paddle.rand([64, 64])
    pos, neg = M.label_masks(paddle.to_tensor(labels))
    sel = M.all_triplets(u, pos, neg)
    assert all(list(t.shape) == [64, 64] for t in (sel.u, sel.lo, sel.hi, sel.pos, sel.neg))


def test_unknown_types_are_rejected():
    _, _, ut, pos, neg = _setup("pk")
    with pytest.raises(ValueError, match="type_of_triplets"):
        M.margin_window(ut, pos, neg, 0.2, "medium")
    with pytest.raises(ValueError, match="definition"):
        M.semihard(ut, pos, neg, definition="facenet")
