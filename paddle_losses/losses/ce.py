"""Cross-entropy losses of PaddleClas: CELoss, MixCELoss (deprecated stub) and GoogLeNetLoss.

Other losses (CELossForMetaBIN, DistillationCELoss, ...) build on :class:`CELoss`; import it from here.
"""
from typing import Literal, Optional

import paddle
import paddle.nn as nn
import paddle.nn.functional as F

from ..distributed import class_shard, sharded_ce_rows
from ..errors import InputError
from ..functional.softmax_ce import smoothed_cross_entropy, soft_cross_entropy
from ..inputs import check_features, check_finite, check_labels, pick
from ..registry import register_loss

_IGNORE_INDEX = -100  # Paddle's default ignore_index for hard-label cross entropy


def check_class_ids(label, num_classes, owner, allow_ignore=False):
    """Raise InputError for class ids outside ``[0, C)`` (``-100`` allowed when ``allow_ignore``).

    Dynamic mode only (one host sync): under to_static the kernel's own checks apply.
    """
    if not paddle.in_dynamic_mode():
        return
    bad = paddle.logical_or(label < 0, label >= num_classes)
    if allow_ignore:
        bad = paddle.logical_and(bad, label != _IGNORE_INDEX)
    if bool(bad.any()):
        allowed = f"0..{num_classes - 1}" + (f" or {_IGNORE_INDEX} (ignored)" if allow_ignore else "")
        raise InputError(f"{owner}: label holds class ids outside {allowed}: "
                         f"{sorted(set(label.numpy().tolist()))[:10]} (logits have {num_classes} classes)")


def _is_soft_label(label, n, num_classes):
    """A soft label is a float ``[N, C]`` tensor; integer labels are always class ids.

    PaddleClas decides by ``label.shape[-1] == C`` alone, so a 1-D id vector whose length happens to equal C
    is taken for a soft label and crashes in ``softmax``; looking at the dtype avoids that.
    """
    return (isinstance(label, paddle.Tensor) and paddle.is_floating_point(label)
            and label.ndim == 2 and list(label.shape) == [n, num_classes])


def soft_cross_entropy_rows(logits, target):
    """``ℓ_i = −Σ_c target_ic · log_softmax(logits)_ic``, shape ``[N]`` (gradient reaches both inputs).

    Linear in C (:mod:`paddle_losses.functional.softmax_ce`; Paddle's CPU ``F.log_softmax`` is quadratic).
    """
    return soft_cross_entropy(logits, target, axis=-1)


@register_loss
class CELoss(nn.Layer):
    """Softmax cross entropy with optional label smoothing (PaddleClas ``CELoss``).

    Math, with ``z = log_softmax(x)`` over the ``C`` classes:

    * ``epsilon`` set (label smoothing): ``t = (1 − ε)·y + ε/C`` where ``y`` is the one-hot of an int label
      or a float ``[N, C]`` soft label *as given*; ``ℓ_i = −Σ_c t_ic·z_ic``; ``none`` gives ``[N]``.
    * ``epsilon`` None, float ``[N, C]`` label: the label is **softmaxed again** (PaddleClas quirk, kept:
      mixup targets such as ``(0.7, 0.3, 0, ...)`` become flatter), ``q = softmax(label)`` (no gradient to
      the label), ``ℓ_i = −Σ_c q_ic·z_ic``; ``none`` gives ``[N, 1]``.
    * ``epsilon`` None, int label: ``ℓ_i = −z_{i, y_i}``; id ``-100`` contributes 0 and ``mean`` still
      divides by the full N (Paddle's default ignore_index rule, kept); ``none`` has the label's shape
      (``[N]`` or ``[N, 1]``).

    Args:
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.
        epsilon: label-smoothing factor; a value outside the open interval (0, 1) (0, 1, 1.5, negative)
            is replaced by None, turning smoothing off, as in PaddleClas.

    Reads ``input["logits"]`` (or a bare ``[N, C]`` Tensor) and the label (int ``[N]``/``[N, 1]`` class ids,
    or float ``[N, C]`` soft labels). Returns ``{"CELoss": loss}``.

    Divergences from PaddleClas (docs/compatibility.md): integer labels are always class ids, so a 1-D
    label with N == C (or ``[N, 1]`` with C == 1) works instead of crashing in ``softmax``; out-of-range
    class ids raise InputError.
    """

    input_keys = ("logits",)
    output_keys = ("CELoss",)

    def __init__(self, reduction: Literal["mean", "sum", "none"] = "mean", epsilon: Optional[float] = None):
        super().__init__()
        if reduction not in ("mean", "sum", "none"):
            raise ValueError(f"CELoss: reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
        if epsilon is not None and not 0 < epsilon < 1:
            epsilon = None
        self.reduction = reduction
        self.epsilon = epsilon

    def _reduce_rows(self, rows):
        if self.reduction == "mean":
            return rows.mean()
        if self.reduction == "sum":
            return rows.sum()
        return rows

    def forward(self, x, label):
        name = type(self).__name__
        x = check_features(pick(x, "logits", name), name, what="logits")
        shard = class_shard(x)
        if shard is not None:  # logits of a class-parallel head: distributed log-sum-exp
            return {"CELoss": self._reduce_rows(sharded_ce_rows(x, label, shard, self.epsilon, name))}
        n, num_classes = x.shape[0], x.shape[-1]
        if _is_soft_label(label, n, num_classes):
            check_finite(label, name, "soft label")
            if label.dtype != x.dtype:
                label = label.astype(x.dtype)
            if self.epsilon is not None:
                target = (1.0 - self.epsilon) * label + self.epsilon / num_classes
                return {"CELoss": self._reduce_rows(soft_cross_entropy_rows(x, target))}
            target = F.softmax(label.detach(), axis=-1)
            rows = soft_cross_entropy_rows(x, target).unsqueeze(-1)  # [N, 1], as Paddle's soft-label CE
            return {"CELoss": self._reduce_rows(rows)}

        if isinstance(label, paddle.Tensor) and paddle.is_floating_point(label):
            raise InputError(f"{name}: a float label is a soft label and must have shape [N, C] = "
                             f"{[n, num_classes]}, got {list(label.shape)}; class ids must be int64")
        column = isinstance(label, paddle.Tensor) and label.ndim == 2
        ids = check_labels(label, n, name)
        if self.epsilon is not None:
            check_class_ids(ids, num_classes, name, allow_ignore=False)
            # The smoothed one-hot target is never built: O(C) per row, one [N, C] tensor kept.
            return {"CELoss": self._reduce_rows(smoothed_cross_entropy(x, ids, self.epsilon))}
        check_class_ids(ids, num_classes, name, allow_ignore=True)
        loss = F.cross_entropy(x, ids, reduction=self.reduction)
        if self.reduction == "none" and column:
            loss = loss.reshape([-1, 1])
        return {"CELoss": loss}


@register_loss
class MixCELoss:
    """Removed in PaddleClas: constructing it raises ``DeprecationWarning`` (as an exception), as there.

    Use ``CELoss``: it accepts the float ``[N, C]`` mixed targets that mixup/cutmix produce.
    """

    input_keys = ()
    output_keys = ()

    def __init__(self, *args, **kwargs):
        raise DeprecationWarning('"MixCELoss" is deprecated and cannot be built; use "CELoss" instead '
                                 '(it accepts the soft [N, C] targets of mixup/cutmix)')


@register_loss
class GoogLeNetLoss(nn.Layer):
    """Cross entropy over GoogLeNet's main and two auxiliary outputs (PaddleClas ``GoogLeNetLoss``).

    Math: ``loss = CE(x0, y) + 0.3·CE(x1, y) + 0.3·CE(x2, y)``, each a hard-label mean cross entropy
    (id ``-100`` ignored, mean over the full N).

    Args:
        epsilon: must be None, ≤ 0 or ≥ 1: label smoothing is not supported (ValueError otherwise; PaddleClas
            asserts the same).

    Reads a sequence of three outputs, each a dict (its ``"logits"``) or a ``[N, C]`` Tensor, and int labels
    ``[N]``/``[N, 1]``. Returns ``{"GooleNetLoss": loss}`` -- the key keeps PaddleClas's misspelling so that
    logs and CombinedLoss keys match.
    """

    input_keys = ("logits",)
    output_keys = ("GooleNetLoss",)
    aux_weight = 0.3

    def __init__(self, epsilon: Optional[float] = None):
        super().__init__()
        if epsilon is not None and 0 < epsilon < 1:
            raise ValueError(f"GoogLeNetLoss does not support label smoothing: epsilon must be None, <= 0 "
                             f"or >= 1, got {epsilon!r}")

    def forward(self, inputs, label):
        name = type(self).__name__
        if not isinstance(inputs, (list, tuple)) or len(inputs) != 3:
            got = f"{len(inputs)} items" if isinstance(inputs, (list, tuple)) else type(inputs).__name__
            raise InputError(f"{name} expects a list of 3 outputs (main, aux1, aux2), got {got}")
        logits = [check_features(pick(item, "logits", name), name, what=f"logits of output {i}")
                  for i, item in enumerate(inputs)]
        n, num_classes = logits[0].shape[0], logits[0].shape[-1]
        for i, z in enumerate(logits[1:], start=1):
            if list(z.shape) != [n, num_classes]:
                raise InputError(f"{name}: output {i} has shape {list(z.shape)}, expected {[n, num_classes]} "
                                 f"like output 0")
        ids = check_labels(label, n, name)
        check_class_ids(ids, num_classes, name, allow_ignore=True)
        ce = [F.cross_entropy(z, ids) for z in logits]
        return {"GooleNetLoss": ce[0] + self.aux_weight * ce[1] + self.aux_weight * ce[2]}
