"""pytorch-metric-learning losses that own class weights: ArcFace, CosFace, SubCenterArcFace, ProxyAnchor.

Each holds its parameter under PML's name and layout (``W`` ``[embedding_size, num_classes]`` with one
class per column; ``proxies`` ``[num_classes, embedding_size]``), so PML weights load by transposing
nothing. Cosines are between L2-normalised embeddings and L2-normalised class vectors (eps 1e-12).

In eager mode, with a scale small enough that the exponentials need no running maximum (the defaults
are), the losses run on closed-form forward and backward passes (:mod:`...functional.margin_softmax`);
otherwise (tracing, huge scales, rows whose squared norm overflows) on the autograd formula below, which
gives the same values and gradients to rounding.
"""
import math

import paddle
import paddle.nn as nn
import paddle.nn.functional as F

from ...errors import InputError
from ...functional.margin_softmax import exp_is_safe, margin_softmax_ce, proxy_anchor
from ...functional.masked_lse import masked_logsumexp
from ...functional.normalize import l2_normalize
from ...functional.reduction import divisor_reduce
from ...registry import register_loss
from ._common import embeddings_and_labels


def _check_sizes(owner, num_classes, embedding_size):
    if not (isinstance(num_classes, int) and num_classes > 0):
        raise ValueError(f"{owner}: num_classes must be a positive int, got {num_classes!r}")
    if not (isinstance(embedding_size, int) and embedding_size > 0):
        raise ValueError(f"{owner}: embedding_size must be a positive int, got {embedding_size!r}")


def _check_batch(owner, x, labels, num_classes, embedding_size):
    if x.shape[1] != embedding_size:
        raise InputError(f"{owner}: features have {x.shape[1]} dimensions but embedding_size is {embedding_size}")
    if paddle.in_dynamic_mode() and labels.shape[0] > 0:
        lo, hi = int(labels.min()), int(labels.max())
        if lo < 0 or hi >= num_classes:
            raise InputError(f"{owner}: labels must be class ids in [0, {num_classes}), got range [{lo}, {hi}]")


class _MarginSoftmax(nn.Layer):
    """Shared body: cosine to every class column of ``W``, a modified target cosine, scale, mean CE."""

    sub_centers = 1

    def _build_weight(self, num_classes, embedding_size):
        _check_sizes(type(self).__name__, num_classes, embedding_size)
        self.num_classes, self.embedding_size = num_classes, embedding_size
        self.W = self.create_parameter([embedding_size, num_classes * self.sub_centers],
                                       default_initializer=nn.initializer.Normal(0.0, 1.0))

    def _cosine(self, x):
        cos = paddle.matmul(l2_normalize(x, "clamp"), l2_normalize(self.W, "clamp", axis=0))
        if self.sub_centers == 1:
            return cos
        cos = cos.reshape([x.shape[0], self.num_classes, self.sub_centers])
        best = paddle.argmax(cos.detach(), axis=2, keepdim=True)  # gradient to the closest sub-centre only
        return paddle.take_along_axis(cos, best, axis=2).squeeze(2)

    def modify_target(self, cos_target):
        """The target cosine's replacement ``f(t)`` on the autograd tape."""
        raise NotImplementedError

    def target_and_slope(self, t):
        """``(f(t), f'(t))`` for the target cosines ``t [N, 1]`` (no tape): the closed-form path's margin."""
        raise NotImplementedError

    def target_range(self):
        """Bounds ``(lowest, highest)`` of ``f(t)`` over ``t`` in ``[-1, 1]``."""
        raise NotImplementedError

    def forward(self, input, target):
        name = type(self).__name__
        x, labels = embeddings_and_labels(name, input, target, self.feature_from)
        _check_batch(name, x, labels, self.num_classes, self.embedding_size)
        lowest, highest = self.target_range()
        # a row's largest term is at least e^{-scale} (an off-target cosine) unless the target is alone
        lowest = -1.0 if self.num_classes > 1 else min(lowest, -1.0)
        if (paddle.in_dynamic_mode() and x.shape[0] > 0
                and exp_is_safe(self.W.dtype, self.scale, lowest, max(highest, 1.0), self.num_classes)):
            loss = margin_softmax_ce(x, self.W, labels, self.target_and_slope, self.scale, self.sub_centers)
            if loss is not None:
                return {name: loss}
        return {name: self.reference_loss(x, labels)}

    def reference_loss(self, x, labels):
        """The loss on the autograd tape (tracing, large scales, overflowing norms; the tests' reference)."""
        cos = self._cosine(x)
        one_hot = F.one_hot(labels, self.num_classes).astype(cos.dtype)
        cos_target = (cos * one_hot).sum(axis=1, keepdim=True)
        logits = (cos + one_hot * (self.modify_target(cos_target) - cos_target)) * self.scale
        # LSE - target logit, not F.cross_entropy: Paddle's CPU softmax floors log-probabilities at -64,
        # which these scale-64 logits reach (a wrong target then costs exactly 64, not its true value)
        target_logit = paddle.take_along_axis(logits, labels.reshape([-1, 1]), axis=1).squeeze(1)
        return (paddle.logsumexp(logits, axis=1) - target_logit).mean()


class _ArcFaceBase(_MarginSoftmax):
    def modify_target(self, cos_target):
        m = self.margin_radians
        theta = paddle.acos(paddle.clip(cos_target, -1.0, 1.0))
        # cos(θ + m) stops decreasing past θ = π - m; PML switches to cos θ - m·sin m there
        return paddle.where(theta <= math.pi - m, paddle.cos(theta + m), paddle.cos(theta) - m * math.sin(m))

    def target_and_slope(self, t):
        m = self.margin_radians
        c = paddle.clip(t, -1.0, 1.0)
        theta = paddle.acos(c)
        keep = theta <= math.pi - m
        value = paddle.where(keep, paddle.cos(theta + m), paddle.cos(theta) - m * math.sin(m))
        # d cos(acos t + m)/dt = sin(θ + m)/sin θ; the fallback cos(acos t) − m·sin m has slope exactly 1.
        # Where the tape multiplies an infinite acos' by 0 (t at or past ±1) it gives inf or NaN, which the
        # matrix products then spread over a whole row and every class column. Here: slope 1 at θ = π
        # (fallback), 0 at θ = 0 (the gradient of t itself vanishes there, so the product's limit is
        # bounded and its direction undefined) and 0 past ±1 (the clip blocks the gradient).
        sin_theta = paddle.sqrt(1.0 - c * c)
        nonzero = sin_theta > 0
        arc = paddle.sin(theta + m) / paddle.where(nonzero, sin_theta, paddle.ones_like(c))
        zero = paddle.zeros_like(c)
        slope = paddle.where(keep, paddle.where(nonzero, arc, zero), paddle.ones_like(c))
        return value, paddle.where(paddle.logical_and(t >= -1.0, t <= 1.0), slope, zero)

    def target_range(self):
        m = self.margin_radians
        return -1.0 - abs(m * math.sin(m)), 1.0


@register_loss
class ArcFaceLoss(_ArcFaceBase):
    """pytorch-metric-learning ``ArcFaceLoss`` (Deng et al. 2019), a loss that owns its class weights.

    ``cos_ic = x̂_i · ŵ_c`` with ``W`` ``[embedding_size, num_classes]`` (parameter ``W``, default init
    normal(0, 1)). For the target class only, ``θ = acos(cos_y)`` and the logit is ``cos(θ + m)`` if
    ``θ <= π - m`` else ``cos θ - m sin m``; ``m = radians(margin)``: **margin is in degrees**
    (28.6° ≈ 0.5 rad). Logits ``× scale``, mean cross-entropy over the batch.

    Gradient where a target cosine is exactly 1, or rounds past ±1: PML (and the autograd formula here)
    multiply acos's infinite derivative by 0 and get inf or NaN for the whole row and every class column;
    the closed-form path uses the finite limits instead (0 at θ = 0, slope 1 on the fallback at θ = π, 0
    past ±1). Everywhere else the two agree to rounding.

    Args: ``num_classes``, ``embedding_size``, ``margin=28.6`` (degrees), ``scale=64.0``, ``feature_from``.

    Reads ``input[feature_from]`` and class-id labels. Returns ``{"ArcFaceLoss": scalar}``.
    """

    input_keys = ("features",)
    input_key_params = ("feature_from",)
    output_keys = ("ArcFaceLoss",)

    def __init__(self, num_classes: int, embedding_size: int, margin: float = 28.6, scale: float = 64.0,
                 feature_from: str = "features"):
        super().__init__()
        self._build_weight(num_classes, embedding_size)
        self.margin, self.margin_radians, self.scale = float(margin), math.radians(margin), float(scale)
        self.feature_from = feature_from


@register_loss
class SubCenterArcFaceLoss(_ArcFaceBase):
    """pytorch-metric-learning ``SubCenterArcFaceLoss`` (Deng et al. 2020): ArcFace with ``sub_centers``
    vectors per class.

    ``W`` is ``[embedding_size, num_classes · sub_centers]`` and column ``c · sub_centers + k`` is sub-centre
    ``k`` of class ``c``; ``cos_ic = max_k x̂_i · ŵ_{c,k}`` (the gradient reaches the arg-max sub-centre only,
    the lowest-numbered among ties), then as :class:`ArcFaceLoss` (margin in degrees). PML's outlier-removal
    helper is not offered.

    Args: ``num_classes``, ``embedding_size``, ``margin=28.6``, ``scale=64.0``, ``sub_centers=3``,
    ``feature_from``.

    Reads ``input[feature_from]`` and labels. Returns ``{"SubCenterArcFaceLoss": scalar}``.
    """

    input_keys = ("features",)
    input_key_params = ("feature_from",)
    output_keys = ("SubCenterArcFaceLoss",)

    def __init__(self, num_classes: int, embedding_size: int, margin: float = 28.6, scale: float = 64.0,
                 sub_centers: int = 3, feature_from: str = "features"):
        super().__init__()
        if not (isinstance(sub_centers, int) and sub_centers > 0):
            raise ValueError(f"SubCenterArcFaceLoss: sub_centers must be a positive int, got {sub_centers!r}")
        self.sub_centers = sub_centers
        self._build_weight(num_classes, embedding_size)
        self.margin, self.margin_radians, self.scale = float(margin), math.radians(margin), float(scale)
        self.feature_from = feature_from


@register_loss
class CosFaceLoss(_MarginSoftmax):
    """pytorch-metric-learning ``CosFaceLoss`` (Wang et al. 2018): target logit ``cos_y - margin`` (no angle),
    ``× scale``, mean cross-entropy. ``W`` as in :class:`ArcFaceLoss`.

    Args: ``num_classes``, ``embedding_size``, ``margin=0.35``, ``scale=64.0``, ``feature_from``.

    Reads ``input[feature_from]`` and labels. Returns ``{"CosFaceLoss": scalar}``.
    """

    input_keys = ("features",)
    input_key_params = ("feature_from",)
    output_keys = ("CosFaceLoss",)

    def __init__(self, num_classes: int, embedding_size: int, margin: float = 0.35, scale: float = 64.0,
                 feature_from: str = "features"):
        super().__init__()
        self._build_weight(num_classes, embedding_size)
        self.margin, self.scale = float(margin), float(scale)
        self.feature_from = feature_from

    def modify_target(self, cos_target):
        return cos_target - self.margin

    def target_and_slope(self, t):
        return t - self.margin, paddle.ones_like(t)

    def target_range(self):
        return -1.0 - self.margin, 1.0 - self.margin


@register_loss
class ProxyAnchorLoss(nn.Layer):
    """pytorch-metric-learning ``ProxyAnchorLoss`` (Kim et al. 2020), owning its proxies.

    ``cos_ic = x̂_i · p̂_c`` with parameter ``proxies`` ``[num_classes, embedding_size]`` (default init
    normal with std ``sqrt(2 / num_classes)``, torch's ``kaiming_normal_(mode="fan_out")``).
    ``pos_c = log(1 + Σ_{i: y_i = c} e^{-α(cos_ic - δ)})`` (0 for a class absent from the batch),
    ``neg_c = log(1 + Σ_{i: y_i ≠ c} e^{α(cos_ic + δ)})``,
    ``loss = Σ_c pos_c / #classes present + Σ_c neg_c / num_classes``.

    Args: ``num_classes``, ``embedding_size``, ``margin=0.1`` (δ), ``alpha=32.0``, ``feature_from``.

    Reads ``input[feature_from]`` and labels. Returns ``{"ProxyAnchorLoss": scalar}``.
    """

    input_keys = ("features",)
    input_key_params = ("feature_from",)
    output_keys = ("ProxyAnchorLoss",)

    def __init__(self, num_classes: int, embedding_size: int, margin: float = 0.1, alpha: float = 32.0,
                 feature_from: str = "features"):
        super().__init__()
        _check_sizes("ProxyAnchorLoss", num_classes, embedding_size)
        self.num_classes, self.embedding_size = num_classes, embedding_size
        self.margin, self.alpha = float(margin), float(alpha)
        self.proxies = self.create_parameter(
            [num_classes, embedding_size], default_initializer=nn.initializer.Normal(0.0, math.sqrt(2.0 / num_classes)))
        self.feature_from = feature_from

    def forward(self, input, target):
        name = type(self).__name__
        x, labels = embeddings_and_labels(name, input, target, self.feature_from)
        _check_batch(name, x, labels, self.num_classes, self.embedding_size)
        # e^{α(cos + δ)} and e^{−α(cos − δ)} both stay below e^{α(1 + |δ|)}; tiny sums are harmless (log1p)
        bound = 1.0 + abs(self.margin)
        if paddle.in_dynamic_mode() and x.shape[0] > 0 and exp_is_safe(self.proxies.dtype, self.alpha, 0.0,
                                                                        bound, x.shape[0]):
            loss = proxy_anchor(x, self.proxies, labels, self.alpha, self.margin)
            if loss is not None:
                return {name: loss}
        return {name: self.reference_loss(x, labels)}

    def reference_loss(self, x, labels):
        """The loss on the autograd tape (tracing, large ``alpha``, overflowing norms; the tests' reference)."""
        cos = paddle.matmul(l2_normalize(x, "clamp"), l2_normalize(self.proxies, "clamp"), transpose_y=True)
        pos = labels.reshape([-1, 1]) == paddle.arange(self.num_classes, dtype="int64").reshape([1, -1])
        neg = paddle.logical_not(pos)
        pos_term = masked_logsumexp(self.alpha * (self.margin - cos), pos, axis=0, add_one=True)
        neg_term = masked_logsumexp(self.alpha * (cos + self.margin), neg, axis=0, add_one=True)
        present = pos.any(axis=0).astype(cos.dtype).sum()
        return divisor_reduce(pos_term.sum(), present) + divisor_reduce(neg_term.sum(),
                                                                        paddle.full([], self.num_classes, cos.dtype))
