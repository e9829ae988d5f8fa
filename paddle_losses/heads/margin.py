"""Margin heads (PaddleClas ``ppcls/arch/gears``): ArcMargin, CosMargin, CircleMargin, AdaMargin.

Each turns embeddings ``x [N, D]`` into class logits for CELoss. All share one step, :func:`class_cosine`:
rows of ``x`` and columns of the ``[D, C]`` weight are divided by their plain L2 norm (no epsilon, as in
PaddleClas) and multiplied, giving ``cos [N, C]``. They are called ``head(features, label=None)`` as
PaddleClas's RecModel does, with int labels ``[N]`` or ``[N, 1]``.

In training a margin changes only the N label entries ``cos[i, y_i]``. PaddleClas writes the logits as
``onehot·f(cos) + (1 − onehot)·g(cos)``, which keeps several ``[N, C]`` intermediates for the backward pass
(9–13 times one float32 ``[N, C]`` matrix at the peak of CE forward + backward, N = 4096, C = 1025). Here
:class:`_MarginLogits` builds them as one element-wise map of ``cos`` (the head's off-label rule) with the
label entries overwritten by the margin's values, and differentiates by hand: off the labels with the
rule's derivative, at the labels with the margin's derivative w.r.t. ``cos[i, y_i]``, both computed in the
forward from ``[N, 1]`` tensors. Values and gradients are PaddleClas's (bit for bit in the forward except
AdaMargin's off-label entries, see there).
"""
import math

import paddle
import paddle.nn as nn
from paddle.autograd import PyLayer

from ..errors import InputError
from ..functional.class_cosine import column_normalized_matmul
from ..functional.inplace import inplace
from ..functional.normalize import l2_normalize
from ..inputs import check_features, check_labels
from ..losses.ce import check_class_ids
from ..registry import register_head
from . import class_parallel as cp


def class_cosine(x, weight):
    """``cos_ij = (x_i/||x_i||) · (w_j/||w_j||)`` for ``x [N, D]`` and a weight ``[D, C]`` (columns are classes)."""
    if weight.dtype != x.dtype:
        weight = weight.astype(x.dtype)
    # The weight's columns are normalised inside the product: no [D, C] temporary (functional.class_cosine).
    return column_normalized_matmul(l2_normalize(x, "plain", axis=1), weight)


def _check_embeddings(head, x):
    name = type(head).__name__
    x = check_features(x, name, what="embeddings")
    if x.shape[1] != head.embedding_size:
        raise InputError(f"{name}: embeddings have size {x.shape[1]} but the head was built with "
                         f"embedding_size={head.embedding_size}; expected shape [N, {head.embedding_size}]")
    return x


def _target_ids(head, label, n):
    """Validated int labels (``[N]`` or ``[N, 1]``) as int64 class ids ``[N, 1]``."""
    name = type(head).__name__
    ids = check_labels(label, n, name)
    check_class_ids(ids, head.class_num, name)
    return ids.unsqueeze(1)


def _label_entries(cos, ids):
    """``cos[i, y_i]`` as ``[N, 1]``, detached: the margins' derivatives are written by hand."""
    return paddle.take_along_axis(cos.detach(), ids, axis=1)


class _MarginLogits(PyLayer):
    """Training logits ``rule._off_label(cos)`` with the label entries ``[i, y_i]`` replaced by ``value``.

    ``value`` and ``slope`` (``[N, 1]``, no gradient) are the label entries' logits and their derivatives
    w.r.t. ``cos[i, y_i]``. ``rule`` (the head) gives ``_off_label(cos) -> (logits, saved)``, a fresh
    ``[N, C]`` tensor and the tensors its derivative needs, and ``_off_label_grad(grad, *saved)``, the
    gradient w.r.t. ``cos`` as a fresh (or saved, reused) ``[N, C]`` tensor. So between forward and
    backward nothing of size ``[N, C]`` is kept but ``saved``. Not differentiable twice.
    """

    @staticmethod
    def forward(ctx, cos, ids, value, slope, rule):
        logits, saved = rule._off_label(cos)
        ctx.off_label_grad = rule._off_label_grad
        ctx.save_for_backward(ids, slope, *saved)
        return inplace(logits, "put_along_axis", ids, value, 1)

    @staticmethod
    def backward(ctx, grad):
        ids, slope, *saved = ctx.saved_tensor()
        at_label = paddle.take_along_axis(grad, ids, axis=1) * slope
        grad_cos = ctx.off_label_grad(grad, *saved)
        return inplace(grad_cos, "put_along_axis", ids, at_label, 1), None, None, None


def _check_sizes(name, embedding_size, class_num):
    if embedding_size < 1 or class_num < 1:
        raise ValueError(f"{name}: embedding_size and class_num must be positive, got {embedding_size} and "
                         f"{class_num}")


def _margin_logits(head, cos, ids, at_label):
    """The head's logits: ``cos`` with the label entries replaced by ``at_label(cos[i, y_i])``'s value.

    Class-parallel heads see the global batch but only their classes: rows whose class another rank holds
    point at a spare column (:func:`~paddle_losses.heads.class_parallel.with_spare_column`), dropped after.
    """
    if not head.class_parallel:
        value, slope = at_label(_label_entries(cos, ids))
        return _MarginLogits.apply(cos, ids, value, slope, head)
    wide, local = cp.with_spare_column(cos, ids, head)
    value, slope = at_label(_label_entries(wide, local))
    return cp.mark(head, _MarginLogits.apply(wide, local, value, slope, head)[:, :-1], ids)


class _CosineHead(nn.Layer):
    """Holds the ``weight [embedding_size, class_num]`` (XavierNormal) shared by ArcMargin/CosMargin/CircleMargin."""

    def __init__(self, embedding_size, class_num, class_parallel=False):
        super().__init__()
        _check_sizes(type(self).__name__, embedding_size, class_num)
        self.embedding_size = embedding_size
        self.class_num = class_num
        width = cp.setup(self, class_num, class_parallel)
        init = (cp.xavier_normal_shard(embedding_size, class_num, width) if self.class_parallel
                else nn.initializer.XavierNormal())
        self.weight = self.create_parameter(shape=[embedding_size, width], is_bias=False,
                                            default_initializer=init)
        if self.class_parallel:
            cp.keep_out_of_data_parallel(self.weight)

    def forward(self, input, label=None):
        x = _check_embeddings(self, input)
        if self.class_parallel:
            x, label = cp.gather_inputs(self, x, label)
        cos = class_cosine(x, self.weight)
        if not self.training or label is None:
            return cp.mark(self, cos)
        return _margin_logits(self, cos, _target_ids(self, label, x.shape[0]), self._at_label)

    def _at_label(self, target):
        """Logits of the label entries and their derivatives, from ``target = cos[i, y_i]`` ``[N, 1]``."""
        raise NotImplementedError

    def _off_label(self, cos):
        # scale·cos (ArcMargin, CosMargin): its derivative is the constant scale, nothing to keep.
        return cos * self.scale, ()

    def _off_label_grad(self, grad):
        return grad * self.scale


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
        class_parallel: hold only this rank's slice of the classes and compute the global batch's logits for it
            (:mod:`paddle_losses.heads.class_parallel`).

    Parameter ``weight [embedding_size, class_num]`` (XavierNormal), as in PaddleClas checkpoints.
    Reads ``input [N, D]`` and ``label`` (int ``[N]``/``[N, 1]``); returns logits ``[N, C]``.
    """

    input_keys = ("features", "label")
    output_keys = ("logits",)

    def __init__(self, embedding_size: int, class_num: int, margin: float = 0.5, scale: float = 80.0,
                 easy_margin: bool = False, class_parallel: bool = False):
        super().__init__(embedding_size, class_num, class_parallel)
        self.margin = margin
        self.scale = scale
        self.easy_margin = easy_margin

    def _at_label(self, target):
        cos_m, sin_m = math.cos(self.margin), math.sin(self.margin)
        sin = paddle.sqrt(1.0 - paddle.square(target) + 1e-6)
        phi = target * cos_m - sin * sin_m
        dphi = cos_m + target * sin_m / sin  # d sin / d target = −target / sin
        if self.easy_margin:
            keep, fallback = target > 0, target
        else:
            # Beyond θ = π − m the margin would make the target logit grow again; fall back to CosFace-like.
            keep, fallback = target > -cos_m, target - self.margin * sin_m
        # Both fallbacks have slope 1.
        return (self.scale * paddle.where(keep, phi, fallback),
                self.scale * paddle.where(keep, dphi, paddle.ones_like(dphi)))


@register_head
class CosMargin(_CosineHead):
    """Additive cosine margin (CosFace) head, PaddleClas ``CosMargin``.

    Math: training ``logits = scale·(onehot·(cos − m) + (1 − onehot)·cos)``; eval or ``label=None``: ``cos``
    (unscaled).

    Args: embedding_size, class_num, margin (m), scale (s), class_parallel (as ArcMargin). Parameter
    ``weight [embedding_size, class_num]``.
    Reads ``input [N, D]`` and ``label`` (int ``[N]``/``[N, 1]``); returns logits ``[N, C]``.

    Divergence: PaddleClas raises AttributeError for ``label=None`` even in eval mode; here it returns the
    eval-style ``cos``, like ArcMargin.
    """

    input_keys = ("features", "label")
    output_keys = ("logits",)

    def __init__(self, embedding_size: int, class_num: int, margin: float = 0.35, scale: float = 64.0,
                 class_parallel: bool = False):
        super().__init__(embedding_size, class_num, class_parallel)
        self.margin = margin
        self.scale = scale

    def _at_label(self, target):
        return self.scale * (target - self.margin), paddle.full_like(target, self.scale)


@register_head
class CircleMargin(_CosineHead):
    """Circle-loss margin head, PaddleClas ``CircleMargin``.

    Math, with ``ĉ = cos`` detached: ``α_p = max(1 + m − ĉ, 0)``, ``α_n = max(ĉ + m, 0)``,
    ``logits = scale·(onehot·α_p·(cos − (1 − m)) + (1 − onehot)·α_n·(cos − m))``; the α are constants for the
    gradient. Eval mode or ``label=None``: ``cos`` (unscaled).

    Args: embedding_size, class_num, margin (m, required), scale (required), class_parallel (as ArcMargin).
    Parameter ``weight``.
    Reads ``input [N, D]`` and ``label`` (int ``[N]``/``[N, 1]``); returns logits ``[N, C]``.
    """

    input_keys = ("features", "label")
    output_keys = ("logits",)

    def __init__(self, embedding_size: int, class_num: int, margin: float, scale: float,
                 class_parallel: bool = False):
        super().__init__(embedding_size, class_num, class_parallel)
        self.margin = margin
        self.scale = scale

    def _at_label(self, target):
        alpha_p = paddle.clip(1.0 + self.margin - target, min=0.0)
        return self.scale * (alpha_p * (target - (1.0 - self.margin))), self.scale * alpha_p

    def _off_label(self, cos):
        # α_n·(cos − m)·scale; with α_n constant the derivative is scale·α_n, so α_n is all that is kept.
        alpha_n = inplace(cos + self.margin, "clip", 0.0, None)
        return inplace(inplace(cos - self.margin, "multiply", alpha_n), "scale", self.scale), (alpha_n,)

    def _off_label_grad(self, grad, alpha_n):
        # α_n's last use: its storage takes the gradient.
        return inplace(inplace(alpha_n, "multiply", grad), "scale", self.scale)


def _unit_columns_uniform(embedding_size, class_num, shard=False):
    """Uniform(−1, 1) draws (Paddle's global RNG; a class-parallel shard's own generator) with each column
    scaled to unit L2 norm (tiny columns kept)."""
    if shard:
        kernel = paddle.to_tensor(cp.shard_rng().uniform(-1.0, 1.0, (embedding_size, class_num)).astype("float32"))
    else:
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
    ``logits = s·(cos(θ_m) − onehot·(m + m·ms))``. Off the labels that is ``s·cos(acos(cos))``, computed here
    as ``s·cos`` (the θ clip cannot act there): equal to rounding (within 1.8e-7·s in float32), not bit for bit.

    As in PaddleClas there is no train/eval switch: with a label the margin is applied and the EMA updated
    in eval mode too.

    Args: embedding_size, class_num, m (margin), h (margin-scaler width), s (scale), t_alpha (EMA factor),
    class_parallel (as ArcMargin; the statistics are those of the gathered global batch).
    Parameter ``kernel [embedding_size, class_num]`` (uniform(−1, 1), unit columns); persistable buffers
    ``t`` (unused, kept for checkpoints), ``batch_mean`` (20), ``batch_std`` (100), all shape ``[1]``.
    Reads ``embeddings [N, D]`` and ``label`` (int ``[N]``/``[N, 1]``); returns logits ``[N, C]``.

    Divergences (docs/compatibility.md): a one-sample batch leaves ``batch_std`` unchanged (PaddleClas's std
    of one sample is NaN and poisons the buffers forever); ``label=None`` returns the clipped ``cos``
    without touching the statistics (PaddleClas crashes).
    """

    input_keys = ("features", "label")
    output_keys = ("logits",)
    eps = 1e-3

    def __init__(self, embedding_size: int = 512, class_num: int = 70722, m: float = 0.4, h: float = 0.333,
                 s: float = 64.0, t_alpha: float = 1.0, class_parallel: bool = False):
        super().__init__()
        _check_sizes("AdaMargin", embedding_size, class_num)
        self.embedding_size = embedding_size
        self.class_num = class_num
        self.m, self.h, self.s, self.t_alpha = m, h, s, t_alpha
        width = cp.setup(self, class_num, class_parallel)
        self.kernel = self.create_parameter(
            [embedding_size, width],
            default_initializer=nn.initializer.Assign(_unit_columns_uniform(embedding_size, width,
                                                                            self.class_parallel)))
        if self.class_parallel:
            cp.keep_out_of_data_parallel(self.kernel)
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
            std = paddle.where(n > 1, paddle.sqrt(var), self.batch_std.astype(dtype))
            a = self.t_alpha
            paddle.assign((mean * a + (1 - a) * self.batch_mean).astype(self.batch_mean.dtype),
                          output=self.batch_mean)
            paddle.assign((std * a + (1 - a) * self.batch_std).astype(self.batch_std.dtype),
                          output=self.batch_std)

    def forward(self, embeddings, label=None):
        x = _check_embeddings(self, embeddings)
        if self.class_parallel:
            x, label = cp.gather_inputs(self, x, label)
        cos = class_cosine(x, self.kernel)
        if label is None:
            return cp.mark(self, paddle.clip(cos, -1 + self.eps, 1 - self.eps))
        ids = _target_ids(self, label, x.shape[0])
        norms = paddle.linalg.norm(x, p=2, axis=1, keepdim=True)
        safe_norms = paddle.clip(norms, min=0.001, max=100).detach()
        self._update_statistics(safe_norms)
        mean = self.batch_mean.astype(x.dtype)
        std = self.batch_std.astype(x.dtype)
        scaler = paddle.clip(self.h * (safe_norms - mean) / (std + self.eps), -1, 1)
        return _margin_logits(self, cos, ids, lambda target: self._at_label(target, scaler))

    def _at_label(self, target, scaler):
        """``s·(cos(θ_m) − m − m·ms)`` and its derivative w.r.t. the unclipped ``target`` (``[N, 1]`` each)."""
        eps = self.eps
        c = paddle.clip(target, -1 + eps, 1 - eps)
        theta = paddle.acos(c)
        shifted = theta + (-self.m * scaler)
        theta_m = paddle.clip(shifted, min=eps, max=math.pi - eps)
        value = self.s * (paddle.cos(theta_m) - (self.m + self.m * scaler))
        # d/dc cos(acos(c) − m·ms) = sin(θ_m) / sqrt(1 − c²); each clip passes the gradient inside its bounds
        # and at them (Paddle's rule), and blocks it outside.
        passes = paddle.logical_and(_within(target, -1 + eps, 1 - eps), _within(shifted, eps, math.pi - eps))
        slope = self.s * paddle.sin(theta_m) / paddle.sqrt(1.0 - paddle.square(c))
        return value, slope * passes.astype(slope.dtype)

    def _off_label(self, cos):
        # s·c for c = clip(cos, −1 + ε, 1 − ε). PaddleClas writes s·cos(acos(c)) (θ never reaches the θ clip
        # off the label: acos(±(1 − ε)) lies 0.045 inside [ε, π − ε]); cos(acos(c)) rounds to within 1.8e-7
        # of c in float32, so the two agree to rounding. The gradient is s where the clip passes (inside its
        # bounds and at them), else 0: only the bool mask of the blocked entries, those the clip changed, is kept.
        c = paddle.clip(cos, -1 + self.eps, 1 - self.eps)
        blocked = paddle.not_equal(c, cos)
        return inplace(c, "scale", self.s), (blocked,)

    def _off_label_grad(self, grad, blocked):
        return inplace(grad * self.s, "masked_fill", blocked, 0.0)


def _within(x, lo, hi):
    """Bool ``lo <= x <= hi``, the bounds rounded to ``x``'s dtype as ``paddle.clip`` rounds them: where a clip
    with these bounds passes the gradient."""
    lo, hi = paddle.full([], lo, x.dtype), paddle.full([], hi, x.dtype)
    return paddle.logical_and(x >= lo, x <= hi)
