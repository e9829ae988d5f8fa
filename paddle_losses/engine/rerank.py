"""k-reciprocal re-ranking (Zhong et al., CVPR 2017), as PaddleClas applies it with ``Global.re_ranking``.

Over the joint set of queries and gallery (N = Q + G items):

1. ``d``: the base distance (``2 - 2·cos`` for normalised features, else squared Euclidean), each column
   divided by its maximum.
2. For every item i, its k-reciprocal set R(i, k1): the items j among i's k1 + 1 nearest whose own k1 + 1
   nearest contain i. R is expanded with R(j, k1/2) of each member j whose set overlaps R by more than 2/3.
3. ``V[i, j] = exp(-d[i, j])`` over the expanded set, normalised to sum 1 (a soft neighbourhood vector);
   with ``k2 > 1`` each query's vector is replaced by the mean over its k2 nearest (query expansion).
4. Jaccard distance ``1 - Σ_k min(V_ik, V_jk) / Σ_k max(V_ik, V_jk)``, fused with the base distance:
   ``(1 - λ) · jaccard + λ · d``; the query × gallery block is returned.

PaddleClas calls it with k1 = 20, k2 = 6, λ = 0.3. Memory is O(N²) (dense NumPy), which suits evaluation
sets up to a few tens of thousands of items.
"""
import numpy as np


def _k_reciprocal(rank, i, k):
    forward = rank[i, :k + 1]
    backward = rank[forward, :k + 1]
    return forward[np.any(backward == i, axis=1)]


def re_ranking(q_feat, g_feat, k1=20, k2=6, lambda_value=0.3, normalized=True):
    """Re-ranked ``[Q, G]`` distances (smaller is closer) for query and gallery features."""
    q_feat = np.asarray(q_feat, dtype=np.float64)
    g_feat = np.asarray(g_feat, dtype=np.float64)
    nq = len(q_feat)
    x = np.concatenate([q_feat, g_feat])
    n = len(x)
    if normalized:
        dist = 2.0 - 2.0 * (x @ x.T)
    else:
        sq = (x * x).sum(axis=1)
        dist = sq[:, None] + sq[None, :] - 2.0 * (x @ x.T)
    dist = np.maximum(dist, 0.0)
    dist = dist / np.maximum(dist.max(axis=0, keepdims=True), 1e-12)
    rank = np.argsort(dist, axis=1, kind="stable")
    k1 = min(int(k1), n - 1)
    half = int(np.around(k1 / 2.0))

    v = np.zeros((n, n))
    for i in range(n):
        members = _k_reciprocal(rank, i, k1)
        expanded = members
        for j in members:
            candidate = _k_reciprocal(rank, j, half)
            if len(np.intersect1d(candidate, members)) > 2.0 / 3.0 * len(candidate):
                expanded = np.append(expanded, candidate)
        expanded = np.unique(expanded)
        weight = np.exp(-dist[i, expanded])
        v[i, expanded] = weight / weight.sum()
    if k2 > 1:
        v = v[rank[:, :int(k2)]].mean(axis=1)

    # Jaccard over the soft neighbourhoods: Σ min / Σ max, with Σ max = 2 - Σ min (each vector sums to 1)
    overlap = np.zeros((nq, n))
    for i in range(nq):
        cols = np.flatnonzero(v[i])
        overlap[i] = np.minimum(v[i, cols][None, :], v[:, cols]).sum(axis=1)
    jaccard = 1.0 - overlap / (2.0 - overlap)
    final = (1.0 - lambda_value) * jaccard + lambda_value * dist[:nq]
    return final[:, nq:]
