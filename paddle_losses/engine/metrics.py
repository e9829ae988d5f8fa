"""Retrieval metrics (NumPy, exact) and the classification TopkAcc.

Protocol. For each query the gallery is ranked by descending similarity; ties keep gallery order (stable
sort). A gallery item is *relevant* when its label equals the query's. Items masked out for a query
(same identity and same camera -- the Market-1501 "junk" rule -- or the query itself when the query set is
the gallery) are **removed** from that query's ranking: they take no rank position and never count.
PaddleClas instead zeroes their similarity and leaves them in place (a divergence, documented).

Metric config names -> output keys:

==============================  ===============  ==========================================================
``Recallk: {topk: [1, 5]}``     ``recall{k}``    CMC@k: share of queries whose first relevant item is in the top k
``mAP: {}``                     ``mAP``          mean over queries of AP = mean of precision@rank over relevant ranks
``mINP: {}``                    ``mINP``         mean of (#relevant / 1-based rank of the last relevant item)
``Precisionk: {topk: [1, 5]}``  ``precision@{k}`` mean over **all** queries of (#relevant in top k) / k
``MAPatR: {}``                  ``MAP@R``        mean of AP over the first R ranks, R = #relevant (Musgrave et al.)
``RPrecision: {}``              ``R-precision``  mean of (#relevant in top R) / R
==============================  ===============  ==========================================================

Except ``precision@k`` (PaddleClas averages it over every query), queries without a relevant item are left
out of the average; if no query has one, the metric is 0.0. Per-query values are averaged once over all
queries (PaddleClas averages per block, weighting by block size).
"""
from collections import OrderedDict

import numpy as np

from ..errors import ConfigError
from ..registry import registry


def ranked_relevance(sim, q_labels, g_labels, keep=None):
    """``[Q, G]`` bool: relevance of the ranked gallery per query, with masked items moved past the end.

    Returns ``(rel_sorted, n_kept)``; positions ``>= n_kept[q]`` are removed items (never relevant).
    """
    sim = np.asarray(sim, dtype=np.float64)
    match = np.asarray(q_labels).reshape(-1, 1) == np.asarray(g_labels).reshape(1, -1)
    if keep is None:
        keep = np.ones_like(match)
    score = np.where(keep, sim, -np.inf)
    order = np.argsort(-score, axis=1, kind="stable")
    rel = np.take_along_axis(match & keep, order, axis=1)
    return rel, keep.sum(axis=1)


class _Metric:
    over_all_queries = False

    def keys(self):
        raise NotImplementedError

    def per_query(self, rel):
        """``{key: [Q] float}`` from ranked relevance ``rel`` ``[Q, G]``."""
        raise NotImplementedError


def _topk(topk):
    ks = [topk] if isinstance(topk, int) else list(topk)
    if not ks or any(not isinstance(k, int) or k < 1 for k in ks):
        raise ConfigError(f"topk must be a positive int or a list of them, got {topk!r}")
    return ks


@registry("metric").register
class Recallk(_Metric):
    def __init__(self, topk=(1, 5), **unused):
        self.topk = _topk(topk)

    def keys(self):
        return [f"recall{k}" for k in self.topk]

    def per_query(self, rel):
        first = np.argmax(rel, axis=1)  # 0-based rank of the first relevant item
        return {f"recall{k}": (first < k).astype(np.float64) for k in self.topk}


@registry("metric").register
class mAP(_Metric):  # noqa: N801 - PaddleClas's config name
    def __init__(self, **unused):
        pass

    def keys(self):
        return ["mAP"]

    def per_query(self, rel):
        cum = np.cumsum(rel, axis=1)
        ranks = np.arange(1, rel.shape[1] + 1)
        n_rel = np.maximum(rel.sum(axis=1), 1)
        return {"mAP": (cum / ranks * rel).sum(axis=1) / n_rel}


@registry("metric").register
class mINP(_Metric):  # noqa: N801
    def __init__(self, **unused):
        pass

    def keys(self):
        return ["mINP"]

    def per_query(self, rel):
        last = rel.shape[1] - 1 - np.argmax(rel[:, ::-1], axis=1)  # 0-based rank of the last relevant item
        return {"mINP": rel.sum(axis=1) / (last + 1.0)}


@registry("metric").register
class Precisionk(_Metric):
    over_all_queries = True

    def __init__(self, topk=(1, 5), **unused):
        self.topk = _topk(topk)

    def keys(self):
        return [f"precision@{k}" for k in self.topk]

    def per_query(self, rel):
        return {f"precision@{k}": rel[:, :k].sum(axis=1) / float(k) for k in self.topk}


@registry("metric").register
class MAPatR(_Metric):
    def __init__(self, **unused):
        pass

    def keys(self):
        return ["MAP@R"]

    def per_query(self, rel):
        r = rel.sum(axis=1, keepdims=True)
        ranks = np.arange(1, rel.shape[1] + 1)
        within = ranks[None, :] <= r
        cum = np.cumsum(rel, axis=1)
        return {"MAP@R": (cum / ranks * rel * within).sum(axis=1) / np.maximum(r[:, 0], 1)}


@registry("metric").register
class RPrecision(_Metric):
    def __init__(self, **unused):
        pass

    def keys(self):
        return ["R-precision"]

    def per_query(self, rel):
        r = rel.sum(axis=1, keepdims=True)
        within = np.arange(1, rel.shape[1] + 1)[None, :] <= r
        return {"R-precision": (rel * within).sum(axis=1) / np.maximum(r[:, 0], 1)}


def _metric_entries(cfg_list, path, example):
    if not isinstance(cfg_list, list) or not cfg_list:
        raise ConfigError(f"{path} must be a non-empty list like {example}")
    for i, entry in enumerate(cfg_list):
        if not isinstance(entry, dict) or len(entry) != 1:
            raise ConfigError(f"{path}[{i}] must be a one-key mapping like `- mAP: {{}}`, got {entry!r}")
        name, params = next(iter(entry.items()))
        if params is not None and not isinstance(params, dict):
            raise ConfigError(f"{path}[{i}].{name}: the parameters must be a mapping, got {params!r}")
        yield name, params, f"{path}[{i}].{name}"


def build_retrieval_metrics(cfg_list, path="Metric.Eval"):
    """Metric objects from ``[{Recallk: {topk: [1, 5]}}, {mAP: {}}]``; ``None`` gives Recallk(1, 5)."""
    if cfg_list is None:
        return [Recallk((1, 5))]
    out = []
    for name, params, where in _metric_entries(cfg_list, path, "[{Recallk: {topk: [1, 5]}}, {mAP: {}}]"):
        cls = registry("metric").get(name, where)
        if not (isinstance(cls, type) and issubclass(cls, _Metric)):
            raise ConfigError(f"{where}: {name} is a classification metric; {path} takes retrieval metrics "
                              f"({', '.join(n for n in registry('metric').names() if _is_retrieval(n))})")
        out.append(registry("metric").build(name, params, where))
    return out


def _is_retrieval(name):
    cls = registry("metric").get(name)
    return isinstance(cls, type) and issubclass(cls, _Metric)


def keep_mask(q_labels, g_labels, q_cams=None, g_cams=None, same_set=False):
    """Items kept per query: drop same-id-same-camera pairs (if cameras) and self-matches (if ``same_set``)."""
    nq, ng = len(q_labels), len(g_labels)
    keep = np.ones((nq, ng), dtype=bool)
    if q_cams is not None and g_cams is not None:
        keep &= (np.asarray(q_labels).reshape(-1, 1) != np.asarray(g_labels).reshape(1, -1)) | \
                (np.asarray(q_cams).reshape(-1, 1) != np.asarray(g_cams).reshape(1, -1))
    if same_set:
        keep &= ~np.eye(nq, ng, dtype=bool)
    return keep


def evaluate_retrieval(q_feat, g_feat, q_labels, g_labels, metrics, q_cams=None, g_cams=None, same_set=False,
                       block_size=64, scores=None):
    """Compute every metric over all queries, ``block_size`` queries at a time; returns an ordered dict.

    The ranking score is ``q_feat · g_featᵀ`` unless ``scores`` (``[Q, G]``, larger is closer, e.g. negated
    re-ranked distances) is given.
    """
    q_feat = np.asarray(q_feat, dtype=np.float32)
    g_feat = np.asarray(g_feat, dtype=np.float32)
    q_labels, g_labels = np.asarray(q_labels).reshape(-1), np.asarray(g_labels).reshape(-1)
    sums = OrderedDict((k, []) for m in metrics for k in m.keys())
    valid_all = []
    for s in range(0, len(q_labels), max(1, int(block_size))):
        e = min(s + int(block_size), len(q_labels))
        keep = keep_mask(q_labels[s:e], g_labels, None if q_cams is None else q_cams[s:e], g_cams,
                         False)
        if same_set:
            keep[np.arange(e - s), np.arange(s, e)] = False
        block = q_feat[s:e] @ g_feat.T if scores is None else scores[s:e]
        rel, _ = ranked_relevance(block, q_labels[s:e], g_labels, keep)
        valid_all.append(rel.any(axis=1))
        for m in metrics:
            for k, v in m.per_query(rel).items():
                sums[k].append(v)
    valid = np.concatenate(valid_all) if valid_all else np.zeros(0, bool)
    out = OrderedDict()
    over_all = {k for m in metrics if m.over_all_queries for k in m.keys()}
    for k, parts in sums.items():
        v = np.concatenate(parts) if parts else np.zeros(0)
        sel = v if k in over_all else v[valid]
        out[k] = float(sel.mean()) if sel.size else 0.0
    return out


@registry("metric").register
class TopkAcc:
    """Classification accuracy ``top{k}`` over logits ``[N, C]`` and int labels (train/eval metric)."""

    def __init__(self, topk=(1, 5), **unused):
        self.topk = _topk(topk)

    def keys(self):
        return [f"top{k}" for k in self.topk]

    def __call__(self, logits, labels):
        import paddle
        labels = labels.reshape([-1, 1]).astype("int64")
        return OrderedDict((f"top{k}", paddle.metric.accuracy(logits, labels, k=min(k, logits.shape[-1])))
                           for k in self.topk)


def build_train_metrics(cfg_list, path="Metric.Train"):
    """Classification metrics (TopkAcc) of ``Metric.Train`` (or a classifier's ``Metric.Eval``)."""
    if not cfg_list:
        return []
    out = []
    for name, params, where in _metric_entries(cfg_list, path, "[{TopkAcc: {topk: [1, 5]}}]"):
        if _is_retrieval(name):
            raise ConfigError(f"{where}: {name} is a retrieval metric; {path} takes classification metrics "
                              f"(TopkAcc)")
        out.append(registry("metric").build(name, params, where))
    return out
