"""Losses whose pairs come from the batch layout, not from labels: TriHardLoss, MSMLoss, EmlLoss, NpairsLoss.

TriHardLoss, MSMLoss and EmlLoss expect the batch as consecutive groups of ``samples_each_class`` rows of
one identity (rows ``gK … gK+K-1`` form group ``g``); NpairsLoss expects alternating anchor / positive
rows. The target is ignored, as in PaddleClas. Groups become masks over one pairwise matrix (no reordering
gather, no ``B × B × D`` difference tensor), so the actual batch size is what counts: PaddleClas's
``batch_size`` parameter is kept for config compatibility, and a batch of another size is computed on
its own rows (PaddleClas asserts, truncates or raises; see docs/compatibility.md). A trailing partial
group is allowed; its rows take part as long as they have a partner.
"""
import functools
import math

import paddle
import paddle.nn.functional as F

from ..errors import InputError
from ..functional.masks import positive_negative
from ..functional.eml import eml_statistics
from ..functional.mining import Candidates, LabelCandidates, hardest, hardest_pairs
from ..functional.mining.hardest import choose_block_rows
from ..functional.normalize import l2_normalize
from ..functional.reduction import masked_mean
from ..inputs import check_features, pick
from ..registry import register_loss


def group_masks(n, group_size):
    """``(pos, neg)`` ``[n, n]`` bool masks of the consecutive-groups layout; ``pos`` excludes the diagonal."""
    rows = paddle.arange(n, dtype="int64")
    pos, neg = positive_negative(rows // group_size)
    # Built from the row index rather than positive_negative(exclude_self=True), whose bool paddle.eye
    # has no CPU kernel in Paddle 3.3.1.
    not_self = rows.reshape([-1, 1]) != rows.reshape([1, -1])
    return paddle.logical_and(pos, not_self), neg


@functools.lru_cache(maxsize=8)
def _cached_layout_candidates(n, group_size):
    return Candidates.from_masks(*group_masks(n, group_size))


def layout_candidates(n, group_size):
    """:class:`~paddle_losses.functional.mining.Candidates` of the consecutive-groups layout.

    They depend on the batch size only, so eager calls reuse them (building them is a third of a TriHard
    step at B = 256); a traced program builds them in its graph.
    """
    if paddle.in_dynamic_mode():
        return _cached_layout_candidates(int(n), int(group_size))
    return Candidates.from_masks(*group_masks(n, group_size))


def layout_hardest_pairs(x, group_size):
    """:func:`~paddle_losses.functional.mining.hardest_pairs` on squared distances with the
    consecutive-groups layout's candidates.

    A batch small enough to mine in one block reuses the cached ``[N, N]`` candidate masks; a larger one
    (eager) gets its candidates from the group ids ``row // group_size``, built a block of anchors at a time,
    so no ``[N, N]`` matrix is held (same candidates, values and tie rule).
    """
    n = x.shape[0]
    if paddle.in_dynamic_mode() and choose_block_rows(n, n) < n:
        groups = paddle.arange(n, dtype="int64") // int(group_size)
        return hardest_pairs(x, LabelCandidates.of(groups, exclude_self=True), None, "sqeuclidean")
    return hardest_pairs(x, None, None, "sqeuclidean", candidates=layout_candidates(n, group_size))


def _check_group_params(owner, batch_size, samples_each_class):
    if int(samples_each_class) < 2:
        raise ValueError(f"{owner}: samples_each_class must be >= 2 (each anchor needs a positive in its "
                         f"group), got {samples_each_class}")
    if int(batch_size) < int(samples_each_class):
        raise ValueError(f"{owner}: batch_size ({batch_size}) must be >= samples_each_class "
                         f"({samples_each_class})")


def _features(input, owner):
    return check_features(pick(input, "features", owner), owner, 'input["features"]')


@register_loss
class TriHardLoss(paddle.nn.Layer):
    """Batch-hard triplet loss on squared distances of normalised features, groups from the layout.

    Math: ``x ← x / ||x||``, ``q_ij = ||x_i - x_j||²``; positives of ``i`` are the other rows of its group,
    negatives all rows of other groups; ``loss = mean_i relu(max_pos q_ij + margin - min_neg q_ij)``
    (tied extrema share the gradient).

    Args:
        batch_size: PaddleClas's expected batch size (kept for config compatibility; the actual batch
            size is used).
        samples_each_class: group size ``K`` (>= 2).
        margin: ranking margin.

    Reads ``input["features"]``; the target is ignored. Returns ``{"trihardloss": loss}``.

    Divergences from PaddleClas (docs/compatibility.md): a batch of another size than ``batch_size``
    raised AssertionError and is computed here; normalisation uses ``max(||x||, 1e-12)`` (a zero row no
    longer gives NaN); the ``B × B × D`` difference tensor is replaced by the matmul form (same values).
    """

    input_keys = ("features",)
    output_keys = ("trihardloss",)

    def __init__(self, batch_size: int = 120, samples_each_class: int = 2, margin: float = 0.1):
        super().__init__()
        _check_group_params("TriHardLoss", batch_size, samples_each_class)
        self.batch_size = int(batch_size)
        self.samples_each_class = int(samples_each_class)
        self.margin = float(margin)

    def forward(self, input, target=None):
        x = l2_normalize(_features(input, "TriHardLoss"), "clamp")
        hp, hn, has_pos, has_neg = layout_hardest_pairs(x, self.samples_each_class)
        loss = masked_mean(F.relu(hp + self.margin - hn), paddle.logical_and(has_pos, has_neg))
        return {"trihardloss": loss}


@register_loss
class MSMLoss(paddle.nn.Layer):
    """Margin sample mining loss: the batch-global hardest positive and negative pair.

    Math: ``x ← x / ||x||``, ``q_ij = ||x_i - x_j||²``;
    ``loss = relu(max_{(i,j) same group, i≠j} q_ij + margin - min_{(i,j) different groups} q_ij)``.
    ``q`` is symmetric, so the extreme is attained at ``(i, j)`` and ``(j, i)``; the gradient is split
    between them (as in PaddleClas). The extreme is taken as the extreme of the per-row extremes, mined
    without a dense gradient (``functional.mining.hardest_pairs``); only when three or more distinct pairs
    tie exactly (duplicated samples) does the gradient split differ from PaddleClas's per-entry split
    (it is then shared per row).

    Args:
        batch_size: PaddleClas's expected batch size (kept for config compatibility; the actual batch
            size is used).
        samples_each_class: group size ``K`` (>= 2).
        margin: ranking margin.

    Reads ``input["features"]``; the target is ignored. Returns ``{"msmloss": loss}``.

    Divergences from PaddleClas (docs/compatibility.md): with more rows than ``batch_size`` PaddleClas
    silently reads the first ``batch_size²`` entries of the flattened matrix as a ``batch_size ×
    batch_size`` matrix (garbage), and with fewer it raises IndexError; here the actual batch is used.
    Normalisation uses ``max(||x||, 1e-12)``.
    """

    input_keys = ("features",)
    output_keys = ("msmloss",)

    def __init__(self, batch_size: int = 120, samples_each_class: int = 2, margin: float = 0.1):
        super().__init__()
        _check_group_params("MSMLoss", batch_size, samples_each_class)
        self.batch_size = int(batch_size)
        self.samples_each_class = int(samples_each_class)
        self.margin = float(margin)

    def forward(self, input, target=None):
        x = l2_normalize(_features(input, "MSMLoss"), "clamp")
        # The batch-global extreme is the extreme of the per-row extremes; hardest() over rows splits the
        # gradient between the two orientations (i, j) and (j, i) of the symmetric extreme pair.
        row_hp, row_hn, row_has_pos, row_has_neg = layout_hardest_pairs(x, self.samples_each_class)
        hp, has_pos = hardest(row_hp.reshape([1, -1]), row_has_pos.reshape([1, -1]), "max")
        hn, has_neg = hardest(row_hn.reshape([1, -1]), row_has_neg.reshape([1, -1]), "min")
        loss = masked_mean(F.relu(hp + self.margin - hn), paddle.logical_and(has_pos, has_neg))
        return {"msmloss": loss}


@register_loss
class EmlLoss(paddle.nn.Layer):
    """Ensemble-metric-learning style loss on raw squared distances, groups from the layout.

    Math (``q_ij = ||x_i - x_j||²`` on raw features; ``P_i`` the other rows of ``i``'s group, ``N_i`` the
    rows of other groups; ``τ = 20``, ``β = 1e5``)::

        pmax_i = max_{P_i} q_ij,   pm_i = mean_{P_i} exp(q_ij - pmax_i)
        nmin_i = min_{N_i} q_ij,   nm_i = mean_{N_i} exp(nmin_i - q_ij)
        b_i = pmax_i - nmin_i,     θ_i = pm_i · nm_i
        f(θ, b) = ln(1 + β θ e^b) / ln(1 + β),   g(θ, b) = (ln θ + b + ln β) / ln(1 + β)
        loss = mean_i [ f(θ_i, min(b_i, τ)) + g(θ_i, max(b_i, τ)) - f(θ_i, τ) ]

    ``g`` is the large-``b`` asymptote of ``f``, used past ``τ`` to avoid overflow. Gradients flow through
    ``pmax`` and ``nmin`` too (nothing detached).

    Args:
        batch_size: PaddleClas's expected batch size; must be a multiple of ``samples_each_class`` (kept for
            config compatibility; the actual batch size is used).
        samples_each_class: group size ``K`` (>= 2).

    Reads ``input["features"]``; the target is ignored. Returns ``{"emlloss": loss}``.

    Divergences from PaddleClas (docs/compatibility.md): a batch of another size than ``batch_size`` is
    computed on its own rows (PaddleClas truncates or raises IndexError).
    """

    input_keys = ("features",)
    output_keys = ("emlloss",)
    thresh = 20.0
    beta = 100000.0

    def __init__(self, batch_size: int = 40, samples_each_class: int = 2):
        super().__init__()
        _check_group_params("EmlLoss", batch_size, samples_each_class)
        if int(batch_size) % int(samples_each_class) != 0:
            raise ValueError(f"EmlLoss: batch_size ({batch_size}) must be a multiple of samples_each_class "
                             f"({samples_each_class})")
        self.batch_size = int(batch_size)
        self.samples_each_class = int(samples_each_class)

    def _f(self, theta, bias):
        return paddle.log(1 + self.beta * theta * paddle.exp(bias)) / math.log(1 + self.beta)

    def _g(self, theta, bias):
        return (paddle.log(theta) + bias + math.log(self.beta)) / math.log(1 + self.beta)

    def forward(self, input, target=None):
        x = _features(input, "EmlLoss")
        c = layout_candidates(x.shape[0], self.samples_each_class)
        pos, neg = paddle.logical_not(c.pos_excluded), paddle.logical_not(c.neg_excluded)
        pmax, nmin, pm, nm, has_pos, has_neg = eml_statistics(x, pos, neg)
        valid = paddle.logical_and(has_pos, has_neg)
        theta = paddle.where(valid, pm * nm, paddle.ones_like(pm))
        bias = pmax - nmin
        tau = paddle.full_like(bias, self.thresh)
        per_row = (self._f(theta, paddle.minimum(bias, tau)) + self._g(theta, paddle.maximum(bias, tau))
                   - self._f(theta, tau))
        return {"emlloss": masked_mean(per_row, valid)}


@register_loss
class NpairsLoss(paddle.nn.Layer):
    """N-pair loss over alternating anchor / positive rows, with an L2 regulariser.

    Math: anchors ``A = X[0::2]``, positives ``P = X[1::2]`` (``N/2`` pairs); ``L = A·Pᵀ``;
    ``loss = CE(L, [0 … N/2-1]) + 0.5 · reg_lambda · mean_i ||x_i||²`` (CE averaged over anchors;
    the regulariser covers all ``N`` rows). Other pairs are negatives even if they share a label.

    Args:
        reg_lambda: weight of the squared-norm regulariser.

    Reads ``input["features"]`` with an even number of rows; the target is ignored. Returns
    ``{"npairsloss": loss}``. An odd batch raises :class:`InputError` (PaddleClas: a reshape error).
    """

    input_keys = ("features",)
    output_keys = ("npairsloss",)

    def __init__(self, reg_lambda: float = 0.01):
        super().__init__()
        self.reg_lambda = float(reg_lambda)

    def forward(self, input, target=None):
        x = _features(input, "NpairsLoss")
        n = x.shape[0]
        if n % 2 != 0:
            raise InputError(f"NpairsLoss: the batch must alternate anchor and positive rows (an even number "
                             f"of rows), got {n} rows")
        anchors, positives = x[0::2], x[1::2]
        logits = paddle.matmul(anchors, positives, transpose_y=True)
        ce = F.cross_entropy(logits, paddle.arange(n // 2, dtype="int64"))
        reg = (x * x).sum(axis=1).mean()
        return {"npairsloss": ce + 0.5 * self.reg_lambda * reg}
