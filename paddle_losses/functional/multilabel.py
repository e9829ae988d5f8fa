"""Multi-label helpers shared by MultiLabelLoss and the distillation wrappers that reuse it."""
import paddle


def ratio2weight(targets, ratio):
    """Per-element weight for attribute-imbalanced multi-label BCE (PaddleClas's ``ratio2weight``).

    ``w = exp(t·(1 − r) + (1 − t)·r)`` where ``t`` is the binarised target and ``r`` the positive ratio of
    the attribute, then ``w`` is zeroed where ``t > 1``. Rare positives therefore weigh up to ``e`` and
    common negatives down to 1.

    Args:
        targets: binarised targets, any shape; bool or integer targets are cast to ``ratio``'s dtype
            (PaddleClas needs float here: a bool target fails Paddle's type promotion).
        ratio: positive ratios, same shape as ``targets`` (or broadcastable to it).

    Returns:
        The weight tensor, in ``ratio``'s dtype.
    """
    if targets.dtype != ratio.dtype:
        targets = targets.astype(ratio.dtype)
    w = paddle.exp(targets * (1.0 - ratio) + (1.0 - targets) * ratio)
    return w - w * (targets > 1).astype(w.dtype)
