"""Triplet losses with pytorch-metric-learning, PyTorch/Paddle and Keras semantics, over mined batches.

Every ``forward(input, target=None, indices_tuple=None, positive_mask=None)`` accepts class ids, a
multi-hot label matrix ``[N, K]`` or a bool ``positive_mask`` ``[N, N]`` (see
``functional.mining.targets``), and PML's precomputed ``indices_tuple``: ``(a, p, n)`` triplets, or
``(a1, p, a2, n)`` pairs joined on their anchor into triplets; a given tuple replaces the miner.
"""
from typing import Literal, Optional, Union

import paddle
import paddle.nn as nn
import paddle.nn.functional as F

from ...functional.mining import selections as M
from ...functional.reduction import check_reducer, reduce_elements, reduce_totals
from ...functional.triplet_explicit import squared_l2_triplet_loss, triplet_margin_loss
from ...functional.triplet_window import explicit_triplet_losses, windowed_triplet_totals
from ...functional.distances import CosineSimilarity, DotProductSimilarity, LpDistance, safe_sqrt
from ...functional.mining import BatchHardMiner, LabelCandidates, MultiSimilarityMiner, hardest_pairs
from ...registry import register_loss
from ...functional.mining.targets import selection_triplets
from ._common import explicit_triplets, read_batch, resolve

_Spec = Optional[Union[str, dict]]


def _reject_pair_miner(miner, owner):
    if isinstance(miner, MultiSimilarityMiner):
        raise ValueError(f"{owner}: miner MultiSimilarityMiner returns pairs; a triplet loss needs a triplet "
                         f"miner (BatchHardMiner, BatchAllMiner, TripletMarginMiner, SemiHardMiner)")


def _empty_mean(losses, reduction):
    if reduction == "mean":
        return reduce_elements(losses, "MeanReducer")
    if reduction == "sum":
        return losses.sum()
    return losses


@register_loss
class PMLTripletMarginLoss(nn.Layer):
    """pytorch-metric-learning ``TripletMarginLoss`` (v2.x), with its distance, miner and reducer options.

    Math, per triplet ``(a, p, n)`` (``y_a = y_p``, ``a ≠ p``, ``y_n ≠ y_a``), with ``u`` = the distance
    matrix (or the negated similarity for ``CosineSimilarity``), default L2 between L2-normalised rows:
    ``l = relu(u_ap - u_an + margin)`` (``softplus`` if ``smooth_loss``); ``swap`` uses
    ``min(u_an, u_pn)``. The triplets are every valid one, or the miner's selection; the reducer
    (default ``AvgNonZeroReducer``: mean over triplets with ``l > 0``) turns them into a scalar. No valid
    triplet gives 0 with an all-zero gradient.

    Speed: with ``BatchHardMiner`` (hard/hard, no ranges) on the loss's own distance (L2 with power 1 or 2,
    cosine, dot product) and no ``swap``, mining and loss run on the batch-hard core
    (``functional.mining.hardest_pairs``): one matmul without gradient and ``O(N·D)`` backward.

    Memory: "all triplets" and ``TripletMarginMiner`` selections are reduced in O(N²) (sorted negatives and
    prefix sums, ``functional.triplet_window``) when the miner's distance equals the loss's and neither
    ``swap`` nor ``smooth_loss`` is set; otherwise the mined triplets are listed (O(#triplets)).

    Args:
        margin: hinge margin (PML default 0.05, not torch's 1.0).
        swap: Balntas distance swap.
        smooth_loss: softplus instead of relu.
        triplets_per_anchor: only ``"all"`` (PML's random subsampling by an integer is not offered).
        distance: ``None`` (``LpDistance()``), a name or ``{name: LpDistance, p: 2, power: 1,
            normalize_embeddings: true}`` / ``CosineSimilarity`` / ``DotProductSimilarity``.
        reducer: ``AvgNonZeroReducer`` | ``MeanReducer`` | ``SumReducer`` | ``DoNothingReducer`` |
            ``{name: ThresholdReducer, low, high}`` (the last two list the triplets explicitly).
        miner: ``None`` or ``{name: BatchHardMiner | BatchAllMiner | TripletMarginMiner | SemiHardMiner, ...}``.
        feature_from: key of the embeddings in the model-output dict.

    Reads ``input[feature_from]`` ``[N, D]`` and int labels ``[N]``/``[N, 1]``. Returns
    ``{"PMLTripletMarginLoss": scalar}``.
    """

    input_keys = ("features",)
    input_key_params = ("feature_from",)
    output_keys = ("PMLTripletMarginLoss",)

    def __init__(self, margin: float = 0.05, swap: bool = False, smooth_loss: bool = False,
                 triplets_per_anchor: Literal["all"] = "all", distance: _Spec = None,
                 reducer: Union[str, dict] = "AvgNonZeroReducer",
                 miner: _Spec = None, feature_from: str = "features"):
        super().__init__()
        name = type(self).__name__
        if triplets_per_anchor != "all":
            raise ValueError(f"{name}: triplets_per_anchor must be 'all', got {triplets_per_anchor!r}")
        self.margin = float(margin)
        self.swap = bool(swap)
        self.smooth_loss = bool(smooth_loss)
        self.reducer = check_reducer(reducer, f"{type(self).__name__}.reducer")
        self.distance, self.miner = resolve(distance, "LpDistance", miner, name)
        _reject_pair_miner(self.miner, name)
        self.feature_from = feature_from

    def _batch_hard_metric(self):
        """The fast core's metric when the miner is plain batch-hard on the loss's own distance, else None."""
        m, d = self.miner, self.distance
        if (not isinstance(m, BatchHardMiner) or (m.pos_strategy, m.neg_strategy) != ("hard", "hard")
                or m.allowed_pos_range is not None or m.allowed_neg_range is not None or m.distance != d
                or self.swap):
            return None
        if isinstance(d, LpDistance) and float(d.p) == 2.0 and float(d.power) in (1.0, 2.0):
            return "euclidean" if float(d.power) == 1.0 else "sqeuclidean"
        if isinstance(d, (CosineSimilarity, DotProductSimilarity)):
            return "dot"
        return None

    def _batch_hard(self, x, labels, metric):
        """Batch-hard triplets on the fast core: mined without gradient, ``2N`` pair values recomputed with
        one (no dense ``[N, N]`` gradient); the first extreme wins a tie, as the miner's ``argmax``."""
        if labels.are_class_ids:  # masks built per block of anchors: no [N, N] matrix
            pos, neg = LabelCandidates.of(labels.ids, exclude_self=True), None
        else:
            pos, neg = labels.masks()
        # L2 is mined and valued squared, then rooted as LpDistance does (exact 0, zero gradient, at 0)
        core = "sqeuclidean" if metric == "euclidean" else metric
        ap, an, has_pos, has_neg = hardest_pairs(self.distance.normalize(x), pos, neg, core, ties="first")
        if metric == "euclidean":
            ap, an = safe_sqrt(ap), safe_sqrt(an)
        u_ap, u_an = (-ap, -an) if self.distance.is_inverted else (ap, an)
        z = u_ap - u_an + self.margin
        losses = F.softplus(z) if self.smooth_loss else F.relu(z)
        return reduce_elements(losses, self.reducer, paddle.logical_and(has_pos, has_neg))

    def _selection(self, x, labels, u):
        if self.miner is None:
            pos, neg = labels.masks()
            return M.all_triplets(u.detach(), pos, neg, self.distance)
        return self.miner(x, labels)

    def forward(self, input, target=None, indices_tuple=None, positive_mask=None):
        name = type(self).__name__
        x, labels, sel = read_batch(name, input, target, self.feature_from, indices_tuple, positive_mask)
        metric = self._batch_hard_metric() if sel is None else None
        if metric is not None:
            return {name: self._batch_hard(x, labels, metric)}
        u = self.distance.as_distance(self.distance(x))
        if sel is None:
            sel = self._selection(x, labels, u)
        windowed = (isinstance(sel, M.TripletWindow) and sel.distance == self.distance
                    and not self.swap and not self.smooth_loss and self.reducer.accepts_totals)
        if windowed:
            total, count, count_pos = windowed_triplet_totals(u, sel, self.margin)
            return {name: reduce_totals(total, count, count_pos, self.reducer)}
        a, p, n = selection_triplets(sel).indices()
        losses = explicit_triplet_losses(u, a, p, n, self.margin, self.swap, self.smooth_loss)
        return {name: reduce_elements(losses, self.reducer)}


class _ExplicitTripletLoss(nn.Layer):
    """Base of the losses over explicit mined triplets: a triplet miner (default ``BatchHardMiner``) and the
    gathered ``(anchors, positives, negatives)`` rows of a batch."""

    def _setup_triplet_miner(self, miner, feature_from):
        name = type(self).__name__
        _, self.miner = resolve(None, "LpDistance", miner or {"name": "BatchHardMiner"}, name)
        _reject_pair_miner(self.miner, name)
        self.feature_from = feature_from

    def _mined_triplets(self, input, target, indices_tuple=None, positive_mask=None):
        name = type(self).__name__
        x, labels, sel = read_batch(name, input, target, self.feature_from, indices_tuple, positive_mask)
        a, p, n = explicit_triplets(self.miner, x, labels, name, sel)
        return paddle.gather(x, a), paddle.gather(x, p), paddle.gather(x, n)


@register_loss
class MinedTripletMarginLoss(_ExplicitTripletLoss):
    """``torch.nn.TripletMarginLoss`` / ``paddle.nn.TripletMarginLoss`` on triplets mined from the batch.

    A miner (default ``BatchHardMiner``: farthest positive, closest negative per anchor, on normalised L2)
    picks ``(a, p, n)``; the rows ``x[a], x[p], x[n]`` of the *raw* features then get torch's loss:
    ``d(x, y) = (Σ_j |x_j - y_j + eps|^p)^(1/p)``, ``l = max(0, margin + d(a, p) - d_neg)``,
    ``d_neg = d(a, n)`` or ``min(d(a, n), d(p, n))`` with ``swap``; mean/sum over the mined triplets
    (``none``: the vector). No mined triplet gives 0 with a zero gradient.

    Args: ``margin=1.0, p=2.0, eps=1e-6, swap=False, reduction="mean"`` (torch's names and defaults),
    ``miner`` (a triplet miner mapping), ``feature_from``.

    Reads ``input[feature_from]`` ``[N, D]`` and labels. Returns ``{"MinedTripletMarginLoss": loss}``.
    """

    input_keys = ("features",)
    input_key_params = ("feature_from",)
    output_keys = ("MinedTripletMarginLoss",)

    def __init__(self, margin: float = 1.0, p: float = 2.0, eps: float = 1e-6, swap: bool = False,
                 reduction: Literal["mean", "sum", "none"] = "mean", miner: _Spec = None,
                 feature_from: str = "features"):
        super().__init__()
        name = type(self).__name__
        if reduction not in ("mean", "sum", "none"):
            raise ValueError(f"{name}: reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
        if not float(p) > 0:
            raise ValueError(f"{name}: p must be > 0, got {p!r}")
        self.margin, self.p, self.eps = float(margin), float(p), float(eps)
        self.swap, self.reduction = bool(swap), reduction
        self._setup_triplet_miner(miner, feature_from)

    def forward(self, input, target=None, indices_tuple=None, positive_mask=None):
        losses = triplet_margin_loss(*self._mined_triplets(input, target, indices_tuple, positive_mask), self.margin, self.p, self.eps,
                                     self.swap, reduction="none")
        return {type(self).__name__: _empty_mean(losses, self.reduction)}


@register_loss
class SquaredL2TripletLoss(_ExplicitTripletLoss):
    """The Keras/TF-tutorial (FaceNet) triplet loss on squared Euclidean distances, over mined triplets.

    ``l = max(0, alpha + ‖a - p‖² - ‖a - n‖²)`` on the raw features (no root, no eps, no normalisation);
    ``reduction`` mean (default), sum (FaceNet exercise style) or none. Triplets come from ``miner``
    (default ``BatchHardMiner``).

    Args: ``alpha=0.1``, ``reduction``, ``miner``, ``feature_from``.

    Reads ``input[feature_from]`` and labels. Returns ``{"SquaredL2TripletLoss": loss}``.
    """

    input_keys = ("features",)
    input_key_params = ("feature_from",)
    output_keys = ("SquaredL2TripletLoss",)

    def __init__(self, alpha: float = 0.1, reduction: Literal["mean", "sum", "none"] = "mean",
                 miner: _Spec = None, feature_from: str = "features"):
        super().__init__()
        name = type(self).__name__
        if reduction not in ("mean", "sum", "none"):
            raise ValueError(f"{name}: reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
        self.alpha, self.reduction = float(alpha), reduction
        self._setup_triplet_miner(miner, feature_from)

    def forward(self, input, target=None, indices_tuple=None, positive_mask=None):
        losses = squared_l2_triplet_loss(*self._mined_triplets(input, target, indices_tuple, positive_mask), self.alpha, reduction="none")
        return {type(self).__name__: _empty_mean(losses, self.reduction)}
