"""Cross entropy against soft targets (SoftTargetCrossEntropy) and FixMatch-CCSSL's masked pseudo-label CE."""
import paddle
import paddle.nn as nn
import paddle.nn.functional as F

from ..errors import InputError
from ..inputs import check_features, check_finite, check_labels, pick
from ..registry import register_loss
from .ce import check_class_ids, soft_cross_entropy_rows


@register_loss
class SoftTargetCrossEntropy(nn.Layer):
    """Cross entropy against a soft target used as given (mixup/cutmix targets, DeiT).

    Math: ``loss = mean_i Σ_c −target_ic · log_softmax(x)_ic``. The target is neither normalised nor
    softmaxed (unlike CELoss without epsilon), and it receives a gradient (plain product), as in PaddleClas.

    No parameters. Reads ``x``: the ``[N, C]`` logits tensor (or ``input["logits"]`` of a model-output
    dict), and ``target``: float ``[N, C]``. Returns ``{"SoftTargetCELoss": scalar}``.

    Divergence: a model-output dict is accepted (PaddleClas fails on a dict).
    """

    input_keys = ("logits",)
    output_keys = ("SoftTargetCELoss",)

    def __init__(self):
        super().__init__()

    def __str__(self):
        return type(self).__name__

    def forward(self, x, target):
        owner = type(self).__name__
        x = check_features(pick(x, "logits", owner), owner, "logits")
        if not isinstance(target, paddle.Tensor) or not paddle.is_floating_point(target):
            got = target.dtype if isinstance(target, paddle.Tensor) else type(target).__name__
            raise InputError(f"{owner}: target must be a float soft-label tensor [N, C] = {list(x.shape)}, got "
                             f"{got}; use CELoss for integer class ids")
        if list(target.shape) != list(x.shape):
            raise InputError(f"{owner}: target must have the logits' shape {list(x.shape)}, got "
                             f"{list(target.shape)}")
        check_finite(target, owner, "target")
        return {"SoftTargetCELoss": soft_cross_entropy_rows(x, target.astype(x.dtype)).mean()}


@register_loss
class CCSSLCELoss(nn.Layer):
    """Masked cross entropy of a strong view against weak-view pseudo-labels (FixMatch-CCSSL).

    Math: ``loss = (1/N) Σ_i mask_i · (−log_softmax(logits_s1)_{i, p_i})``. The mean runs over all N rows,
    not over the unmasked ones; a pseudo-label of −100 contributes 0 (Paddle's ignore_index).

    Args:
        **kwargs: accepted and ignored, as in PaddleClas.

    Reads nothing from ``inputs`` (the contrastive features; ignored). ``batch`` is the trainer's dict:
    ``p_targets_u_w`` int ``[N]`` (or ``[N, 1]``) pseudo-labels, ``logits_s1`` ``[N, C]`` strong-view logits,
    ``mask`` float ``[N]`` (or ``[N, 1]``) confidence mask. Gradients reach ``logits_s1`` and ``mask``.
    Returns ``{"CCSSLCELoss": scalar}``.

    Divergence: ``[N, 1]`` pseudo-labels (or mask) are flattened to ``[N]``; PaddleClas broadcasts the
    per-row loss against the mask to ``[N, N]`` and averages N² products.
    """

    input_keys = ()
    target_keys = ("p_targets_u_w", "logits_s1", "mask")
    output_keys = ("CCSSLCELoss",)
    _BATCH_KEYS = ("p_targets_u_w", "logits_s1", "mask")

    def __init__(self, **kwargs):
        super().__init__()

    def forward(self, inputs, batch, **kwargs):
        owner = type(self).__name__
        missing = [k for k in self._BATCH_KEYS if not isinstance(batch, dict) or k not in batch]
        if missing:
            got = f"keys {sorted(map(str, batch))}" if isinstance(batch, dict) else type(batch).__name__
            raise InputError(f"{owner} reads batch{missing} from the CCSSL trainer's batch dict (keys "
                             f"{list(self._BATCH_KEYS)}), got {got}")
        logits = check_features(batch["logits_s1"], owner, "batch['logits_s1']")
        n, c = logits.shape
        ids = check_labels(batch["p_targets_u_w"], n, owner, "batch['p_targets_u_w']")
        check_class_ids(ids, c, owner, allow_ignore=True)
        mask = batch["mask"]
        if not isinstance(mask, paddle.Tensor):
            mask = paddle.to_tensor(mask)
        if mask.ndim not in (1, 2) or mask.shape[0] != n or (mask.ndim == 2 and mask.shape[1] != 1):
            raise InputError(f"{owner}: batch['mask'] must have shape [N] or [N, 1] with N = {n}, got "
                             f"{list(mask.shape)}")
        mask = mask.reshape([-1]).astype(logits.dtype)
        check_finite(mask, owner, "batch['mask']")
        per_row = F.cross_entropy(logits, ids, reduction="none")
        return {"CCSSLCELoss": (per_row * mask).mean()}
