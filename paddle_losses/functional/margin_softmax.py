"""Closed-form forward and backward of the classifier losses that own their class vectors.

ArcFace, CosFace and SubCenterArcFace (a margin on the target cosine, scaled softmax cross-entropy, mean
over the batch) and ProxyAnchor (log(1 + Σ e^...) per proxy), written as one Paddle ``PyLayer`` each. On
the autograd tape these losses cost several times their three matrix products: the normalisation of the
weight alone (a reduction along its first axis and its backward) takes about a third of a ``[1024, 512] ×
[512, 1000]`` product, and every element-wise step over the ``[N, C]`` logits leaves a tensor for the
backward pass. Here the forward pass makes the cosines once, overwrites them in place into the gradient of
the loss with respect to the cosines, and keeps only that (``G``); the backward pass is two products,
``G·Ŵᵀ`` and ``x̂ᵀ·G``, plus the normalisations' Jacobians written out:

``x̂ = x·q``, ``q = 1 / max(‖x‖, ε)`` (ε = 1e-12, PML's clamp): ``∂/∂x = q·(A − x̂·(x̂·A))`` for
``A = ∂/∂x̂`` where ``‖x‖ > ε``, else ``q·A`` (the clamp is then a constant). The same holds for each class
vector. Row and column sums are products with a ones vector (a reduction along the last axis, let alone
the first, costs several times more on CPU).

Without a running maximum the exponentials ``e^{s·cos}`` stay inside the float range only for moderate
scales (``s·max|logit| + log C`` below ``EXP_LIMIT``): :func:`exp_is_safe` says when; the losses use their
plain autograd formula otherwise, and while tracing (``paddle.jit.to_static``).
"""
import math

import paddle
from paddle.autograd import PyLayer

from .inplace import inplace
from .reduction import column_sum, row_sum

EPS = 1e-12  # PML normalises with F.normalize's eps
# Largest exponent kept away from overflow (float32 overflows past e^88.7; float64 past e^709.8). The
# smallest is its negative: e^-80 is still a normal float32, so no row sum loses its digits.
EXP_LIMIT = {"float32": 80.0, "float64": 700.0}


def exp_is_safe(dtype, scale, lowest, highest, terms):
    """True when, in ``dtype`` (a ``paddle`` dtype), ``e^{scale·v}`` for ``v <= highest`` and a sum of ``terms``
    of them stay finite, and ``e^{scale·lowest}`` is a normal number (pass as ``lowest`` a bound on the
    *largest* term of each sum: smaller terms may underflow harmlessly)."""
    limit = EXP_LIMIT.get(str(dtype).replace("paddle.", ""))
    if limit is None or not scale >= 0:
        return False
    return scale * max(highest, 0.0) + math.log(max(terms, 1)) < limit and scale * max(-lowest, 0.0) < limit


def _squared_norms(m, axis):
    """``Σ m²`` along ``axis`` (1: rows ``[N, 1]``, 0: columns ``[M]``), without gradient."""
    m = m.detach()
    return row_sum(m * m, keepdim=True) if axis == 1 else column_sum(m * m)


def _finite(*squared_norms):
    """True when every squared norm is finite (one host sync). Past about 1e19 per entry they overflow
    float32; the losses then use their autograd formula, whose normalisation rescales such rows."""
    ok = None
    for sq in squared_norms:
        flag = paddle.isfinite(sq).all()
        ok = flag if ok is None else paddle.logical_and(ok, flag)
    return bool(ok)


def _unit(m, sq):
    """``(m̂, inv, live)``: ``m`` over its norms (``sq``: :func:`_squared_norms`) with PML's clamp, the factors
    ``1 / max(‖·‖, ε)`` and where the norm exceeds ε (float 0/1)."""
    live = (sq > EPS * EPS).astype(m.dtype)
    inv = paddle.rsqrt(paddle.clip(sq, min=EPS * EPS))
    return m * inv, inv, live


def _unit_grad(unit, inv, live, grad, axis):
    """Gradient w.r.t. ``m`` of ``m̂`` (from :func:`_unit`) given ``grad = ∂/∂m̂``; overwrites ``grad``."""
    dots = row_sum(unit * grad, keepdim=True) if axis == 1 else column_sum(unit * grad)
    radial = unit * inplace(dots, "multiply", live)
    return inplace(inplace(grad, "subtract", radial), "multiply", inv)


def _pick(m, ids):
    """``m[i, ids_i]`` as ``[N, 1]`` (a gather on the flat matrix: take_along_axis costs a pass over ``m``)."""
    rows, cols = m.shape
    flat = paddle.arange(rows, dtype="int64").reshape([-1, 1]) * cols + ids
    return paddle.gather(m.reshape([-1]), flat.reshape([-1])).reshape([-1, 1])


def _best_sub_centre(cosines):
    """Element-wise maximum of the sub-centres' ``[N, C]`` cosines and, per sub-centre, a bool mask of the
    entries it wins (ties go to the lowest index, as an arg-max)."""
    best = cosines[0]
    for c in cosines[1:]:
        best = paddle.maximum(best, c)
    wins, claimed = [], None
    for c in cosines[:-1]:
        win = c == best
        if claimed is not None:
            win = paddle.logical_and(win, paddle.logical_not(claimed))
            claimed = paddle.logical_or(claimed, win)
        else:
            claimed = win
        wins.append(win)
    wins.append(paddle.logical_not(claimed))
    return best, wins


class _MarginSoftmaxCE(PyLayer):
    """Mean over rows of ``logsumexp_c(s·z_ic) − s·z_{i,y_i}``, ``z = cos`` but ``z_{i,y_i} = f(cos_{i,y_i})``.

    Inputs: raw embeddings ``x [N, D]``, raw class weights ``W [D, C·k]`` (sub-centre ``j`` of class ``c`` in
    column ``c·k + j``; with ``k > 1`` the cosine to a class is the largest of its sub-centres'), int64
    ``ids [N, 1]``, ``target_rule(t) -> (f(t), f'(t))`` on ``[N, 1]`` tensors, scale ``s``, ``k``.

    Forward, per row: ``e = exp(s·z)`` (no shift: :func:`exp_is_safe` holds), ``Z = Σ e``,
    ``loss_i = log Z − s·z_y``; the gradient w.r.t. ``cos`` is ``(s/N)·e/Z`` off the target and
    ``(s/N)·(p_y − 1)·f'(t)`` at it, written over ``e``. Backward: the products and the normalisations'
    Jacobians (module docstring). With sub-centres the forward products run per sub-centre, and the gradient
    reaches each entry only through the sub-centre that won it.
    """

    @staticmethod
    def forward(ctx, x, weight, ids, target_rule, scale, sub_centers, sq_x, sq_w):
        rows, k = x.shape[0], sub_centers
        xn, q, x_live = _unit(x, sq_x)
        wn, r, w_live = _unit(weight, sq_w)
        if k == 1:
            cos, wins = paddle.matmul(xn, wn), None
        else:
            cos, wins = _best_sub_centre([paddle.matmul(xn, part) for part in _sub_centre_columns(wn, k)])
        target, slope = target_rule(_pick(cos, ids))
        target = target * scale
        e = inplace(inplace(cos, "scale", scale), "put_along_axis", ids, target, 1)
        e = inplace(e, "exp")
        z = row_sum(e, keepdim=True)
        log_z = paddle.log(z)
        loss = (log_z - target).mean()
        p_target = paddle.exp(target - log_z)
        grad = inplace(e, "multiply", (scale / rows) / z)
        grad = inplace(grad, "put_along_axis", ids, (p_target - 1.0) * slope * (scale / rows), 1)
        ctx.sub_centers, ctx.wins = k, wins
        ctx.needs = (not x.stop_gradient, not weight.stop_gradient)
        ctx.save_for_backward(grad, xn, q, x_live, wn, r, w_live)
        return loss

    @staticmethod
    def backward(ctx, upstream):
        grad, xn, q, x_live, wn, r, w_live = ctx.saved_tensor()
        g = float(upstream)
        if g != 1.0:
            grad = grad * g
        k, (need_x, need_w) = ctx.sub_centers, ctx.needs
        rows, dim = xn.shape
        grad_xn = grad_wn = None
        if k > 1 and rows > dim:
            # Many rows: one product per sub-centre on the entries it won, the [D, C] results interleaved.
            parts = [grad * win.astype(grad.dtype) for win in ctx.wins]
            if need_x:
                for gj, wj in zip(parts, _sub_centre_columns(wn, k)):
                    a = paddle.matmul(gj, wj, transpose_y=True)
                    grad_xn = a if grad_xn is None else inplace(grad_xn, "add", a)
            if need_w:
                grad_wn = paddle.stack([paddle.matmul(xn, gj, transpose_x=True) for gj in parts], axis=2)
                grad_wn = grad_wn.reshape(wn.shape)
        else:
            if k > 1:
                # Few rows: the gradient w.r.t. every column, interleaved as the weight's, is the smaller tensor
                parts = [grad * win.astype(grad.dtype) for win in ctx.wins]
                grad = paddle.stack(parts, axis=2).reshape([rows, wn.shape[1]])
            grad_xn = paddle.matmul(grad, wn, transpose_y=True) if need_x else None
            grad_wn = paddle.matmul(xn, grad, transpose_x=True) if need_w else None
        grad_x = _unit_grad(xn, q, x_live, grad_xn, 1) if need_x else None
        grad_w = _unit_grad(wn, r, w_live, grad_wn, 0) if need_w else None
        return grad_x, grad_w, None, None, None


def _sub_centre_columns(weight, k):
    """The ``k`` sub-centres' ``[D, C]`` column sets of a ``[D, C·k]`` weight (column ``c·k + j`` is sub-centre ``j``
    of class ``c``), as contiguous copies."""
    return [weight[:, j::k].contiguous() for j in range(k)]


def margin_softmax_ce(x, weight, ids, target_rule, scale, sub_centers=1):
    """Mean margin-softmax cross-entropy (:class:`_MarginSoftmaxCE`) of raw ``x [N, D]`` against the
    normalised columns of ``weight [D, C·sub_centers]``; ``ids`` int64 ``[N]`` or ``[N, 1]`` in ``[0, C)``.

    The caller checks :func:`exp_is_safe`. Returns None when a squared norm overflows (the caller then uses
    its autograd formula). Half-precision ``x`` is computed in float32 (its gradient comes back in its
    dtype). Gradients reach ``x`` and ``weight``; not differentiable twice.
    """
    if x.dtype in (paddle.float16, paddle.bfloat16):
        x = x.astype("float32")
    sq_x, sq_w = _squared_norms(x, 1), _squared_norms(weight, 0)
    if not _finite(sq_x, sq_w):
        return None
    return _MarginSoftmaxCE.apply(x, weight, ids.reshape([-1, 1]), target_rule, float(scale), int(sub_centers),
                                  sq_x, sq_w)


class _ProxyAnchor(PyLayer):
    """``Σ_c log(1 + S⁺_c) / #present + Σ_c log(1 + S⁻_c) / C`` for ``cos = P̂·x̂ᵀ`` ``[C, N]`` (classes on
    the rows, so every sum runs along the last axis), ``S⁺_c = Σ_{i: y_i = c} e^{−α(cos_ci − δ)}`` and
    ``S⁻_c = Σ_{i: y_i ≠ c} e^{α(cos_ci + δ)}``.

    ``e^{α(cos + δ)}`` is computed for every entry and the ``N`` positive ones are zeroed before the row sums
    (subtracting them instead would cancel catastrophically when a positive dominates); the positives' terms
    come from the ``N`` gathered cosines and are added per class with ``index_add``. The gradient w.r.t.
    ``cos`` is ``α/C · e/(1 + S⁻_c)`` off the positives and ``−α/#present · e⁺/(1 + S⁺_{y_i})`` at them,
    written over the exponentials; the backward pass is ``G·x̂`` and ``Gᵀ·P̂`` plus the normalisations'
    Jacobians.
    """

    @staticmethod
    def forward(ctx, x, proxies, ids, alpha, margin, sq_x, sq_p):
        num_classes, batch = proxies.shape[0], x.shape[0]
        xn, q, x_live = _unit(x, sq_x)
        pn, r, p_live = _unit(proxies, sq_p)
        cos = paddle.matmul(pn, xn, transpose_y=True)
        column = ids.reshape([1, -1])
        flat_ids = ids.reshape([-1])
        pos_cos = paddle.gather(cos.reshape([-1]), flat_ids * batch + paddle.arange(batch, dtype="int64"))
        e = inplace(inplace(cos, "scale", alpha, alpha * margin), "exp")
        e = inplace(e, "put_along_axis", column, paddle.zeros([1, batch], e.dtype), 0)
        s_neg = row_sum(e, keepdim=True)
        e_pos = paddle.exp((pos_cos - margin) * (-alpha))
        s_pos = paddle.zeros([num_classes], e.dtype).index_add_(flat_ids, 0, e_pos)
        counts = paddle.zeros([num_classes], e.dtype).index_add_(flat_ids, 0, paddle.ones([batch], e.dtype))
        present = (counts > 0).astype(e.dtype).sum()
        loss = paddle.log1p(s_pos).sum() / present + paddle.log1p(s_neg).sum() / num_classes
        grad = inplace(e, "multiply", (alpha / num_classes) / (1.0 + s_neg))
        at_pos = e_pos * (-alpha) / present / (1.0 + paddle.gather(s_pos, flat_ids))
        grad = inplace(grad, "put_along_axis", column, at_pos.reshape([1, -1]), 0)
        ctx.needs = (not x.stop_gradient, not proxies.stop_gradient)
        ctx.save_for_backward(grad, xn, q, x_live, pn, r, p_live)
        return loss

    @staticmethod
    def backward(ctx, upstream):
        grad, xn, q, x_live, pn, r, p_live = ctx.saved_tensor()
        g = float(upstream)
        if g != 1.0:
            grad = grad * g
        need_x, need_p = ctx.needs
        grad_x = _unit_grad(xn, q, x_live, paddle.matmul(grad, pn, transpose_x=True), 1) if need_x else None
        grad_p = _unit_grad(pn, r, p_live, paddle.matmul(grad, xn), 1) if need_p else None
        return grad_x, grad_p, None, None, None


def proxy_anchor(x, proxies, ids, alpha, margin):
    """ProxyAnchor loss (:class:`_ProxyAnchor`) of raw ``x [N, D]`` (N ≥ 1) and raw ``proxies [C, D]``, both
    normalised inside; ``ids`` int64 ``[N]`` in ``[0, C)``. The caller checks :func:`exp_is_safe`; None when a
    squared norm overflows, as :func:`margin_softmax_ce`. Half-precision ``x`` is computed in float32."""
    if x.dtype in (paddle.float16, paddle.bfloat16):
        x = x.astype("float32")
    sq_x, sq_p = _squared_norms(x, 1), _squared_norms(proxies, 1)
    if not _finite(sq_x, sq_p):
        return None
    return _ProxyAnchor.apply(x, proxies, ids.reshape([-1]), float(alpha), float(margin), sq_x, sq_p)
