"""Cosine-similarity batch-hard triplet losses: TripletAngularMarginLoss and its cross-batch-memory variant.

Both mine, for every anchor, the least similar positive and the most similar negative with a mask over
one similarity matrix (``functional.mining``), so any batch composition works; on balanced P×K batches
the values and gradients equal PaddleClas's (ties split the gradient equally, as ``paddle.max``/``min``).
"""
from typing import Literal

import paddle
import paddle.nn.functional as F

from ..functional.mining import LabelCandidates, hardest_pairs
from ..functional.normalize import l2_normalize
from ..functional.reduction import masked_mean, reduce
from ..inputs import keyed_features_and_labels
from ..memory import CrossBatchMemory, count_call
from ..registry import register_loss

_REDUCTIONS = ("mean", "sum", "none")


def _check_common(owner, reduction, absolute_loss_weight):
    if reduction not in _REDUCTIONS:
        raise ValueError(f"{owner}: reduction must be one of {_REDUCTIONS}, got {reduction!r}")
    if absolute_loss_weight < 0:
        raise ValueError(f"{owner}: absolute_loss_weight must be >= 0, got {absolute_loss_weight}")


def angular_triplet_terms(x, keys, pos, neg, margin, reduction, add_absolute, absolute_loss_weight, ap_value,
                          an_value, an_fallback):
    """Ranking (and optional absolute) loss of queries ``x`` against ``keys`` (``None``: ``x`` itself), mining
    the least similar positive and most similar negative key of each query by dot similarity.

    Anchors with no positive or no negative key are left out of every mean; with none left the result is
    a zero that keeps a gradient path.
    """
    ap, an, has_pos, has_neg = hardest_pairs(x, pos, neg, "dot", keys=keys)
    valid = paddle.logical_and(has_pos, has_neg)
    ranking = F.relu(an - ap + margin)
    if not add_absolute:
        return reduce(ranking, reduction, valid)
    ranking = reduce(ranking, "mean" if reduction == "none" else reduction, valid)
    pos_term = F.relu(ap_value - ap)
    above = an - an_value
    neg_term = paddle.where(above > 0, above, paddle.full_like(above, an_fallback))
    return (masked_mean(neg_term, valid) + masked_mean(pos_term, valid)) * absolute_loss_weight + ranking


@register_loss
class TripletAngularMarginLoss(paddle.nn.Layer):
    """Batch-hard triplet loss on cosine similarity, with an optional absolute-threshold term.

    Math (``X`` row-normalised when ``normalize_feature``; ``S = X·Xᵀ``; positives are same-label columns
    *including the anchor itself*, negatives the other-label columns)::

        ap_i = min_{j: y_j = y_i} S_ij          an_i = max_{j: y_j != y_i} S_ij
        r_i  = relu(an_i - ap_i + margin)       loss = reduce(r, reduction)

    With ``add_absolute``::

        A_i = max(ap_value - ap_i, 0)
        B_i = an_i - an_value   if an_i > an_value   else an_fallback
        loss = (mean_i B_i + mean_i A_i) · absolute_loss_weight + mean(reduce(r, reduction))   (a scalar)

    Args:
        margin: ranking margin.
        normalize_feature: L2-normalise the features (cosine similarity); otherwise raw dot products.
        reduction: ``"mean"``, ``"sum"`` or ``"none"`` (per-anchor ``[N]``; scalar when ``add_absolute``).
        add_absolute: add the absolute terms ``A`` and ``B``.
        absolute_loss_weight: factor of the absolute terms.
        ap_value: hardest-positive similarity below which ``A`` charges the gap.
        an_value: hardest-negative similarity above which ``B`` charges the excess.
        feature_from: key of the input dict holding the ``[N, D]`` features.
        an_fallback: value of ``B_i`` for anchors whose hardest negative already satisfies
            ``an_i <= an_value``. New parameter (not in PaddleClas). PaddleClas charges the constant 1.0
            there, which is the default, so values match PaddleClas. A constant has zero gradient, so it
            changes nothing in training, but it inflates the reported loss by ``absolute_loss_weight ×
            (share of satisfied anchors)`` and makes a *satisfied* anchor look worse than one that misses
            ``an_value`` by less than 1 -- misleading when reading the curve or balancing loss weights.
            ``an_fallback=0.0`` gives the plain hinge ``max(an_i - an_value, 0)``; the gradient is the
            same for every value.

    Reads ``input[feature_from]`` (a bare Tensor is taken as the features) and int labels ``[N]``/``[N, 1]``.
    Returns ``{"TripletAngularMarginLoss": loss}``.

    Divergences from PaddleClas (docs/compatibility.md): PaddleClas mines with masked_select + reshape,
    which raises on unbalanced batches whose squared class counts do not sum to a multiple of N, silently
    mixes rows when they do, and raises on a single-class batch. Here every anchor is mined on its own
    row; anchors without a negative are excluded from the means (a single-class batch gives 0). Features
    are normalised with an epsilon (``max(||x||, 1e-12)``), so a zero row gives a finite loss instead of
    NaN. A singleton class keeps PaddleClas's semantics: its positive is the anchor itself (``ap ≈ 1``).
    """

    input_keys = ("features",)
    input_key_params = ("feature_from",)
    output_keys = ("TripletAngularMarginLoss",)

    def __init__(self, margin: float = 0.5, normalize_feature: bool = True,
                 reduction: Literal["mean", "sum", "none"] = "mean", add_absolute: bool = False,
                 absolute_loss_weight: float = 1.0, ap_value: float = 0.9, an_value: float = 0.5,
                 feature_from: str = "features", an_fallback: float = 1.0):
        super().__init__()
        _check_common(type(self).__name__, reduction, absolute_loss_weight)
        self.margin = float(margin)
        self.normalize_feature = bool(normalize_feature)
        self.reduction = reduction
        self.add_absolute = bool(add_absolute)
        self.absolute_loss_weight = float(absolute_loss_weight)
        self.ap_value = float(ap_value)
        self.an_value = float(an_value)
        self.feature_from = feature_from
        self.an_fallback = float(an_fallback)

    def _features_and_labels(self, input, target):
        x, y = keyed_features_and_labels(input, target, self.feature_from, type(self).__name__)
        if self.normalize_feature:
            x = l2_normalize(x, "clamp")
        return x, y

    def _terms(self, x, keys, pos, neg):
        return angular_triplet_terms(x, keys, pos, neg, self.margin, self.reduction, self.add_absolute,
                                     self.absolute_loss_weight, self.ap_value, self.an_value,
                                     self.an_fallback)

    def forward(self, input, target):
        x, y = self._features_and_labels(input, target)
        return {"TripletAngularMarginLoss": self._terms(x, None, LabelCandidates.of(y), None)}


@register_loss
class TripletAngularMarginLoss_XBM(TripletAngularMarginLoss):
    """TripletAngularMarginLoss plus the same loss against a cross-batch memory (XBM).

    Math: ``loss = T(X, X)`` for the first ``start_iter`` calls, then
    ``loss = T(X, X) + xbm_weight · T(X, memory)``, where ``T(Q, K)`` is the TripletAngularMarginLoss of
    queries ``Q`` against keys ``K`` (hardest positive/negative of each query among the keys). Each call
    first increments the persisted counter ``iter`` (also in eval mode); once ``iter > start_iter`` the
    detached batch is written into the memory *before* it is read, so the memory always holds the current
    batch. The memory term is one ``N × xbm_size`` matmul against the preallocated buffer, with unwritten
    slots masked out.

    Args:
        start_iter: number of calls without the memory term.
        xbm_size: memory slots.
        xbm_weight: factor of the memory term.
        feat_dim: feature dimension stored in the memory.
        margin, normalize_feature, reduction, add_absolute, absolute_loss_weight, ap_value, an_value,
        feature_from, an_fallback: as in :class:`TripletAngularMarginLoss`. With ``reduction="none"``
            (and no ``add_absolute``) the output has shape ``[N, 1]``, as in PaddleClas.

    State-dict keys: ``iter`` (int64), ``xbm.feats``, ``xbm.targets`` (as PaddleClas), plus ``xbm.ptr`` and
    ``xbm.filled`` (see :mod:`paddle_losses.memory`).

    Reads ``input[feature_from]`` and int labels ``[N]``/``[N, 1]``. Returns
    ``{"TripletAngularMarginLoss_XBM": loss}``.

    Divergences from PaddleClas (docs/compatibility.md): the memory's fill state is tracked explicitly, so a
    label 0 in the last slot no longer empties the memory (PaddleClas crashes in that case); PaddleClas's
    ±10 sentinels are replaced by exact masked mining (they break un-normalised features with
    ``|S| > 10``); a single-class batch gives 0 (PaddleClas charges the absolute terms a sentinel value);
    int32 labels and float64 features are accepted (the memory stays float32); ``xbm.ptr`` is persisted.
    """

    output_keys = ("TripletAngularMarginLoss_XBM",)

    def __init__(self, start_iter: int, xbm_size: int, xbm_weight: float, feat_dim: int, margin: float = 0.5,
                 normalize_feature: bool = True, reduction: Literal["mean", "sum", "none"] = "mean",
                 add_absolute: bool = False, absolute_loss_weight: float = 1.0, ap_value: float = 0.9,
                 an_value: float = 0.5, feature_from: str = "features", an_fallback: float = 1.0):
        super().__init__(margin=margin, normalize_feature=normalize_feature, reduction=reduction,
                         add_absolute=add_absolute, absolute_loss_weight=absolute_loss_weight,
                         ap_value=ap_value, an_value=an_value, feature_from=feature_from,
                         an_fallback=an_fallback)
        if int(start_iter) < 0:
            raise ValueError(f"TripletAngularMarginLoss_XBM: start_iter must be >= 0, got {start_iter}")
        self.start_iter = int(start_iter)
        self.xbm_weight = float(xbm_weight)
        self.register_buffer("iter", paddle.zeros([], dtype="int64"))
        self.xbm = CrossBatchMemory(xbm_size, feat_dim)

    def forward(self, input, target):
        x, y = self._features_and_labels(input, target)
        loss = self._terms(x, None, LabelCandidates.of(y), None)
        self.xbm.check_batch(x, y)  # before counting the call, so that a rejected batch changes no state
        if count_call(self.iter, self.start_iter):
            keys, key_labels = self.xbm.push(x, y)
            loss = loss + self.xbm_weight * self._terms(x, keys, LabelCandidates.of(y, key_labels), None)
        if loss.ndim == 1:
            loss = loss.reshape([-1, 1])
        return {"TripletAngularMarginLoss_XBM": loss}
