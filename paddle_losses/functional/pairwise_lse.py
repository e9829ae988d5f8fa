"""PairwiseCosface's two masked log-sum-exps over ``S = x·xᵀ``, with a hand-written backward.

For unit rows ``x [N, D]``, the same-label mask ``Y [N, N]`` (diagonal included) and ``P = Y`` without the
diagonal, ``Q = not Y``::

    lp_ij = −γ·S_ij  on P,        c elsewhere
    ln_ij = γ·(S_ij + m)  on Q,   c + γ·m elsewhere
    r_i   = logsumexp_j lp_ij + logsumexp_j ln_ij

``c`` is PaddleClas's additive mask constant (−99999999). A row with candidates on a side gets exactly
``exp(c − max) = 0`` from the masked entries; a row without candidates gets ``c + ln N`` (``c + γ·m + ln N``),
the values of PaddleClas's dense formula, and no gradient through that side.

With ``g = ∂L/∂r`` the gradient with respect to the similarities is
``G_ij = −γ·g_i·softmax_P(lp)_ij`` on P and ``+γ·g_i·softmax_Q(ln)_ij`` on Q, so ``∂L/∂x = (G + Gᵀ)·x``.
The forward pass turns ``S``'s buffer into the negative side's exponentials and one more buffer into the
positive side's, both in place, and keeps only those two; the backward pass scales them in place and needs
one matmul. Autograd over the dense formula keeps float masks, masked copies, logits and exponentials of
both sides alive and walks each back (peak 7.8 float32 ``N×N`` matrices at N = 4096, D = 512).
"""
import paddle
from paddle.autograd import PyLayer

from .inplace import fill_diagonal, inplace
from .reduction import row_sum


def _exp_rows(logits):
    """``(E, max, sum)``: the row maxima of ``logits``, ``E = exp(logits − max)`` written over ``logits``,
    and ``E``'s row sums."""
    top = logits.max(axis=1, keepdim=True)
    exp = inplace(inplace(logits, "subtract", top), "exp")
    return exp, top.squeeze(1), row_sum(exp)


class _CosfacePairLse(PyLayer):
    @staticmethod
    def forward(ctx, x, same, different, gamma, margin, masked):
        sim = paddle.matmul(x, x, transpose_y=True)
        pos_logits = paddle.scale(sim, -gamma)
        pos_logits = fill_diagonal(inplace(pos_logits, "masked_fill", different, masked), masked)
        # γ·(S + m), rounded as PaddleClas's dense formula rounds it; S's buffer is not needed any more.
        neg_masked = paddle.full([], margin, x.dtype) * gamma + paddle.full([], masked, x.dtype)
        neg_logits = inplace(inplace(sim, "scale", gamma, margin, False), "masked_fill", same, neg_masked)
        pos_exp, pos_top, pos_sum = _exp_rows(pos_logits)
        neg_exp, neg_top, neg_sum = _exp_rows(neg_logits)
        # Candidate logits of unit rows are bounded by |γ|·(1 + |m|) ≪ |c|: a row whose maximum is the mask
        # constant has no candidates on that side.
        # (0-d thresholds: a Python scalar would be materialised as a full tensor.)
        has_pos = pos_top > paddle.full([], 0.5 * masked, x.dtype)
        has_neg = neg_top > 0.5 * neg_masked
        ctx.save_for_backward(x, pos_exp, neg_exp, pos_sum, neg_sum, has_pos, has_neg)
        ctx.gamma = gamma
        return paddle.log(pos_sum) + pos_top + paddle.log(neg_sum) + neg_top

    @staticmethod
    def backward(ctx, grad_rows):
        x, pos_exp, neg_exp, pos_sum, neg_sum, has_pos, has_neg = ctx.saved_tensor()
        zero = paddle.zeros([], dtype=grad_rows.dtype)
        # A side without candidates passes no gradient (its entries are the constant c, not similarities).
        pos_scale = paddle.where(has_pos, grad_rows * (-ctx.gamma) / pos_sum, zero)
        neg_scale = paddle.where(has_neg, grad_rows * ctx.gamma / neg_sum, zero)
        # Masked entries of a side with candidates are exactly 0 in its exponentials, and the diagonal is
        # masked on both sides, so the two scaled buffers add up to G without any mask.
        grad = inplace(pos_exp, "multiply", pos_scale.unsqueeze(1))
        grad = inplace(grad, "add", inplace(neg_exp, "multiply", neg_scale.unsqueeze(1)))
        if paddle.in_dynamic_mode():
            # Gᵀ is a view of G: materialise it, into the negative side's buffer (free now), before adding.
            mirrored = paddle.assign(grad.t(), output=neg_exp)
        else:
            mirrored = grad.t()
        return paddle.matmul(inplace(grad, "add", mirrored), x), None, None


def cosface_pair_lse(x, same, different, gamma, margin, masked):
    """``r_i = logsumexp_j lp_ij + logsumexp_j ln_ij`` of PairwiseCosface (see the module docstring).

    Args:
        x: ``[N, D]`` float32/float64 rows (PairwiseCosface passes them L2-normalised).
        same: ``[N, N]`` bool, ``y_i == y_j`` (diagonal True); ``different``: its complement.
        gamma, margin: ``γ`` and ``m``.
        masked: the additive mask constant ``c``; it must dwarf the logits (``|c| ≫ |γ|·(1 + |m|)``).

    Returns:
        ``r [N]``. Differentiable once with respect to ``x``; only the two exponential buffers (and ``x``)
        are kept for the backward pass.
    """
    return _CosfacePairLse.apply(x, same, different, float(gamma), float(margin), float(masked))
