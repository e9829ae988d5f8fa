"""Multi-label classification losses: per-attribute BCE (MultiLabelLoss) and asymmetric focal loss (ASL)."""
from typing import Literal, Optional

import paddle
import paddle.nn as nn
import paddle.nn.functional as F

from ..errors import InputError
from ..functional.multilabel import ratio2weight
from ..inputs import check_features, check_finite, pick
from ..registry import register_loss


def _logits(input, owner):
    x = pick(input, "logits", owner)
    return check_features(x, owner, "logits", ndim=2)


def _as_tensor(target, owner):
    if target is None:
        raise InputError(f"{owner} needs a target tensor, got None")
    if isinstance(target, dict):
        raise InputError(f"{owner} expects the target as a tensor, got a dict with keys {sorted(map(str, target))}")
    if not isinstance(target, paddle.Tensor):
        target = paddle.to_tensor(target)
    return target


@register_loss
class MultiLabelLoss(nn.Layer):
    """Binary cross-entropy over every attribute, optionally label-smoothed and ratio-weighted.

    Math, with logits ``x [N, C]`` and labels ``y [N, C]``::

        y'   = (1 − ε)·y + ε/C                          (only when ``epsilon`` is set)
        cost = max(x, 0) − x·y' + log(1 + e^(−|x|))      (elementwise BCE with logits)
        cost = cost · ratio2weight([y' > 0.5], r) · [y' > −1]   (only when ``weight_ratio``)
        loss = mean_i Σ_c cost   if ``size_sum``   else   mean over all N·C elements

    Args:
        epsilon: label smoothing in (0, 1); any other value (0, 1, 1.5, ...) silently switches smoothing
            off, as in PaddleClas.
        size_sum: sum over attributes, then average over samples (instead of averaging every element).
        weight_ratio: the target is ``[N, 2, C]`` -- row 0 the labels (−1 = ignore), row 1 each
            attribute's positive ratio -- and every element is weighted by :func:`ratio2weight`;
            elements labelled −1 get weight 0.

    Reads ``input["logits"]`` (or a bare logits tensor). ``target``: float ``[N, C]``; ``[N, k, C]``
    (row 0 is used; ``[N, 2, C]`` with ratios when ``weight_ratio``); with ``epsilon`` also integer class
    ids ``[N]``/``[N, 1]``, which are one-hot encoded. No gradient reaches the target.

    Returns ``{"MultiLabelLoss": scalar}``.

    PaddleClas quirks kept: without ``weight_ratio`` a −1 label is a literal BCE target; with ``epsilon``
    and ``weight_ratio`` a −1 label is smoothed above −1 and is therefore *not* ignored.
    Divergence: integer multi-hot targets are cast to float (PaddleClas's BCE kernel rejects int64).
    """

    input_keys = ("logits",)
    output_keys = ("MultiLabelLoss",)

    def __init__(self, epsilon: Optional[float] = None, size_sum: bool = False, weight_ratio: bool = False):
        super().__init__()
        if epsilon is not None and not 0.0 < epsilon < 1.0:
            epsilon = None
        self.epsilon = epsilon
        self.size_sum = size_sum
        self.weight_ratio = weight_ratio

    def _labels_and_ratio(self, target, n, c):
        owner = type(self).__name__
        shape = list(target.shape)
        if self.weight_ratio:
            if target.ndim != 3 or shape[1] < 2 or shape[0] != n or shape[2] != c:
                raise InputError(
                    f"{owner}(weight_ratio=True) expects the target as [N, 2, C] = [{n}, 2, {c}] (row 0 labels, "
                    f"row 1 positive ratios), got shape {shape}")
            return target[:, 0, :], target[:, 1, :]
        if target.ndim == 3:
            if shape[0] != n or shape[2] != c:
                raise InputError(f"{owner}: a 3-D target must be [N, k, C] = [{n}, k, {c}] (row 0 holds the "
                                 f"labels), got shape {shape}")
            return target[:, 0, :], None
        return target, None

    def _smooth(self, y, n, c, dtype):
        owner = type(self).__name__
        if y.ndim == 1 or y.shape[-1] != c:
            # Class ids: one-hot encode first (only meaningful with label smoothing, as in PaddleClas).
            if paddle.is_floating_point(y):
                raise InputError(f"{owner}: target of shape {list(y.shape)} does not match the logits [N, C] = "
                                 f"[{n}, {c}]; class-id targets must be integers")
            if not (y.ndim == 1 or (y.ndim == 2 and y.shape[1] == 1)) or y.shape[0] != n:
                raise InputError(f"{owner}: class-id target must be [N] or [N, 1] with N = {n}, got {list(y.shape)}")
            y = F.one_hot(y.reshape([-1]), c)
        return (1.0 - self.epsilon) * y.astype(dtype) + self.epsilon / c

    def forward(self, x, target):
        owner = type(self).__name__
        x = _logits(x, owner)
        n, c = x.shape
        target = _as_tensor(target, owner).detach()
        y, ratio = self._labels_and_ratio(target, n, c)
        if self.epsilon is not None:
            y = self._smooth(y, n, c, x.dtype)
        elif list(y.shape) != [n, c]:
            raise InputError(f"{owner}: target labels must have the logits' shape [N, C] = [{n}, {c}], got "
                             f"{list(y.shape)}; pass multi-hot labels, or set epsilon to use class ids")
        y = y.astype(x.dtype)
        check_finite(y, owner, "target")
        cost = F.binary_cross_entropy_with_logits(x, y, reduction="none")
        if ratio is not None:
            ratio = ratio.astype(x.dtype)
            check_finite(ratio, owner, "target ratio row")
            weight = ratio2weight((y > 0.5).astype(x.dtype), ratio) * (y > -1).astype(x.dtype)
            cost = cost * weight
        loss = cost.sum(axis=1).mean() if self.size_sum else cost.mean()
        return {"MultiLabelLoss": loss}


@register_loss
class MultiLabelAsymmetricLoss(nn.Layer):
    """Asymmetric loss (ASL) for multi-label classification.

    Math, with ``p = sigmoid(x)`` and target ``t`` (cast to ``p``'s dtype)::

        pt   = min(1 − p + clip, 1)·(1 − t) + p·t      if clip > 0
             = (1 − p)·(1 − t) + p·t                   otherwise
        w    = (1 − pt)^(γ⁺·t + γ⁻·(1 − t))            (a constant when disable_focal_loss_grad)
        loss = reduction( −log(max(pt, epsilon)) · w )

    Args:
        gamma_pos: focusing exponent γ⁺ for positives.
        gamma_neg: focusing exponent γ⁻ for negatives.
        clip: probability margin shifted onto negatives (0 or None disables it).
        epsilon: floor of ``pt`` inside the log.
        disable_focal_loss_grad: treat ``w`` as a constant (no gradient through the focal weight).
        reduction: ``"mean"``, ``"sum"`` or ``"none"`` (elementwise ``[N, C]``).

    Reads ``input["logits"]`` (or a bare tensor); ``target`` ``[N, C]`` (float or integer multi-hot; a
    float target that requires gradients receives one through ``pt``, as in PaddleClas).
    Returns ``{"MultiLabelAsymmetricLoss": loss}``.

    Divergence: PaddleClas switches autograd off *globally* (``paddle.set_grad_enabled(False)`` as a plain
    call) around the focal weight; here only the focal weight is detached, so no other computation is
    affected -- the values and gradients are the same.
    """

    input_keys = ("logits",)
    output_keys = ("MultiLabelAsymmetricLoss",)

    def __init__(self, gamma_pos: float = 1, gamma_neg: float = 4, clip: Optional[float] = 0.05,
                 epsilon: float = 1e-8, disable_focal_loss_grad: bool = True,
                 reduction: Literal["mean", "sum", "none"] = "sum"):
        super().__init__()
        if reduction not in ("mean", "sum", "none"):
            raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
        self.gamma_pos = gamma_pos
        self.gamma_neg = gamma_neg
        self.clip = clip
        self.epsilon = epsilon
        self.disable_focal_loss_grad = disable_focal_loss_grad
        self.reduction = reduction

    def forward(self, x, target):
        owner = type(self).__name__
        x = _logits(x, owner)
        target = _as_tensor(target, owner)
        if list(target.shape) != list(x.shape):
            raise InputError(f"{owner}: target must have the logits' shape {list(x.shape)} (multi-hot [N, C]), "
                             f"got {list(target.shape)}")
        p = F.sigmoid(x)
        t = target.astype(p.dtype)
        check_finite(t, owner, "target")
        if self.clip and self.clip > 0:
            p_neg = paddle.clip(1.0 - p + self.clip, max=1.0)
        else:
            p_neg = 1.0 - p
        pt = p_neg * (1.0 - t) + p * t
        exponent = self.gamma_pos * t + self.gamma_neg * (1.0 - t)
        if self.disable_focal_loss_grad:
            # Scoped stop: only the focal weight is a constant (PaddleClas turns autograd off globally).
            weight = paddle.pow(1.0 - pt.detach(), exponent.detach())
        else:
            weight = paddle.pow(1.0 - pt, exponent)
        loss = -paddle.log(paddle.clip(pt, min=self.epsilon)) * weight
        if self.reduction == "mean":
            loss = loss.mean()
        elif self.reduction == "sum":
            loss = loss.sum()
        return {"MultiLabelAsymmetricLoss": loss}
