"""pytorch-metric-learning pair losses: contrastive, multi-similarity, circle, lifted structure.

Each works on the ``[N, N]`` matrix of its distance (or similarity) and on positive / negative pair masks
(every valid pair: same label off the diagonal / different label, or the pairs a miner kept), in O(N²).
Every ``forward(input, target=None, indices_tuple=None, positive_mask=None)`` accepts class ids, a
multi-hot label matrix ``[N, K]`` or a bool ``positive_mask`` ``[N, N]``, and PML's precomputed
``indices_tuple`` (which replaces the miner; a pair listed twice counts once).
"""
from typing import Optional, Union

import numpy as np
import paddle
import paddle.nn.functional as F

from ...functional.distances import CosineSimilarity, DotProductSimilarity, LpDistance
from ...functional.masked_lse import masked_logsumexp
from ...functional.mining import MultiSimilarityMiner
from ...functional.pair_core import exponent_limit, float_pair_masks, similarity_loss
from ...functional.pair_heads import (circle_head, contrastive_head, lifted_structure_head,
                                      multi_similarity_head)
from ...functional.reduction import DoNothingReducer, check_reducer, reduce_elements
from ...registry import register_loss
from ._common import MinedPairLoss

_Spec = Optional[Union[str, dict]]
_ReducerSpec = Union[str, dict]


# The default distances, on which the closed-form core (functional.pair_core) computes these losses.
L2_ON_UNIT_ROWS = (LpDistance(),)
COSINE = (CosineSimilarity(), DotProductSimilarity())


class _PairLoss(MinedPairLoss):
    default_distance = "LpDistance"

    def _core(self, x, labels, make_head, *params):
        """The loss on the closed-form core, with the head ``make_head(pos, neg, *params)`` (float masks)."""
        unit_rows = self.distance.normalize(x)
        pos, neg = float_pair_masks(labels, unit_rows.dtype)
        return {type(self).__name__: similarity_loss(unit_rows, make_head(pos, neg, *params))}


@register_loss
class PMLContrastiveLoss(_PairLoss):
    """pytorch-metric-learning ``ContrastiveLoss`` (PaddleClas's ``ContrastiveLoss`` is a different loss).

    With a distance ``d`` (default L2 on normalised rows): positive pairs ``relu(d - pos_margin)``, negative
    pairs ``relu(neg_margin - d)`` (not squared). With ``CosineSimilarity`` ``s``: ``relu(pos_margin - s)``
    and ``relu(s - neg_margin)``. Each sub-loss is reduced on its own (default ``AvgNonZeroReducer``), then
    the two are added (``DoNothingReducer``: the positive-pair losses followed by the negative-pair ones).

    Speed: with the default distance, a ``MeanReducer`` / ``AvgNonZeroReducer`` / ``SumReducer``, labels (no
    ``indices_tuple``) and no miner, in eager mode, the loss runs on ``functional.pair_core``: value and
    ``∂L/∂S`` in closed form in the forward, one matmul in the backward, the same numbers as the generic path.

    Args: ``pos_margin=0.0``, ``neg_margin=1.0``, ``distance``, ``reducer``, ``miner`` (pair or triplet
    miner; triplets become their (a,p) and (a,n) pairs, duplicates collapsed), ``feature_from``.

    Reads ``input[feature_from]`` and labels. Returns ``{"PMLContrastiveLoss": scalar}``.
    """

    input_keys = ("features",)
    input_key_params = ("feature_from",)
    output_keys = ("PMLContrastiveLoss",)

    def __init__(self, pos_margin: float = 0.0, neg_margin: float = 1.0, distance: _Spec = None,
                 reducer: _ReducerSpec = "AvgNonZeroReducer", miner: _Spec = None,
                 feature_from: str = "features"):
        super().__init__()
        self.pos_margin, self.neg_margin = float(pos_margin), float(neg_margin)
        self.reducer = check_reducer(reducer, f"{type(self).__name__}.reducer")
        self._setup(distance, miner, feature_from)

    def forward(self, input, target=None, indices_tuple=None, positive_mask=None):
        x, labels, sel = self._read(input, target, indices_tuple, positive_mask)
        if self._core_applies(labels, sel, L2_ON_UNIT_ROWS):
            return self._core(x, labels, contrastive_head, self.pos_margin, self.neg_margin, self.reducer,
                              labels.mask is None)
        mat, pos, neg = self._generic(x, labels, sel)
        pos_loss = F.relu(self.distance.margin(mat, self.pos_margin))
        neg_loss = F.relu(self.distance.margin(self.neg_margin, mat))
        pos_part = reduce_elements(pos_loss, self.reducer, pos)
        neg_part = reduce_elements(neg_loss, self.reducer, neg)
        if isinstance(self.reducer, DoNothingReducer):  # no sum of two differently sized vectors
            return {type(self).__name__: paddle.concat([pos_part, neg_part])}
        loss = pos_part + neg_part
        return {type(self).__name__: loss}


@register_loss
class MultiSimilarityLoss(_PairLoss):
    """pytorch-metric-learning ``MultiSimilarityLoss`` (Wang et al. 2019).

    ``l_i = (1/α) log(1 + Σ_{j∈P_i} e^{-α(s_ij - base)}) + (1/β) log(1 + Σ_{k∈N_i} e^{β(s_ik - base)})``,
    ``s`` = cosine similarity by default; ``P_i`` / ``N_i`` = every positive / negative of ``i`` or the mined
    pairs (use ``miner: {name: MultiSimilarityMiner, epsilon: 0.1}`` for the paper's pair mining). Mean over
    all N rows (rows without pairs count as 0), as PML's ``MeanReducer``.

    Speed: with the default distance, a ``MeanReducer`` / ``AvgNonZeroReducer`` / ``SumReducer``, labels (no
    ``indices_tuple``), no miner or a ``MultiSimilarityMiner`` on cosine (mined on
    the loss's own ``S``), ``α(1 + base)`` and ``β(1 − base)`` within the float32 bound 60, in eager mode, the loss runs on ``functional.pair_core``: value and
    ``∂L/∂S`` in closed form in the forward, one matmul in the backward, the same numbers as the generic path.

    Args: ``alpha=2.0``, ``beta=50.0``, ``base=0.5``, ``distance``, ``reducer`` (default ``MeanReducer``),
    ``miner``, ``feature_from``.

    Reads ``input[feature_from]`` and labels. Returns ``{"MultiSimilarityLoss": scalar}``.
    """

    input_keys = ("features",)
    input_key_params = ("feature_from",)
    output_keys = ("MultiSimilarityLoss",)
    default_distance = "CosineSimilarity"

    def __init__(self, alpha: float = 2.0, beta: float = 50.0, base: float = 0.5, distance: _Spec = None,
                 reducer: _ReducerSpec = "MeanReducer", miner: _Spec = None, feature_from: str = "features"):
        super().__init__()
        self.alpha, self.beta, self.base = float(alpha), float(beta), float(base)
        self.reducer = check_reducer(reducer, f"{type(self).__name__}.reducer")
        self._setup(distance, miner, feature_from)

    def _miner_on_core(self):
        """The miner runs on the core's S: a MultiSimilarityMiner on cosine similarity (or no miner)."""
        return self.miner is None or (isinstance(self.miner, MultiSimilarityMiner)
                                      and self.miner.distance in COSINE)

    def forward(self, input, target=None, indices_tuple=None, positive_mask=None):
        x, labels, sel = self._read(input, target, indices_tuple, positive_mask)
        # the largest exponents, at s = ±1: e^{α(1 + base)} (positives) and e^{β(1 − base)} (negatives)
        if (self._core_applies(labels, sel, COSINE, miner_ok=self._miner_on_core()) and self.alpha > 0
                and self.beta > 0 and max(self.alpha * (1.0 + self.base), self.beta * (1.0 - self.base))
                <= exponent_limit(x.dtype)):
            return self._core(x, labels, multi_similarity_head, self.alpha, self.beta, self.base, self.reducer,
                              self.miner)
        mat, pos, neg = self._generic(x, labels, sel)
        pos_term = masked_logsumexp(self.alpha * self.distance.margin(mat, self.base), pos, axis=1, add_one=True)
        neg_term = masked_logsumexp(self.beta * self.distance.margin(self.base, mat), neg, axis=1, add_one=True)
        return {type(self).__name__: reduce_elements(pos_term / self.alpha + neg_term / self.beta, self.reducer)}


@register_loss
class CircleLoss(_PairLoss):
    """pytorch-metric-learning ``CircleLoss`` (Sun et al. 2020) on cosine similarity.

    With ``O_p = 1 + m``, ``O_n = -m``, ``Δ_p = 1 - m``, ``Δ_n = m``: positive logits
    ``-γ [O_p - s]₊ (s - Δ_p)``, negative logits ``γ [s - O_n]₊ (s - Δ_n)``, where the weights ``[·]₊``
    are computed from a detached ``s`` (no gradient through them, as PML). Per row
    ``l_i = softplus(LSE_pos + LSE_neg)`` (softplus returns x above 20); rows lacking a positive or a
    negative give 0. Reduced by ``AvgNonZeroReducer`` by default.

    Speed: with the default distance, a ``MeanReducer`` / ``AvgNonZeroReducer`` / ``SumReducer``, labels (no
    ``indices_tuple``) and no miner, in eager mode, the loss runs on ``functional.pair_core``: value and
    ``∂L/∂S`` in closed form in the forward, one matmul in the backward, the same numbers as the generic path.

    Args: ``m=0.4``, ``gamma=80.0``, ``distance`` (a similarity), ``reducer``, ``miner``, ``feature_from``.

    Reads ``input[feature_from]`` and labels. Returns ``{"CircleLoss": scalar}``.
    """

    input_keys = ("features",)
    input_key_params = ("feature_from",)
    output_keys = ("CircleLoss",)
    default_distance = "CosineSimilarity"

    def __init__(self, m: float = 0.4, gamma: float = 80.0, distance: _Spec = None,
                 reducer: _ReducerSpec = "AvgNonZeroReducer", miner: _Spec = None,
                 feature_from: str = "features"):
        super().__init__()
        self.m, self.gamma = float(m), float(gamma)
        self.reducer = check_reducer(reducer, f"{type(self).__name__}.reducer")
        self._setup(distance, miner, feature_from)
        if not self.distance.is_inverted:
            raise ValueError("CircleLoss needs a similarity (CosineSimilarity or DotProductSimilarity)")

    def forward(self, input, target=None, indices_tuple=None, positive_mask=None):
        x, labels, sel = self._read(input, target, indices_tuple, positive_mask)
        if self._core_applies(labels, sel, COSINE):
            return self._core(x, labels, circle_head, self.m, self.gamma, self.reducer)
        s, pos, neg = self._generic(x, labels, sel)
        fixed = s.detach()
        logit_p = -self.gamma * F.relu(1.0 + self.m - fixed) * (s - (1.0 - self.m))
        logit_n = self.gamma * F.relu(fixed + self.m) * (s - self.m)
        rows = F.softplus(masked_logsumexp(logit_p, pos, axis=1) + masked_logsumexp(logit_n, neg, axis=1),
                          beta=1, threshold=20)
        valid = paddle.logical_and(pos.any(axis=1), neg.any(axis=1))
        return {type(self).__name__: reduce_elements(rows, self.reducer, valid)}


@register_loss
class LiftedStructureLoss(_PairLoss):
    """pytorch-metric-learning ``LiftedStructureLoss`` (Oh Song et al. 2016; PML's non-generalised form).

    For every ordered positive pair ``(i, j)``:
    ``x = log Σ_{(a,k): a∈{i,j}, (a,k) negative pair} e^{neg_margin - d_ak} + d_ij - pos_margin`` and
    ``l = relu(x)² / 2`` (the log-sum is 0 when neither has a negative). Mean over the positive pairs.
    ``d`` = L2 on normalised rows by default.

    Speed: with the default distance, a ``MeanReducer`` / ``AvgNonZeroReducer`` / ``SumReducer``, labels (no
    ``indices_tuple``), class ids or multi-hot (not a ``positive_mask``), no miner and
    ``|neg_margin| <= 58``, in eager mode, the loss runs on ``functional.pair_core``: value and
    ``∂L/∂S`` in closed form in the forward, one matmul in the backward, the same numbers as the generic path.

    Args: ``neg_margin=1.0``, ``pos_margin=0.0``, ``distance``, ``reducer`` (default ``MeanReducer``, over the
    positive pairs), ``miner``, ``feature_from``.

    Reads ``input[feature_from]`` and labels. Returns ``{"LiftedStructureLoss": scalar}``.
    """

    input_keys = ("features",)
    input_key_params = ("feature_from",)
    output_keys = ("LiftedStructureLoss",)

    def __init__(self, neg_margin: float = 1.0, pos_margin: float = 0.0, distance: _Spec = None,
                 reducer: _ReducerSpec = "MeanReducer", miner: _Spec = None, feature_from: str = "features"):
        super().__init__()
        self.neg_margin, self.pos_margin = float(neg_margin), float(pos_margin)
        self.reducer = check_reducer(reducer, f"{type(self).__name__}.reducer")
        self._setup(distance, miner, feature_from)

    def forward(self, input, target=None, indices_tuple=None, positive_mask=None):
        x, labels, sel = self._read(input, target, indices_tuple, positive_mask)
        if (self._core_applies(labels, sel, L2_ON_UNIT_ROWS) and labels.mask is None
                and abs(self.neg_margin) + 2.0 <= exponent_limit(x.dtype)):
            return self._core(x, labels, lifted_structure_head, self.neg_margin, self.pos_margin, self.reducer)
        mat, pos, neg = self._generic(x, labels, sel)
        row_lse = masked_logsumexp(self.distance.margin(self.neg_margin, mat), neg, axis=1)  # [N]
        has_neg = neg.any(axis=1)
        # log(e^{L_i} + e^{L_j}) over the negatives of i and of j; a row without negatives adds nothing
        floor = paddle.full_like(row_lse, -float(np.finfo(np.float32).max) / 4)
        li = paddle.where(has_neg, row_lse, floor).reshape([-1, 1])
        lj = li.reshape([1, -1])
        both = paddle.logaddexp(li, lj)
        either = paddle.logical_or(has_neg.reshape([-1, 1]), has_neg.reshape([1, -1]))
        neg_part = paddle.where(either, both, paddle.zeros_like(both))
        x = neg_part + self.distance.margin(mat, self.pos_margin)
        loss = F.relu(x) ** 2 / 2
        return {type(self).__name__: reduce_elements(loss, self.reducer, pos)}
