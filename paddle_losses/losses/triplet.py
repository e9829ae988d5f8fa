"""Euclidean batch-hard triplet losses: TripletLoss and TripletLossV2.

Both take the farthest positive and the closest negative of every anchor from one Gram-Euclidean
distance matrix (a single matmul), mined per row with a mask, so any batch composition works.
"""
import paddle
import paddle.nn.functional as F

from ..functional.mining import LabelCandidates, hardest_pairs
from ..functional.normalize import l2_normalize
from ..functional.reduction import masked_mean
from ..inputs import keyed_features_and_labels
from ..registry import register_loss


def euclidean_batch_hard(x, y, margin, ties):
    """``mean_i relu(ap_i - an_i + margin)`` on the Gram-Euclidean distances of ``x``.

    Positives include the anchor itself (distance ≈ 1e-6), as in PaddleClas; anchors without a negative
    are left out of the mean (a single-class batch gives a zero that keeps a gradient path).
    """
    ap, an, has_pos, has_neg = hardest_pairs(x, LabelCandidates.of(y), None, "euclidean", ties=ties)
    return masked_mean(F.relu(ap - an + margin), paddle.logical_and(has_pos, has_neg))


@register_loss
class TripletLoss(paddle.nn.Layer):
    """Batch-hard triplet loss on raw Euclidean distances (PaddleClas ``triplet.py: TripletLoss``).

    Math: ``d_ij = sqrt(max(||x_i||² + ||x_j||² - 2 x_i·x_j, 1e-12))``;
    ``ap_i = max_{j: y_j = y_i} d_ij`` (the anchor itself included), ``an_i = min_{j: y_j != y_i} d_ij``;
    ``loss = mean_i relu(ap_i - an_i + margin)``. No feature normalisation.

    Ties: when several columns attain the extremum, the first one gets the whole gradient (PaddleClas
    mines with Python's ``max``/``min``); TripletLossV2 splits it instead.

    Args:
        margin: ranking margin.

    Reads ``input["features"]`` (fixed key; a bare Tensor is taken as the features) and int labels
    ``[N]``/``[N, 1]``. Returns ``{"TripletLoss": loss}``.

    Divergences from PaddleClas (docs/compatibility.md): a batch in which some anchor has no negative (a
    single-class batch) raised ``AttributeError``; here such anchors are left out of the mean, and a
    single-class batch gives 0. The mining runs on the device (PaddleClas loops over rows on the host).
    """

    input_keys = ("features",)
    output_keys = ("TripletLoss",)

    def __init__(self, margin: float = 1.0):
        super().__init__()
        self.margin = float(margin)

    def forward(self, input, target):
        x, y = keyed_features_and_labels(input, target, "features", "TripletLoss")
        return {"TripletLoss": euclidean_batch_hard(x, y, self.margin, ties="first")}


@register_loss
class TripletLossV2(paddle.nn.Layer):
    """Batch-hard triplet loss on Euclidean distances of (optionally) normalised features.

    Math: ``X ← X / (||X|| + 1e-12)`` when ``normalize_feature``; then as :class:`TripletLoss`:
    ``loss = mean_i relu(max_{pos} d_ij - min_{neg} d_ij + margin)``, positives including the anchor.
    Tied extrema share the gradient equally (``paddle.max``/``min`` semantics).

    Args:
        margin: ranking margin.
        normalize_feature: L2-normalise the features first.
        feature_from: key of the input dict holding the ``[N, D]`` features (strong-baseline configs use
            ``backbone`` with ``normalize_feature: False``).

    Reads ``input[feature_from]`` and int labels ``[N]``/``[N, 1]``. Returns ``{"TripletLossV2": loss}``.

    Divergences from PaddleClas (docs/compatibility.md): PaddleClas mines with masked_select + reshape,
    which raises on unbalanced batches whose squared class counts do not sum to a multiple of N, silently
    mixes rows when they do, and raises on a single-class batch. Here every anchor is mined on its own
    row and anchors without a negative are left out of the mean. On balanced P×K batches (and on
    all-singleton batches, where an anchor's only positive is itself) the values are PaddleClas's.
    """

    input_keys = ("features",)
    input_key_params = ("feature_from",)
    output_keys = ("TripletLossV2",)

    def __init__(self, margin: float = 0.5, normalize_feature: bool = True, feature_from: str = "features"):
        super().__init__()
        self.margin = float(margin)
        self.normalize_feature = bool(normalize_feature)
        self.feature_from = feature_from

    def forward(self, input, target):
        x, y = keyed_features_and_labels(input, target, self.feature_from, "TripletLossV2")
        if self.normalize_feature:
            x = l2_normalize(x, "add")
        return {"TripletLossV2": euclidean_batch_hard(x, y, self.margin, ties="split")}
