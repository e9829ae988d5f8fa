"""MetaBIN losses (domain-generalisable re-identification): CE with rescaled smoothing, batch-hard triplet,
intra-domain scatter and inter-domain shuffle.

The MetaBIN trainer passes ``batch = {"label": int64 [N], "domain": int64 [N]}`` as the second argument.
Distances are PaddleClas's ``sqrt(max(‖x_i‖² + ‖x_j‖² − 2·x_i·x_j, 1e−12))``; hard examples are mined per
row with a mask (ties share the gradient, as ``paddle.max``/``min`` do), so any batch composition works.
"""
import paddle
import paddle.nn as nn
import paddle.nn.functional as F

from ..errors import InputError
from ..functional.distill import cosine_rows
from ..functional.masks import same_label
from ..functional.mining import hardest_pairs
from ..functional.normalize import l2_normalize
from ..functional.reduction import masked_mean
from ..inputs import check_features, check_labels, pick
from ..registry import register_loss
from .ce import CELoss

_FALLBACK_MARGIN = 0.3  # InterDomainShuffleLoss's margin-ranking fallback when the soft margin overflows


def _batch_ids(batch, key, n, owner):
    """Int64 ``[N]`` ids from the MetaBIN batch dict (``label`` also accepted as a bare tensor)."""
    if isinstance(batch, paddle.Tensor) and key == "label":
        return check_labels(batch, n, owner, what="label")
    if not isinstance(batch, dict) or key not in batch:
        got = f"keys {sorted(map(str, batch))}" if isinstance(batch, dict) else type(batch).__name__
        raise InputError(f"{owner} reads batch[{key!r}] from the MetaBIN batch dict "
                         f"{{'label': [N], 'domain': [N]}}, got {got}")
    return check_labels(batch[key], n, owner, what=f"batch[{key!r}]")


def _features(input, key, normalize, owner):
    x = check_features(pick(input, key, owner), owner, f"input[{key!r}]")
    return l2_normalize(x, variant="add", eps=1e-12) if normalize else x


@register_loss
class CELossForMetaBIN(CELoss):
    """CELoss whose label smoothing spreads ε over the *other* classes only (MetaBIN).

    Math: with smoothing, the effective factor is ``ε′ = C/(C − 1)·ε`` in CELoss's ``(1 − ε′)·y + ε′/C``,
    i.e. the target is ``1 − ε`` on the true class and ``ε/(C − 1)`` on every other class; without epsilon
    it is CELoss exactly.

    Args:
        reduction: ``"mean"``, ``"sum"`` or ``"none"`` (as CELoss).
        epsilon: smoothing in (0, 1); other values turn it off (as CELoss).

    Reads ``input["logits"]`` (or a bare logits tensor) and ``batch["label"]`` (int ``[N]``/``[N, 1]``).
    Returns ``{"CELoss": loss}`` -- CELoss's key, as in PaddleClas.

    Divergences: ``ε > 0.5`` with two classes (``ε′ > 1``) gives the well-defined target above instead of
    Paddle's ``label_smooth`` ValueError; a single-class problem with smoothing raises InputError
    (PaddleClas divides by zero).
    """

    input_keys = ("logits",)
    target_keys = ("label",)
    output_keys = ("CELoss",)

    def forward(self, x, batch):
        owner = type(self).__name__
        label = pick(batch, "label", owner)
        if self.epsilon is None:
            return super().forward(x, label)
        logits = pick(x, "logits", owner)
        num_classes = logits.shape[-1]
        if num_classes < 2:
            raise InputError(f"{owner}: label smoothing needs at least 2 classes (it moves ε onto the other "
                             f"classes); the logits have {num_classes}")
        epsilon = self.epsilon
        self.epsilon = num_classes / (num_classes - 1) * epsilon
        try:
            return super().forward(logits, label)
        finally:
            self.epsilon = epsilon


@register_loss
class TripletLossForMetaBIN(nn.Layer):
    """Batch-hard triplet loss on Euclidean distances (MetaBIN).

    Math: ``D = E(X)`` (optionally on ``x/(‖x‖ + 1e−12)``), ``ap_i = max_{y_j = y_i} D_ij`` (the sample
    itself included), ``an_i = min_{y_j ≠ y_i} D_ij``, ``loss = mean_i max(ap_i − an_i + margin, 0)``.
    A batch with a single label has no negatives: the loss is 0 (PaddleClas: ``an = +∞``, same value).

    Args:
        margin: triplet margin.
        normalize_feature: L2-normalise the features first.
        feature_from: key of the features in the model output (PaddleClas's default ``"feature"`` is
            singular; MetaBIN configs set ``"backbone"``).

    Reads ``input[feature_from]`` and ``batch["label"]``. Returns ``{"TripletLoss": scalar}``.
    """

    input_keys = ("features",)
    input_key_params = ("feature_from",)
    target_keys = ("label",)
    output_keys = ("TripletLoss",)

    def __init__(self, margin: float = 1, normalize_feature: bool = False, feature_from: str = "feature"):
        super().__init__()
        self.margin = margin
        self.normalize_feature = normalize_feature
        self.feature_from = feature_from

    def forward(self, input, batch):
        owner = type(self).__name__
        x = _features(input, self.feature_from, self.normalize_feature, owner)
        labels = _batch_ids(batch, "label", x.shape[0], owner)
        pos = same_label(labels)
        ap, an, _, has_neg = hardest_pairs(x, pos, None, "euclidean")
        return {"TripletLoss": masked_mean(F.relu(ap - an + self.margin), has_neg)}


@register_loss
class IntraDomainScatterLoss(nn.Layer):
    """Mean cosine similarity of each domain's samples to their domain centre (MetaBIN).

    Math: for every domain ``d`` present in the batch, ``c_d = mean_{j ∈ d} x_j`` and
    ``ℓ_d = mean_{j ∈ d} cos(c_d, x_j)`` with ``cos(a, b) = a·b / (‖a‖·‖b‖ + 1e−8)``;
    ``loss = mean_d ℓ_d`` (every domain counts once, whatever its size). The gradient flows through the
    centres too. Computed without enumerating domains: each sample gets its domain's centre from a
    same-domain mask, and ``Σ_d ℓ_d = Σ_i cos_i / n_{d(i)}``, ``#domains = Σ_i 1 / n_{d(i)}``.

    Args:
        normalize_feature: L2-normalise the features first (``x/(‖x‖ + 1e−12)``).
        feature_from: key of the features in the model output.

    Reads ``input[feature_from]`` and ``batch["domain"]``. Returns ``{"IntraDomainScatterLoss": scalar}``.
    """

    input_keys = ("features",)
    input_key_params = ("feature_from",)
    target_keys = ("domain",)
    output_keys = ("IntraDomainScatterLoss",)

    def __init__(self, normalize_feature: bool, feature_from: str):
        super().__init__()
        self.normalize_feature = normalize_feature
        self.feature_from = feature_from

    def forward(self, input, batch):
        owner = type(self).__name__
        x = _features(input, self.feature_from, self.normalize_feature, owner)
        domains = _batch_ids(batch, "domain", x.shape[0], owner)
        members = same_label(domains).astype(x.dtype)
        count = members.sum(axis=1)
        centres = paddle.matmul(members, x) / count.unsqueeze(1)
        cos = cosine_rows(centres, x)
        share = 1.0 / count
        return {"IntraDomainScatterLoss": (cos * share).sum() / share.sum()}


@register_loss
class InterDomainShuffleLoss(nn.Layer):
    """Soft-margin triplet across domains (MetaBIN).

    Math, with ``D = E(X)``: positives of ``i`` are ``i`` itself and every sample from *another* domain
    (whatever its label); negatives are samples of the *same* domain with a different label.
    ``ap_i`` / ``an_i`` are the hardest (farthest / closest) of each, and

        loss = (1/N) Σ_i log(1 + exp(ap_i − an_i))

    Rows without a negative contribute 0 and still count in N (PaddleClas: ``an = +∞``). If that soft margin
    overflows in the input's precision (any ``ap − an > 88.72`` in float32), PaddleClas's fallback is used:
    ``loss = (1/N) Σ_i max(ap_i − an_i + 0.3, 0)``.

    Args:
        normalize_feature: L2-normalise the features first (``x/(‖x‖ + 1e−12)``).
        feature_from: key of the features in the model output.

    Reads ``input[feature_from]``, ``batch["label"]`` and ``batch["domain"]``.
    Returns ``{"InterDomainShuffleLoss": scalar}``. The choice between the two formulas is made on the
    device (no host sync), and the unused one gets no gradient.
    """

    input_keys = ("features",)
    input_key_params = ("feature_from",)
    target_keys = ("label", "domain")
    output_keys = ("InterDomainShuffleLoss",)

    def __init__(self, normalize_feature: bool = True, feature_from: str = "features"):
        super().__init__()
        self.normalize_feature = normalize_feature
        self.feature_from = feature_from

    def forward(self, input, batch):
        owner = type(self).__name__
        x = _features(input, self.feature_from, self.normalize_feature, owner)
        n = x.shape[0]
        labels = _batch_ids(batch, "label", n, owner)
        domains = _batch_ids(batch, "domain", n, owner)
        same_domain = same_label(domains)
        eye = paddle.eye(n).astype("bool")
        pos = paddle.logical_or(eye, paddle.logical_not(same_domain))
        neg = paddle.logical_and(paddle.logical_not(same_label(labels)), same_domain)
        ap, an, _, has_neg = hardest_pairs(x, pos, neg, "euclidean")

        gap = paddle.where(has_neg, ap - an, paddle.zeros_like(ap))
        zero = paddle.zeros_like(gap)
        soft = paddle.where(has_neg, F.softplus(gap), zero).mean()
        with paddle.no_grad():
            # PaddleClas computes log(1 + exp(gap)) naively and falls back when the mean is +inf.
            naive = paddle.log(1.0 + paddle.exp(gap.detach()))
            overflow = paddle.logical_and(paddle.isinf(naive), has_neg).any()
        fallback = paddle.where(has_neg, F.relu(gap + _FALLBACK_MARGIN), zero).mean()
        return {"InterDomainShuffleLoss": paddle.where(overflow, fallback, soft)}
