"""Contrastive loss in the XBM-paper form, and its cross-batch-memory variant.

Every query row is compared with every key; a positive pair counts while its similarity is below
``1 - epsilon`` (which drops the self pair of normalised features), a negative pair while its similarity
is above ``margin``. Masks over one similarity matrix replace PaddleClas's per-row Python loop.
"""
import paddle

from ..functional.masks import positive_negative
from ..functional.normalize import l2_normalize
from ..functional.pairwise import dot_similarity
from ..inputs import check_features, check_labels, pick
from ..memory import CrossBatchMemory, count_call
from ..registry import register_loss


def contrastive_terms(sim, pos, neg, margin, epsilon):
    """``Σ_i [Σ_{pos, S<1-ε} (1 - S_ij) + Σ_{neg, S>margin} S_ij] / N_queries`` from label masks."""
    with paddle.no_grad():
        pos = paddle.logical_and(pos, sim < 1.0 - epsilon)
        neg = paddle.logical_and(neg, sim > margin)
    zeros = paddle.zeros_like(sim)
    per_pair = paddle.where(pos, 1.0 - sim, zeros) + paddle.where(neg, sim, zeros)
    return per_pair.sum() / sim.shape[0]


class _ContrastiveBase(paddle.nn.Layer):
    def _features_and_labels(self, input, target):
        owner = type(self).__name__
        x = check_features(pick(input, self.feature_from, owner), owner, f"input[{self.feature_from!r}]")
        y = check_labels(target, x.shape[0], owner)
        if self.normalize_feature:
            x = l2_normalize(x, "clamp")
        return x, y


@register_loss
class ContrastiveLoss(_ContrastiveBase):
    """Contrastive loss without squares or positive hinge (XBM paper form).

    Math: ``S = X·Xᵀ`` (``X`` normalised when ``normalize_feature``);
    ``loss = (1/N) Σ_i [ Σ_{j: y_j = y_i, S_ij < 1-ε} (1 - S_ij) + Σ_{j: y_j != y_i, S_ij > margin} S_ij ]``.
    With normalised features the self pair (``S_ii ≈ 1``) is dropped by the ``1 - ε`` filter; without
    normalisation it counts whenever ``||x_i||² < 1 - ε`` (as in PaddleClas).

    Args:
        margin: similarity above which a negative pair is charged.
        embedding_size: feature dimension (unused, kept for config compatibility).
        normalize_feature: L2-normalise the features.
        epsilon: positive pairs with ``S >= 1 - epsilon`` are ignored.
        feature_from: key of the input dict holding the ``[N, D]`` features.

    Reads ``input[feature_from]`` and int labels ``[N]``/``[N, 1]``. Returns ``{"ContrastiveLoss": loss}``.

    Divergence from PaddleClas (docs/compatibility.md): with ``[N, 1]`` labels -- what PaddleClas's engine
    passes -- PaddleClas broadcasts the label mask and counts whole rows many times (a value of 22.1
    instead of 0.88 in the golden case); here ``[N, 1]`` and ``[N]`` labels give the same, intended value.
    """

    input_keys = ("input[feature_from]", "target")
    output_keys = ("ContrastiveLoss",)

    def __init__(self, margin: float, embedding_size: int, normalize_feature: bool = True,
                 epsilon: float = 1e-5, feature_from: str = "features"):
        super().__init__()
        self.margin = float(margin)
        self.embedding_size = int(embedding_size)
        self.normalize_feature = bool(normalize_feature)
        self.epsilon = float(epsilon)
        self.feature_from = feature_from

    def forward(self, input, target):
        x, y = self._features_and_labels(input, target)
        pos, neg = positive_negative(y)
        return {"ContrastiveLoss": contrastive_terms(dot_similarity(x), pos, neg, self.margin, self.epsilon)}


@register_loss
class ContrastiveLoss_XBM(_ContrastiveBase):
    """ContrastiveLoss plus the same loss against a cross-batch memory (XBM).

    Math: ``loss = C(X, X)`` for the first ``start_iter`` calls, then ``loss = C(X, X) + xbm_weight ·
    C(X, memory)`` with ``C`` the :class:`ContrastiveLoss` of queries against keys. Each call increments
    the counter ``iter``; once ``iter > start_iter`` the detached batch is written into the memory before
    it is read (its self pairs, ``S ≈ 1``, are dropped by the ``1 - ε`` filter). The memory term is one
    ``N × xbm_size`` matmul against the preallocated buffer with unwritten slots masked out.

    Args:
        xbm_size: memory slots.
        xbm_weight: factor of the memory term.
        start_iter: number of calls without the memory term.
        margin, embedding_size, epsilon, normalize_feature, feature_from: as in :class:`ContrastiveLoss`
            (``embedding_size`` is also the memory's feature size).

    State-dict keys: ``xbm.feats``, ``xbm.targets`` (as PaddleClas), plus ``iter``, ``xbm.ptr`` and
    ``xbm.filled``.

    Reads ``input[feature_from]`` and int labels ``[N]``/``[N, 1]``. Returns ``{"ContrastiveLoss_XBM": loss}``.

    Divergences from PaddleClas (docs/compatibility.md): ``iter`` and the write pointer are persisted
    (PaddleClas restarts both at 0 on resume); the memory's fill state is tracked explicitly, so a label 0
    in the last slot no longer empties the memory (PaddleClas then drops the memory term and its backward
    pass raises); float64 features are accepted (the memory stays float32).
    """

    input_keys = ("input[feature_from]", "target")
    output_keys = ("ContrastiveLoss_XBM",)

    def __init__(self, xbm_size: int, xbm_weight: float, start_iter: int, margin: float, embedding_size: int,
                 epsilon: float = 1e-5, normalize_feature: bool = True, feature_from: str = "features"):
        super().__init__()
        if int(start_iter) < 0:
            raise ValueError(f"ContrastiveLoss_XBM: start_iter must be >= 0, got {start_iter}")
        self.xbm_weight = float(xbm_weight)
        self.start_iter = int(start_iter)
        self.margin = float(margin)
        self.embedding_size = int(embedding_size)
        self.epsilon = float(epsilon)
        self.normalize_feature = bool(normalize_feature)
        self.feature_from = feature_from
        self.register_buffer("iter", paddle.zeros([], dtype="int64"))
        self.xbm = CrossBatchMemory(xbm_size, embedding_size)

    def forward(self, input, target):
        x, y = self._features_and_labels(input, target)
        pos, neg = positive_negative(y)
        loss = contrastive_terms(dot_similarity(x), pos, neg, self.margin, self.epsilon)
        self.xbm.check_batch(x, y)  # before counting the call, so that a rejected batch changes no state
        if count_call(self.iter, self.start_iter):
            keys, key_labels = self.xbm.push(x, y)
            mem_pos, mem_neg = positive_negative(y, key_labels)
            loss = loss + self.xbm_weight * contrastive_terms(dot_similarity(x, keys), mem_pos, mem_neg,
                                                              self.margin, self.epsilon)
        return {"ContrastiveLoss_XBM": loss}
