"""Closed-form heads of the pytorch-metric-learning pair losses for :func:`.pair_core.similarity_loss`.

Each ``*_head(...)`` returns a function of the similarity buffer ``s`` (``[N, N]``, overwritten) giving
``(value, G = ∂value/∂S, symmetric)``. ``pos`` / ``neg`` are float 0/1 pair masks (diagonal in neither)
made for the one call (a head may overwrite them too),
``reducer`` one of :data:`.pair_core.CORE_REDUCERS`. The math of each loss is in its class docstring
(``paddle_losses.losses.crossfw``); the gradients are written out below. The callers check that every
exponent stays within :func:`.pair_core.exponent_limit`, so the heads exponentiate without a row shift
where the loss adds a constant 1 or shares a fixed bound, and shift by the masked row maximum otherwise.
"""
import paddle

from .pair_core import MASKED, indicator, inverse_distance, outer_sum, reducer_scale, unit_distance
from .reduction import AvgNonZeroReducer, row_sum


def _column(v):
    return v.reshape([-1, 1])


def contrastive_head(pos, neg, pos_margin, neg_margin, reducer, symmetric):
    """PML ``ContrastiveLoss`` on L2 distance: ``reduce(relu(d − m_p) | pos) + reduce(relu(m_n − d) | neg)``.

    ``∂L/∂d = c_p·[d > m_p]·pos − c_n·[d < m_n]·neg`` (``c`` = the reducer's ``1/#counted`` of each side),
    ``∂d/∂S = −1/d`` (0 at ``d = 0``). ``symmetric``: the masks are (class ids, multi-hot), so is ``G``.
    """
    def head(s):
        d, q = unit_distance(s)
        count_pos, count_neg = pos.sum(), neg.sum()
        # the hinges overwrite the masks (this head's own): two [N, N] allocations fewer
        hinge_pos = pos.multiply_(d if pos_margin == 0 else paddle.scale(d, 1.0, -pos_margin).clip_(min=0.0))
        inverse = inverse_distance(d, q)
        hinge_neg = neg.multiply_(d.scale_(-1.0, neg_margin).clip_(min=0.0))
        total_pos, total_neg = hinge_pos.sum(), hinge_neg.sum()
        on_pos, on_neg = indicator(hinge_pos), indicator(hinge_neg)
        scale_pos = reducer_scale(reducer, count_pos, on_pos.sum())
        scale_neg = reducer_scale(reducer, count_neg, on_neg.sum())
        value = total_pos * scale_pos + total_neg * scale_neg
        grad = on_neg.scale_(scale_neg).subtract_(on_pos.scale_(scale_pos))
        return value, grad.multiply_(inverse), symmetric
    return head


def multi_similarity_head(pos, neg, alpha, beta, base, reducer, miner=None):
    """PML ``MultiSimilarityLoss`` on cosine similarity, optionally after a ``MultiSimilarityMiner`` mined
    on the same ``S`` (its ``similarity_pairs``).

    Rows ``l_i = log(1 + P_i)/α + log(1 + N_i)/β`` with ``P_i = Σ_pos e^{−α(s − base)}`` and
    ``N_i = Σ_neg e^{β(s − base)}``; ``∂l_i/∂s_ij = −e^{−α(s_ij − base)}/(1 + P_i)`` on positives and
    ``e^{β(s_ij − base)}/(1 + N_i)`` on negatives; the reducer runs over all ``N`` rows.
    """
    def head(s):
        p, n = (pos, neg) if miner is None else miner.similarity_pairs(s, pos, neg)
        exp_pos = paddle.scale(s, -alpha, alpha * base).exp_().multiply_(p)
        exp_neg = s.scale_(beta, -beta * base).exp_().multiply_(n)
        sum_pos, sum_neg = row_sum(exp_pos), row_sum(exp_neg)
        rows = paddle.log1p(sum_pos) / alpha + paddle.log1p(sum_neg) / beta
        count = paddle.full([], rows.shape[0], rows.dtype)
        scale = reducer_scale(reducer, count, (rows > 0).astype(rows.dtype).sum())
        value = rows.sum() * scale
        exp_pos.multiply_(_column(scale / (1.0 + sum_pos)))
        grad = exp_neg.multiply_(_column(scale / (1.0 + sum_neg))).subtract_(exp_pos)
        return value, grad, False
    return head


def _masked_softmax_parts(logits, mask):
    """``(e, Z, lse)`` of each row over ``mask``: ``e = mask · e^{logit − max}`` (in ``logits``' buffer),
    ``Z = Σ e`` and ``lse = max + log Z`` (garbage, but finite, on rows with an empty mask)."""
    logits.add_(paddle.scale(mask, MASKED, -MASKED))
    top = logits.max(axis=1, keepdim=True)
    e = logits.subtract_(top).exp_()
    z = row_sum(e)
    return e, z, top.squeeze(1) + paddle.log(z)


def circle_head(pos, neg, m, gamma, reducer):
    """PML ``CircleLoss`` on cosine similarity.

    Logits ``λp = −γ a_p (s − (1 − m))`` with ``a_p = [1 + m − s]₊`` and ``λn = γ a_n (s − m)`` with
    ``a_n = [s + m]₊`` (weights held constant, as PML detaches them); rows
    ``l_i = softplus(LSE_pos λp + LSE_neg λn)`` (``x`` itself above 20), valid where the row has a positive
    and a negative. ``∂l_i/∂s_ij = σ'_i · (−γ a_p softmax_pos + γ a_n softmax_neg)_ij`` with ``σ'`` the
    softplus derivative (1 above 20).
    """
    def head(s):
        weight_pos = paddle.scale(s, -1.0, 1.0 + m).clip_(min=0.0)
        weight_neg = paddle.scale(s, 1.0, m).clip_(min=0.0)
        logit_pos = paddle.scale(s, -gamma, gamma * (1.0 - m)).multiply_(weight_pos)
        logit_neg = s.scale_(gamma, -gamma * m).multiply_(weight_neg)
        exp_pos, z_pos, lse_pos = _masked_softmax_parts(logit_pos, pos)
        exp_neg, z_neg, lse_neg = _masked_softmax_parts(logit_neg, neg)
        x = lse_pos + lse_neg
        valid = paddle.logical_and(row_sum(pos) > 0, row_sum(neg) > 0).astype(x.dtype)
        above = (x > 20.0).astype(x.dtype)
        soft = paddle.nn.functional.softplus(x * valid, beta=1, threshold=20) * valid  # 0 on invalid rows
        counted = valid * (soft > 0).astype(x.dtype) if isinstance(reducer, AvgNonZeroReducer) else valid
        scale = reducer_scale(reducer, valid.sum(), counted.sum())
        value = soft.sum() * scale
        slope = above + (1.0 - above) * paddle.nn.functional.sigmoid(x * valid)
        row_weight = counted * slope * scale * gamma
        exp_pos.multiply_(weight_pos).multiply_(_column(row_weight / z_pos))
        grad = exp_neg.multiply_(weight_neg).multiply_(_column(row_weight / z_neg)).subtract_(exp_pos)
        return value, grad, False
    return head


def lifted_structure_head(pos, neg, neg_margin, pos_margin, reducer):
    """PML ``LiftedStructureLoss`` on L2 distance, for symmetric masks (class ids or multi-hot).

    With ``E_i = Σ_neg e^{m_n − d_ik}`` (0 without negatives) and, per positive pair,
    ``x_ij = log(E_i + E_j) + d_ij − m_p`` (``log(E_i + E_j)`` read as 0 when both are 0),
    ``l_ij = [x_ij]₊² / 2``, reduced over the positive pairs. With ``W = pos·[x]₊`` (times the reducer's
    scale ``c``): ``∂L/∂d_ij = c W_ij − u_i e^{m_n − d_ij} neg_ij``, ``u_i = 2c Σ_j W_ij / (E_i + E_j)``
    (``W`` and ``E_i + E_j`` are symmetric), and ``∂d/∂S = −1/d``.
    """
    def head(s):
        d, q = unit_distance(s)
        exp_neg = paddle.scale(d, -1.0, neg_margin).exp_().multiply_(neg)
        e = row_sum(exp_neg)
        both = outer_sum(e, e)
        empty = (row_sum(neg) == 0).astype(e.dtype)
        if bool(empty.any()):  # a pair of rows without negatives has no negative term: log(0 + 0 + 1) = 0
            both.add_(_column(empty) * empty.reshape([1, -1]))
        hinge = paddle.log(both).add_(d).scale_(1.0, -pos_margin).clip_(min=0.0).multiply_(pos)  # W / c
        total = (hinge * hinge).sum() * 0.5
        counted = indicator(hinge.clone()).sum() if isinstance(reducer, AvgNonZeroReducer) else None
        scale = reducer_scale(reducer, pos.sum(), counted)
        u = row_sum(both.reciprocal_().multiply_(hinge)) * (2.0 * scale)
        grad = exp_neg.multiply_(_column(u)).subtract_(hinge.scale_(scale))  # = −∂L/∂d
        return total * scale, grad.multiply_(inverse_distance(d, q)), False
    return head


def ntxent_head(pos, neg, temperature, reducer):
    """PML ``NTXentLoss`` on cosine similarity.

    Per positive pair ``l_ij = −log p_ij``, ``p_ij = e^{z_ij} / (e^{z_ij} + Q_i)``, ``Q_i = Σ_neg e^{z_ik}``,
    ``z = s/τ`` (PML adds the dtype's ``tiny`` to ``p``; the caller's exponent bound keeps ``p`` far above
    it, where adding it changes nothing). With pair weights ``w`` (``pos``, or ``pos·[l > 0]`` for
    ``AvgNonZeroReducer``) and scale ``c``: ``∂L/∂z_ij = c w_ij (p_ij − 1)`` on positives and
    ``e^{z_ik} · c Σ_j w_ij / (e^{z_ij} + Q_i)`` on negatives. The exponentials are taken of ``z − 1/τ``.
    """
    def head(s):
        inv_t = 1.0 / temperature
        e = s.scale_(inv_t, -inv_t).exp_()
        exp_neg = e * neg
        denominator = e + _column(row_sum(exp_neg))
        p = e.divide_(denominator)
        log_p = paddle.log(p)
        if isinstance(reducer, AvgNonZeroReducer):
            weight = indicator(paddle.scale(log_p, -1.0)).multiply_(pos)
            counted = weight.sum()
        else:
            weight, counted = pos, None
        scale = reducer_scale(reducer, pos.sum(), counted)
        value = -(log_p.multiply_(weight)).sum() * scale
        h = row_sum(denominator.reciprocal_().multiply_(weight)) * (scale * inv_t)
        grad = p.scale_(1.0, -1.0).multiply_(weight).scale_(scale * inv_t)
        return value, grad.add_(exp_neg.multiply_(_column(h))), False
    return head
