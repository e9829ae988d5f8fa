"""Margin heads (PaddleClas ``ppcls/arch/gears``): ArcMargin, CosMargin, CircleMargin, AdaMargin.

Each turns embeddings ``x [N, D]`` into class logits for CELoss. All share one step, :func:`class_cosine`:
rows of ``x`` and columns of the ``[D, C]`` weight are divided by their plain L2 norm (no epsilon, as in
PaddleClas) and multiplied, giving ``cos [N, C]``. They are called ``head(features, label=None)`` as
PaddleClas's RecModel does, with int labels ``[N]`` or ``[N, 1]``.
"""
import math

import paddle
import paddle.nn as nn
import paddle.nn.functional as F

from ..errors import InputError
from ..functional.normalize import l2_normalize
from ..inputs import check_features, check_labels
from ..losses.ce import check_class_ids
from ..registry import register_head


def class_cosine(x, weight):
    """``cos_ij = (x_i/||x_i||) · (w_j/||w_j||)`` for ``x [N, D]`` and a weight ``[D, C]`` (columns are classes)."""
    if weight.dtype != x.dtype:
        weight = weight.astype(x.dtype)
    return paddle.matmul(l2_normalize(x, "plain", axis=1), l2_normalize(weight, "plain", axis=0))


def _check_embeddings(head, x):
    name = type(head).__name__
    x = check_features(x, name, what="embeddings")
    if x.shape[1] != head.embedding_size:
        raise InputError(f"{name}: embeddings have size {x.shape[1]} but the head was built with "
                         f"embedding_size={head.embedding_size}; expected shape [N, {head.embedding_size}]")
    return x


def _target_onehot(head, label, n, dtype):
    """Validated int labels (``[N]`` or ``[N, 1]``) as a ``[N, C]`` one-hot of ``dtype`` (no gradient)."""
    name = type(head).__name__
    ids = check_labels(label, n, name)
    check_class_ids(ids, head.class_num, name)
    return F.one_hot(ids, head.class_num).astype(dtype)


def _check_sizes(name, embedding_size, class_num):
    if embedding_size < 1 or class_num < 1:
        raise ValueError(f"{name}: embedding_size and class_num must be positive, got {embedding_size} and "
                         f"{class_num}")


class _CosineHead(nn.Layer):
    """Holds the ``weight [embedding_size, class_num]`` (XavierNormal) shared by ArcMargin/CosMargin/CircleMargin."""

    def __init__(self, embedding_size, class_num):
        super().__init__()
        _check_sizes(type(self).__name__, embedding_size, class_num)
        self.embedding_size = embedding_size
        self.class_num = class_num
        self.weight = self.create_parameter(shape=[embedding_size, class_num], is_bias=False,
                                            default_initializer=nn.initializer.XavierNormal())

    def _cosine(self, input):
        x = _check_embeddings(self, input)
        return x, class_cosine(x, self.weight)

    def forward(self, input, label=None):
        x, cos = self._cosine(input)
        if not self.training or label is None:
            return cos
        return self._margin_logits(cos, _target_onehot(self, label, x.shape[0], cos.dtype))

    def _margin_logits(self, cos, onehot):
        """Training logits from ``cos [N, C]`` and the label one-hot (each margin head's own math)."""
        raise NotImplementedError


@register_head
class ArcMargin(_CosineHead):
    """Additive angular margin (ArcFace) head, PaddleClas ``ArcMargin``.

    Math, with ``cos`` from :func:`class_cosine`: in training with a label,
    ``sin = sqrt(1 − cos² + 1e-6)``, ``φ = cos·cos(m) − sin·sin(m)``; ``φ' = φ`` where ``cos > 0``
    (``easy_margin``) or ``cos > −cos(m)``, else ``cos`` (easy) or ``cos − m·sin(m)``;
    ``logits = scale·(onehot·φ' + (1 − onehot)·cos)``. In eval mode or without a label the output is the
    **unscaled** ``cos`` (PaddleClas behaviour, kept: retrieval uses the cosine).

    Args:
        embedding_size: D. class_num: C. margin: angular margin m (radians). scale: logit scale s.
        easy_margin: apply the margin only where ``cos > 0``.

    Parameter ``weight [embedding_size, class_num]`` (XavierNormal), as in PaddleClas checkpoints.
    Reads ``input [N, D]`` and ``label`` (int ``[N]``/``[N, 1]``); returns logits ``[N, C]``.
    """

    input_keys = ("features", "label")
    output_keys = ("logits",)

    def __init__(self, embedding_size: int, class_num: int, margin: float = 0.5, scale: float = 80.0,
                 easy_margin: bool = False):
        super().__init__(embedding_size, class_num)
        self.margin = margin
        self.scale = scale
        self.easy_margin = easy_margin

    def _margin_logits(self, cos, onehot):
        sin = paddle.sqrt(1.0 - paddle.square(cos) + 1e-6)
        phi = cos * math.cos(self.margin) - sin * math.sin(self.margin)
        if self.easy_margin:
            phi = paddle.where(cos > 0, phi, cos)
        else:
            # Beyond θ = π − m the margin would make the target logit grow again; fall back to CosFace-like.
            phi = paddle.where(cos > -math.cos(self.margin), phi, cos - self.margin * math.sin(self.margin))
        return self.scale * (onehot * phi + (1.0 - onehot) * cos)


@register_head
class CosMargin(_CosineHead):
    """Additive cosine margin (CosFace) head, PaddleClas ``CosMargin``.

    Math: training ``logits = scale·(onehot·(cos − m) + (1 − onehot)·cos)``; eval or ``label=None``: ``cos``
    (unscaled).

    Args: embedding_size, class_num, margin (m), scale (s). Parameter ``weight [embedding_size, class_num]``.
    Reads ``input [N, D]`` and ``label`` (int ``[N]``/``[N, 1]``); returns logits ``[N, C]``.

    Divergence: PaddleClas raises AttributeError for ``label=None`` even in eval mode; here it returns the
    eval-style ``cos``, like ArcMargin.
    """

    input_keys = ("features", "label")
    output_keys = ("logits",)

    def __init__(self, embedding_size: int, class_num: int, margin: float = 0.35, scale: float = 64.0):
        super().__init__(embedding_size, class_num)
        self.margin = margin
        self.scale = scale

    def _margin_logits(self, cos, onehot):
        return self.scale * (onehot * (cos - self.margin) + (1.0 - onehot) * cos)


@register_head
class CircleMargin(_CosineHead):
    """Circle-loss margin head, PaddleClas ``CircleMargin``.

    Math, with ``ĉ = cos`` detached: ``α_p = max(1 + m − ĉ, 0)``, ``α_n = max(ĉ + m, 0)``,
    ``logits = scale·(onehot·α_p·(cos − (1 − m)) + (1 − onehot)·α_n·(cos − m))``; the α are constants for the
    gradient. Eval mode or ``label=None``: ``cos`` (unscaled).

    Args: embedding_size, class_num, margin (m, required), scale (required). Parameter ``weight``.
    Reads ``input [N, D]`` and ``label`` (int ``[N]``/``[N, 1]``); returns logits ``[N, C]``.
    """

    input_keys = ("features", "label")
    output_keys = ("logits",)

    def __init__(self, embedding_size: int, class_num: int, margin: float, scale: float):
        super().__init__(embedding_size, class_num)
        self.margin = margin
        self.scale = scale

    def _margin_logits(self, cos, onehot):
        fixed = cos.detach()
        alpha_p = paddle.clip(1.0 + self.margin - fixed, min=0.0)
        alpha_n = paddle.clip(fixed + self.margin, min=0.0)
        positive = alpha_p * (cos - (1.0 - self.margin))
        negative = alpha_n * (cos - self.margin)
        return self.scale * (positive * onehot + negative * (1.0 - onehot))


def _unit_columns_uniform(embedding_size, class_num):
    """Uniform(−1, 1) draws (Paddle's global RNG) with each column scaled to unit L2 norm (tiny columns kept)."""
    kernel = paddle.uniform([embedding_size, class_num], min=-1.0, max=1.0)
    norm = paddle.linalg.norm(kernel, p=2, axis=0, keepdim=True)
    return kernel / paddle.where(norm > 1e-5, norm, paddle.ones_like(norm))


@register_head
class AdaMargin(nn.Layer):
    """Quality-adaptive margin (AdaFace) head, PaddleClas ``AdaMargin``.

    Math: ``n_i = ||x_i||``, ``cos = clip(class_cosine(x, kernel), −1 + ε, 1 − ε)`` with ε = 1e-3,
    ``sn = clip(n, 0.001, 100)`` (detached). The EMA statistics are updated first (no gradient):
    ``batch_mean ← α·mean(sn) + (1 − α)·batch_mean``, ``batch_std ← α·std(sn) + (1 − α)·batch_std``
    (unbiased std, α = ``t_alpha``). Then ``ms = clip(h·(sn − batch_mean)/(batch_std + ε), −1, 1)``,
    ``θ = acos(cos)``, ``θ_m = clip(θ − m·ms·onehot, ε, π − ε)``,
    ``logits = s·(cos(θ_m) − onehot·(m + m·ms))``.

    As in PaddleClas there is no train/eval switch: with a label the margin is applied and the EMA updated
    in eval mode too.

    Args: embedding_size, class_num, m (margin), h (margin-scaler width), s (scale), t_alpha (EMA factor).
    Parameter ``kernel [embedding_size, class_num]`` (uniform(−1, 1), unit columns); persistable buffers
    ``t`` (unused, kept for checkpoints), ``batch_mean`` (20), ``batch_std`` (100), all shape ``[1]``.
    Reads ``embbedings [N, D]`` and ``label`` (int ``[N]``/``[N, 1]``); returns logits ``[N, C]``.

    Divergences (docs/compatibility.md): a one-sample batch leaves ``batch_std`` unchanged (PaddleClas's std
    of one sample is NaN and poisons the buffers forever); ``label=None`` returns the clipped ``cos``
    without touching the statistics (PaddleClas crashes).
    """

    input_keys = ("features", "label")
    output_keys = ("logits",)
    eps = 1e-3

    def __init__(self, embedding_size: int = 512, class_num: int = 70722, m: float = 0.4, h: float = 0.333,
                 s: float = 64.0, t_alpha: float = 1.0):
        super().__init__()
        _check_sizes("AdaMargin", embedding_size, class_num)
        self.embedding_size = embedding_size
        self.class_num = class_num
        self.m, self.h, self.s, self.t_alpha = m, h, s, t_alpha
        self.kernel = self.create_parameter(
            [embedding_size, class_num],
            default_initializer=nn.initializer.Assign(_unit_columns_uniform(embedding_size, class_num)))
        self.register_buffer("t", paddle.zeros([1]), persistable=True)
        self.register_buffer("batch_mean", paddle.full([1], 20.0), persistable=True)
        self.register_buffer("batch_std", paddle.full([1], 100.0), persistable=True)

    def _update_statistics(self, safe_norms):
        with paddle.no_grad():
            dtype = safe_norms.dtype
            mean = safe_norms.mean()
            size = safe_norms.shape[0]
            if size is not None and size >= 0:
                n = paddle.full([], size, dtype)
            else:  # batch size unknown while tracing
                n = paddle.shape(safe_norms)[0].astype(dtype)
            # Unbiased std. Of a single sample it is undefined (0/0): keep the running value instead of
            # poisoning the buffer with NaN for the rest of training.
            var = paddle.square(safe_norms - mean).sum() / paddle.clip(n - 1, min=1.0)
            std = paddle.where(n > 1, paddle.sqrt(var), self.batch_std.reshape([]).astype(dtype))
            a = self.t_alpha
            paddle.assign((mean * a + (1 - a) * self.batch_mean).astype(self.batch_mean.dtype),
                          output=self.batch_mean)
            paddle.assign((std * a + (1 - a) * self.batch_std).astype(self.batch_std.dtype),
                          output=self.batch_std)

    def forward(self, embbedings, label=None):
        x = _check_embeddings(self, embbedings)
        cos = paddle.clip(class_cosine(x, self.kernel), -1 + self.eps, 1 - self.eps)
        if label is None:
            return cos
        onehot = _target_onehot(self, label, x.shape[0], cos.dtype)
        norms = paddle.linalg.norm(x, p=2, axis=1, keepdim=True)
        safe_norms = paddle.clip(norms, min=0.001, max=100).detach()
        self._update_statistics(safe_norms)
        mean = self.batch_mean.astype(x.dtype)
        std = self.batch_std.astype(x.dtype)
        scaler = paddle.clip(self.h * (safe_norms - mean) / (std + self.eps), -1, 1)
        theta = paddle.acos(cos)
        theta_m = paddle.clip(theta + onehot * (-self.m * scaler), min=self.eps, max=math.pi - self.eps)
        return self.s * (paddle.cos(theta_m) - onehot * (self.m + self.m * scaler))
