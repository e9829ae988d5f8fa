"""pytorch-metric-learning softmax-style embedding losses: NT-Xent, SupCon, N-pairs.

NT-Xent and SupCon accept class ids, multi-hot labels ``[N, K]`` or a ``positive_mask``, and a precomputed
``indices_tuple``; N-pairs needs class ids (one pair per label) and accepts an ``indices_tuple``.
"""
from typing import Optional, Union

import numpy as np
import paddle

from ...functional.distances import CosineSimilarity, DotProductSimilarity
from ...functional.masked_lse import masked_logsumexp
from ...functional.pair_core import exponent_limit, float_pair_masks, similarity_loss
from ...functional.pair_heads import ntxent_head
from ...functional.supcon import supcon_rows
from ...functional.reduction import check_reducer, reduce_elements
from ...registry import register_loss
from ...errors import InputError
from ...functional.mining.selections import Triplets
from ...functional.mining.targets import class_ids_only
from ._common import MinedPairLoss, read_batch

_Spec = Optional[Union[str, dict]]


def _tiny(dtype):
    return float(np.finfo(np.float64 if dtype == paddle.float64 else np.float32).tiny)


# The default distances, on which NT-Xent and SupCon run on a closed-form core.
COSINE = (CosineSimilarity(), DotProductSimilarity())


class _SimilarityLoss(MinedPairLoss):
    default_distance = "CosineSimilarity"

    def _matrix(self, x):
        # PML negates a distance so that larger always means closer here
        return -self.distance.as_distance(self.distance(x))


@register_loss
class NTXentLoss(_SimilarityLoss):
    """pytorch-metric-learning ``NTXentLoss`` (SimCLR's NT-Xent / InfoNCE with labels).

    For every positive pair ``(i, j)``:
    ``l = -log( e^{s_ij/τ} / (e^{s_ij/τ} + Σ_{k: (i,k) negative} e^{s_ik/τ}) + tiny )`` (``tiny`` = the dtype's
    smallest normal number); the other positives of ``i`` are not in the denominator. Mean over positive
    pairs. Stabilised by ``max(s_ij, max_k s_ik)/τ`` (detached) as PML. No negative pair in the batch
    gives 0.

    Speed: with cosine similarity, a ``MeanReducer`` / ``AvgNonZeroReducer`` / ``SumReducer``, labels (no
    ``indices_tuple``), no miner, ``2/τ + log(N + 1) <= 60`` (float32; 600 in float64) and eager mode, the loss
    runs on ``functional.pair_core`` (value and ``∂L/∂S`` in closed form, exponentials shifted by the bound
    ``1/τ`` instead of a row maximum; one matmul in the backward), the same numbers as the generic path.

    Args: ``temperature=0.07``, ``distance`` (default cosine), ``reducer`` (default ``MeanReducer``, over the
    positive pairs), ``miner``, ``feature_from``.

    Reads ``input[feature_from]`` and labels. Returns ``{"NTXentLoss": scalar}``.
    """

    input_keys = ("features",)
    input_key_params = ("feature_from",)
    output_keys = ("NTXentLoss",)

    def __init__(self, temperature: float = 0.07, distance: _Spec = None,
                 reducer: Union[str, dict] = "MeanReducer", miner: _Spec = None, feature_from: str = "features"):
        super().__init__()
        if not temperature > 0:
            raise ValueError(f"NTXentLoss: temperature must be > 0, got {temperature!r}")
        self.temperature = float(temperature)
        self.reducer = check_reducer(reducer, f"{type(self).__name__}.reducer")
        self._setup(distance, miner, feature_from)

    def forward(self, input, target=None, indices_tuple=None, positive_mask=None):
        x, labels, sel = self._read(input, target, indices_tuple, positive_mask)
        # every exponential of the core, e^{(s - 1)/τ} >= e^{-2/τ}, and the ratios it forms stay normal
        if (self._core_applies(labels, sel, COSINE)
                and 2.0 / self.temperature + np.log(x.shape[0] + 1.0) <= exponent_limit(x.dtype)):
            unit_rows = self.distance.normalize(x)
            pos, neg = float_pair_masks(labels, unit_rows.dtype)
            return {type(self).__name__: similarity_loss(
                unit_rows, ntxent_head(pos, neg, self.temperature, self.reducer))}
        s, pos, neg = self._generic(x, labels, sel)
        z = s / self.temperature
        has_neg = neg.any(axis=1, keepdim=True)
        with paddle.no_grad():
            row_max = paddle.where(neg, z, paddle.full_like(z, float("-inf"))).max(axis=1, keepdim=True)
            row_max = paddle.where(has_neg, row_max, paddle.full_like(row_max, float("-inf")))
            top = paddle.maximum(z, row_max)  # per pair (i, j): max(z_ij, max_k z_ik)
        numerator = paddle.exp(z - top)
        # Σ_k e^{z_ik - top_ij} = e^{row_max_i - top_ij} · Σ_k e^{z_ik - row_max_i}
        safe_max = paddle.where(has_neg, row_max, paddle.zeros_like(row_max))
        neg_sum = paddle.where(neg, paddle.exp(z - safe_max), paddle.zeros_like(z)).sum(axis=1, keepdim=True)
        scale = paddle.exp(paddle.where(has_neg.expand_as(z), safe_max - top, paddle.zeros_like(z)))
        denominator = scale * neg_sum + numerator
        losses = -paddle.log(numerator / denominator + _tiny(z.dtype))
        loss = reduce_elements(losses, self.reducer, pos)
        any_neg = neg.any()
        return {type(self).__name__: paddle.where(any_neg, loss, loss * 0.0)}


@register_loss
class PMLSupConLoss(_SimilarityLoss):
    """pytorch-metric-learning ``SupConLoss`` (PaddleClas's ``SupConLoss`` takes views and differs).

    For a row ``i`` with at least one positive:
    ``l_i = -(1/|P_i|) Σ_{j∈P_i} [ s_ij/τ - log Σ_{k≠i} e^{s_ik/τ} ]`` (denominator: every other sample).
    Rows without positives give 0; ``AvgNonZeroReducer`` (default) averages the rows with ``l_i > 0``.

    Speed: with cosine similarity, no ``indices_tuple`` and no miner (eager mode), the rows come from
    ``functional.supcon.supcon_rows`` (closed-form gradient, one matmul in the backward).

    Args: ``temperature=0.1``, ``distance`` (default cosine), ``reducer``, ``miner``, ``feature_from``.

    Reads ``input[feature_from]`` and labels. Returns ``{"PMLSupConLoss": scalar}``.
    """

    input_keys = ("features",)
    input_key_params = ("feature_from",)
    output_keys = ("PMLSupConLoss",)

    def __init__(self, temperature: float = 0.1, distance: _Spec = None,
                 reducer: Union[str, dict] = "AvgNonZeroReducer",
                 miner: _Spec = None, feature_from: str = "features"):
        super().__init__()
        if not temperature > 0:
            raise ValueError(f"PMLSupConLoss: temperature must be > 0, got {temperature!r}")
        self.temperature = float(temperature)
        self.reducer = check_reducer(reducer, f"{type(self).__name__}.reducer")
        self._setup(distance, miner, feature_from)

    def forward(self, input, target=None, indices_tuple=None, positive_mask=None):
        x, labels, sel = self._read(input, target, indices_tuple, positive_mask)
        if self._core_applies(labels, sel, COSINE):
            # supcon_rows: the same rows (denominator over every other sample), gradient in closed form
            unit_rows = self.distance.normalize(x)
            pos, _ = float_pair_masks(labels, unit_rows.dtype)
            rows, _ = supcon_rows(unit_rows, x.shape[0], pos, self.temperature, self.temperature)
            return {type(self).__name__: reduce_elements(rows, self.reducer)}
        s, pos, neg = self._generic(x, labels, sel)
        z = s / self.temperature
        log_den = masked_logsumexp(z, paddle.logical_or(pos, neg), axis=1).reshape([-1, 1])
        w = pos.astype(z.dtype)
        n_pos = w.sum(axis=1)
        mean_log_prob = ((z - log_den) * w).sum(axis=1) / (n_pos + _tiny(z.dtype))
        return {type(self).__name__: reduce_elements(-mean_log_prob, self.reducer)}


@register_loss
class PMLNPairsLoss(_SimilarityLoss):
    """pytorch-metric-learning ``NPairsLoss`` (Sohn 2016; PaddleClas's ``NpairsLoss`` is a different class).

    One pair per label: for every label with at least two samples, the anchor is its smallest index and the
    positive the next smallest. With ``S_rc = sim(anchor_r, positive_c)`` (``DotProductSimilarity`` on
    normalised rows by default, i.e. cosine), ``l_r = CE(S_r, r)``; mean over the pairs. No L2 regulariser.
    A batch with no pair gives 0. In eager mode only the anchors × positives block of ``S`` is computed.
    With an ``indices_tuple`` the pairs are its positive pairs ``(a, p)``,
    keeping the first pair of each anchor label (PML's rule). Multi-hot labels are refused (InputError).

    Args: ``distance``, ``feature_from``.

    Reads ``input[feature_from]`` and labels. Returns ``{"PMLNPairsLoss": scalar}``.
    """

    input_keys = ("features",)
    input_key_params = ("feature_from",)
    output_keys = ("PMLNPairsLoss",)
    default_distance = "DotProductSimilarity"

    def __init__(self, distance: _Spec = None, feature_from: str = "features"):
        super().__init__()
        self._setup(distance, None, feature_from)

    def forward(self, input, target=None, indices_tuple=None):
        name = type(self).__name__
        x, pair_labels, sel = read_batch(name, input, target, self.feature_from, indices_tuple)
        if pair_labels is None:
            raise InputError(f"{name} needs class-id labels also with an indices_tuple (one pair per label)")
        labels = class_ids_only(pair_labels, name)
        if sel is not None:
            return {name: self._given_pairs_loss(-self.distance.as_distance(self.distance(x)), labels, sel)}
        n = x.shape[0]
        order = paddle.argsort(labels * n + paddle.arange(n, dtype="int64"))
        sorted_labels = paddle.gather(labels, order)
        same_as_next = paddle.concat([sorted_labels[1:] == sorted_labels[:-1], paddle.zeros([1], dtype="bool")])
        is_first = paddle.concat([paddle.ones([1], dtype="bool"), sorted_labels[1:] != sorted_labels[:-1]])
        anchor_sorted = paddle.logical_and(is_first, same_as_next)
        if paddle.in_dynamic_mode() and bool(anchor_sorted.any()):
            # only the [pairs, pairs] block of anchors × positives enters the loss: gather it instead of
            # differentiating the [N, N] matrix (a sixteenth of it for P×K batches with K = 4)
            at = paddle.nonzero(anchor_sorted).reshape([-1])
            anchors, positives = paddle.gather(order, at), paddle.gather(order, at + 1)
            logits = -self.distance.as_distance(self.distance(paddle.gather(x, anchors),
                                                              paddle.gather(x, positives)))
            return {name: (paddle.logsumexp(logits, axis=1) - paddle.diagonal(logits)).mean()}
        s = -self.distance.as_distance(self.distance(x))
        positive_sorted = paddle.concat([paddle.zeros([1], dtype="bool"), anchor_sorted[:-1]])
        next_index = paddle.concat([order[1:], order[-1:]])
        # back from sorted positions to sample indices
        is_anchor = paddle.scatter(paddle.zeros([n], dtype="int64"), order, anchor_sorted.astype("int64")) > 0
        is_positive = paddle.scatter(paddle.zeros([n], dtype="int64"), order, positive_sorted.astype("int64")) > 0
        partner = paddle.scatter(paddle.zeros([n], dtype="int64"), order, next_index)
        cols = is_positive.reshape([1, -1]).expand([n, n])
        lse = masked_logsumexp(s, cols, axis=1)
        target_logit = paddle.take_along_axis(s, partner.reshape([-1, 1]), axis=1).squeeze(1)
        return {name: reduce_elements(lse - target_logit, "MeanReducer", is_anchor)}

    @staticmethod
    def _given_pairs_loss(s, labels, sel):
        """PML's rule for a given tuple: its positive pairs ``(a, p)``, the first pair of each anchor label."""
        a, p = (sel.a, sel.p) if isinstance(sel, Triplets) else (sel.a1, sel.p)
        m = a.shape[0]
        if m == 0:
            return s.sum() * 0.0
        keys = paddle.gather(labels, a) * m + paddle.arange(m, dtype="int64")
        order = paddle.argsort(keys)
        sorted_labels = paddle.gather(labels, paddle.gather(a, order))
        is_first = paddle.concat([paddle.ones([1], dtype="bool"), sorted_labels[1:] != sorted_labels[:-1]])
        keep = paddle.gather(order, paddle.nonzero(is_first).reshape([-1]))
        a, p = paddle.gather(a, keep), paddle.gather(p, keep)
        logits = paddle.gather(paddle.gather(s, a, axis=0), p, axis=1)  # [pairs, pairs], target = diagonal
        return (paddle.logsumexp(logits, axis=1) - paddle.diagonal(logits)).mean()
