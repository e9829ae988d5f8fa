"""Supervised-contrastive rows (Khosla et al. 2020) with a hand-written backward over one logits buffer.

For anchors ``A [Na, D]``, the first ``Na`` rows of the contrast set ``C [Nc, D]``, and positive
weights ``P [Na, Nc]`` (0/1 labels or soft confidences; the self pair ``(r, r)`` never counts)::

    z = A·Cᵀ / T,   lse_r = ln Σ_{k≠r} exp z_rk,   w_r = Σ_{k≠r} P_rk
    row_r = −(T/T_base) · (Σ_{k≠r} P_rk z_rk / w_r − lse_r)

The gradient with respect to the logits is ``∂row_r/∂z_rk = −(T/T_base)·(P_rk/w_r − softmax_rk)``, so the
backward pass needs only the exponentials of the forward pass and one matmul (two when only some rows
are anchors). Autograd over the same
formula keeps every intermediate (shifted logits, exponentials, masked copies, log-probabilities, their
products) alive and walks each of them back: about three times the passes over the ``[Na, Nc]`` matrix.
"""
import paddle
from paddle.autograd import PyLayer

from .inplace import inplace, zero_diagonal
from .reduction import row_sum


class _SupConRows(PyLayer):
    @staticmethod
    def forward(ctx, contrast, positive, safe_weight, valid, num_anchors, temperature, base_temperature):
        anchor = contrast[:num_anchors]
        logits = paddle.matmul(anchor, contrast, transpose_y=True)
        logits = inplace(logits, "scale", 1.0 / temperature)
        # Shift by the row maximum for a stable exp; it cancels in the row values.
        logits = inplace(logits, "subtract", logits.max(axis=1, keepdim=True))
        # zero_diagonal and diagonal on [Na, Nc] address the entries (r, r), r < Na: the self pairs.
        pulled = row_sum(positive * logits) - paddle.diagonal(positive) * paddle.diagonal(logits)
        exp = inplace(logits, "exp")  # the logits are not needed any more: reuse their buffer
        exp = zero_diagonal(exp)
        total = row_sum(exp)
        scale = -temperature / base_temperature
        rows = scale * (pulled / safe_weight - paddle.log(total))
        ctx.save_for_backward(contrast, positive, exp, total, safe_weight, valid)
        ctx.factor = scale / temperature
        ctx.num_anchors = num_anchors
        return paddle.where(valid, rows, paddle.zeros_like(rows))

    @staticmethod
    def backward(ctx, grad_rows):
        contrast, positive, exp, total, safe_weight, valid = ctx.saved_tensor()
        na = ctx.num_anchors
        grad_rows = paddle.where(valid, grad_rows, paddle.zeros_like(grad_rows)) * ctx.factor
        # G = dL/d(A·Cᵀ) = factor · g_r · (P_rk / w_r − exp_rk / total_r), without the self pair.
        grad = positive * (grad_rows / safe_weight).unsqueeze(1)
        grad = zero_diagonal(grad)
        grad = inplace(grad, "subtract", exp * (grad_rows / total).unsqueeze(1))
        if na == contrast.shape[0]:
            # Every row is an anchor (A = C): dC = G·C + Gᵀ·C = (G + Gᵀ)·C, one matmul instead of two.
            # grad.t() may be a view of grad: materialise it before adding it into grad.
            mirrored = grad.t().contiguous() if paddle.in_dynamic_mode() else grad.t()
            return paddle.matmul(inplace(grad, "add", mirrored), contrast), None, None, None
        grad_contrast = paddle.matmul(grad, contrast[:na], transpose_x=True)
        anchor_part = paddle.matmul(grad, contrast)
        grad_contrast = paddle.concat([grad_contrast[:na] + anchor_part, grad_contrast[na:]])
        return grad_contrast, None, None, None


def supcon_rows(contrast, num_anchors, positive, temperature, base_temperature):
    """Per-anchor SupCon loss ``−(T/T_base)·mean_{k∈P(r)} log p_rk`` (see the module docstring).

    Args:
        contrast: ``[Nc, D]``; its first ``num_anchors`` rows are the anchors (anchor ``r`` is contrast row
            ``r``).
        num_anchors: ``Na``.
        positive: ``[Na, Nc]`` float weights of the positives (the diagonal is ignored).
        temperature, base_temperature: ``T`` and ``T_base``.

    Returns:
        ``(rows [Na], valid [Na])``; anchors whose positive weights sum to 0 get 0 and ``valid=False``.
    """
    positive = positive.astype(contrast.dtype)
    with paddle.no_grad():
        weight = row_sum(positive) - paddle.diagonal(positive)
        valid = weight > 0
        safe_weight = paddle.where(valid, weight, paddle.ones_like(weight))
    rows = _SupConRows.apply(contrast, positive, safe_weight, valid, int(num_anchors), float(temperature),
                             float(base_temperature))
    return rows, valid
