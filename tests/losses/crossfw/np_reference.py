"""Float64 NumPy re-implementations of the PML losses, written from the README formulas with loops."""
import itertools

import numpy as np


def unit(x):
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def l2(x):
    xn = unit(x)
    return np.linalg.norm(xn[:, None] - xn[None], axis=-1)


def cos(x):
    xn = unit(x)
    return xn @ xn.T


def pairs(labels):
    n = len(labels)
    pos = [(i, j) for i, j in itertools.product(range(n), repeat=2) if i != j and labels[i] == labels[j]]
    neg = [(i, k) for i, k in itertools.product(range(n), repeat=2) if labels[i] != labels[k]]
    return pos, neg


def avg_nonzero(v):
    v = np.asarray(v, dtype=float)
    return v[v > 0].mean() if (v > 0).any() else 0.0


def triplet(x, labels, margin=0.05, reducer="AvgNonZeroReducer", smooth=False, swap=False):
    d = l2(x)
    n = len(labels)
    ls = []
    for a, p, k in itertools.product(range(n), repeat=3):
        if a != p and labels[a] == labels[p] and labels[k] != labels[a]:
            dn = min(d[a, k], d[p, k]) if swap else d[a, k]
            z = d[a, p] - dn + margin
            ls.append(np.log1p(np.exp(z)) if smooth else max(z, 0.0))
    if not ls:
        return 0.0
    return avg_nonzero(ls) if reducer == "AvgNonZeroReducer" else float(np.mean(ls))


def contrastive(x, labels, pm=0.0, nm=1.0):
    d = l2(x)
    pos, neg = pairs(labels)
    return avg_nonzero([max(d[i, j] - pm, 0) for i, j in pos]) + avg_nonzero([max(nm - d[i, k], 0) for i, k in neg])


def multi_similarity(x, labels, alpha=2.0, beta=50.0, base=0.5):
    s = cos(x)
    n = len(labels)
    out = []
    for i in range(n):
        ps = [s[i, j] for j in range(n) if j != i and labels[j] == labels[i]]
        ns = [s[i, k] for k in range(n) if labels[k] != labels[i]]
        out.append(np.log1p(sum(np.exp(-alpha * (v - base)) for v in ps)) / alpha
                   + np.log1p(sum(np.exp(beta * (v - base)) for v in ns)) / beta)
    return float(np.mean(out))


def circle(x, labels, m=0.4, gamma=80.0):
    s = cos(x)
    n = len(labels)
    out = []
    for i in range(n):
        ps = [s[i, j] for j in range(n) if j != i and labels[j] == labels[i]]
        ns = [s[i, k] for k in range(n) if labels[k] != labels[i]]
        if not ps or not ns:
            out.append(0.0)
            continue
        lp = [-gamma * max(1 + m - v, 0) * (v - (1 - m)) for v in ps]
        ln = [gamma * max(v + m, 0) * (v - m) for v in ns]
        z = np.logaddexp.reduce(lp) + np.logaddexp.reduce(ln)
        out.append(z if z > 20 else np.log1p(np.exp(z)))
    return avg_nonzero(out)


def ntxent(x, labels, t=0.07):
    s = cos(x)
    pos, _ = pairs(labels)
    n = len(labels)
    out = []
    for i, j in pos:
        negs = [np.exp(s[i, k] / t) for k in range(n) if labels[k] != labels[i]]
        out.append(-np.log(np.exp(s[i, j] / t) / (np.exp(s[i, j] / t) + sum(negs))))
    return float(np.mean(out))


def supcon(x, labels, t=0.1):
    s = cos(x) / t
    n = len(labels)
    out = []
    for i in range(n):
        ps = [j for j in range(n) if j != i and labels[j] == labels[i]]
        den = np.log(sum(np.exp(s[i, k]) for k in range(n) if k != i))
        out.append(-np.mean([s[i, j] - den for j in ps]) if ps else 0.0)
    return avg_nonzero(out)


def lifted(x, labels, nm=1.0, pm=0.0):
    d = l2(x)
    pos, _ = pairs(labels)
    n = len(labels)
    out = []
    for i, j in pos:
        terms = [nm - d[a, k] for a in (i, j) for k in range(n) if labels[k] != labels[a]]
        z = (np.logaddexp.reduce(terms) if terms else 0.0) + d[i, j] - pm
        out.append(max(z, 0) ** 2 / 2)
    return float(np.mean(out))


def npairs(x, labels):
    s = cos(x)
    anchors, positives = [], []
    for c in sorted(set(labels.tolist())):
        idx = [i for i in range(len(labels)) if labels[i] == c]
        if len(idx) >= 2:
            anchors.append(idx[0])
            positives.append(idx[1])
    S = s[np.ix_(anchors, positives)]
    return float(np.mean([np.logaddexp.reduce(S[r]) - S[r, r] for r in range(len(anchors))]))


def arcface_logits(x, W, labels, margin_deg=28.6, scale=64.0, cosface=None, sub_centers=1):
    c = unit(x) @ unit(W.T).T
    if sub_centers > 1:
        c = c.reshape(len(x), -1, sub_centers).max(axis=2)
    out = c.copy()
    for i, y in enumerate(labels):
        if cosface is not None:
            out[i, y] = c[i, y] - cosface
        else:
            m = np.radians(margin_deg)
            th = np.arccos(np.clip(c[i, y], -1, 1))
            out[i, y] = np.cos(th + m) if th <= np.pi - m else np.cos(th) - m * np.sin(m)
    return out * scale


def ce(logits, labels):
    return float(np.mean([np.logaddexp.reduce(r) - r[y] for r, y in zip(logits, labels)]))


def proxy_anchor(x, P, labels, margin=0.1, alpha=32.0):
    c = unit(x) @ unit(P).T
    C = P.shape[0]
    pos = sum(np.log1p(np.exp(-alpha * (c[labels == k, k] - margin)).sum()) for k in range(C))
    neg = sum(np.log1p(np.exp(alpha * (c[labels != k, k] + margin)).sum()) for k in range(C))
    return pos / len(set(labels.tolist())) + neg / C
