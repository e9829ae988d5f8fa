"""k-reciprocal re-ranking against a set-based implementation written from the paper's definitions."""
import numpy as np
import pytest

from paddle_losses.engine.rerank import re_ranking

RNG = np.random.default_rng(4)


def reference(q, g, k1, k2, lam):
    x = np.concatenate([q, g])
    n, nq = len(x), len(q)
    d = 2.0 - 2.0 * x @ x.T
    d = np.maximum(d, 0) / np.maximum(d, 0).max(axis=0, keepdims=True)
    order = [sorted(range(n), key=lambda j: (d[i, j], j)) for i in range(n)]

    def nearest(i, k):
        return set(order[i][:k + 1])

    def recip(i, k):
        return {j for j in nearest(i, k) if i in nearest(j, k)}

    vecs = []
    for i in range(n):
        r = recip(i, k1)
        expanded = set(r)
        for j in r:
            c = recip(j, int(round(k1 / 2)))
            if len(c & r) > 2 / 3 * len(c):
                expanded |= c
        w = {j: np.exp(-d[i, j]) for j in expanded}
        total = sum(w.values())
        vecs.append(np.array([w.get(j, 0.0) / total for j in range(n)]))
    vecs = np.array(vecs)
    if k2 > 1:
        vecs = np.array([vecs[order[i][:k2]].mean(axis=0) for i in range(n)])
    out = np.zeros((nq, len(g)))
    for i in range(nq):
        for jg in range(len(g)):
            j = nq + jg
            jac = 1 - np.minimum(vecs[i], vecs[j]).sum() / np.maximum(vecs[i], vecs[j]).sum()
            out[i, jg] = (1 - lam) * jac + lam * d[i, j]
    return out


def unit(a):
    return a / np.linalg.norm(a, axis=1, keepdims=True)


@pytest.mark.parametrize("k1,k2", [(4, 1), (4, 3), (6, 2)])
def test_matches_the_set_based_definition(k1, k2):
    centres = unit(RNG.normal(size=(3, 5)))
    pts = unit(np.repeat(centres, 6, axis=0) + 0.3 * RNG.normal(size=(18, 5)))
    q, g = pts[::4], np.delete(pts, np.s_[::4], axis=0)
    np.testing.assert_allclose(re_ranking(q, g, k1, k2, 0.3), reference(q, g, k1, k2, 0.3), atol=1e-10)


def test_lambda_one_gives_the_column_normalised_base_distance():
    q, g = unit(RNG.normal(size=(4, 3))), unit(RNG.normal(size=(7, 3)))
    x = np.concatenate([q, g])
    d = 2 - 2 * x @ x.T
    d = d / d.max(axis=0, keepdims=True)
    np.testing.assert_allclose(re_ranking(q, g, 3, 1, 1.0), d[:4, 4:], atol=1e-12)


def test_trainer_evaluates_with_re_ranking(tmp_path):
    from engine_helpers import QUICKSTART, build_engine, fast
    engine = build_engine(QUICKSTART, fast(tmp_path, iters=1, extra=["Global.re_ranking=True"]))
    plain = build_engine(QUICKSTART, fast(tmp_path / "p", iters=1)).eval(0)
    reranked = engine.eval(0)
    assert set(reranked) == set(plain) and reranked != plain
    assert 0.0 < reranked["mAP"] <= 1.0
