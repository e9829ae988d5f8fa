"""``x̂ · (W / ‖W‖_columns)`` for a class weight ``W [D, C]`` without any temporary of the weight's size.

The margin heads' cosine normalises every class column of the weight and multiplies. Written with autograd,
that makes several ``[D, C]`` tensors per step (the normalised weight, its gradient, the squares and their
gradient), each as large as ``D / N`` logit matrices: with 65,536 classes, ``D = 512`` and a batch of 64 they
cost more time than the matmul itself and eight ``[N, C]`` matrices of memory apiece. With
``r_c = (Σ_d W_dc²)^(-1/2)`` and ``P = x̂·W``::

    cos = P · r                                   (column scale of the [N, C] product)
    ∂/∂x̂ = (G·r) · Wᵀ
    ∂/∂W = x̂ᵀ · (G·r) − W · diag(r² · Σ_i G_ic · cos_ic)

The second term of ``∂/∂W`` is added into the first in blocks of rows, and the column norms are summed the
same way, so the only ``[D, C]`` tensor ever made is the weight's gradient. Column sums are products with a
row of ones and the column scale is tiled to a block: Paddle's CPU kernels for ``sum(axis=0)`` and for a
broadcast along rows are many times slower than a matrix-vector product and a same-shape multiply. Values equal
``x̂ · (W · r)`` to rounding (the scale is applied after the product instead of before).
"""
import paddle
from paddle.autograd import PyLayer

from .inplace import inplace
from .reduction import column_sum


def _row_blocks(rows, block):
    return [(start, min(start + block, rows)) for start in range(0, rows, block)]


def _column_sq_norms(weight, block):
    """``Σ_d W_dc²`` as ``[C]``, squaring ``block`` rows at a time (no ``[D, C]`` temporary)."""
    total = None
    for start, stop in _row_blocks(weight.shape[0], block):
        part = column_sum(paddle.square(weight[start:stop]))
        total = part if total is None else inplace(total, "add", part)
    return total


def _subtract_column_scaled(grad_w, weight, coef, block):
    """``grad_w -= W · diag(coef)`` in place, ``block`` rows at a time.

    A ``[rows, C] × [1, C]`` broadcast multiply is 2.4 times slower on Paddle's CPU than the same product of
    two ``[rows, C]`` tensors, so ``coef`` is tiled to one block once and reused; the row slices are views,
    and the in-place subtraction writes through them into ``grad_w``.
    """
    tiled = paddle.tile(coef, [min(block, weight.shape[0]), 1])
    for start, stop in _row_blocks(weight.shape[0], block):
        rows = stop - start
        factor = tiled if rows == tiled.shape[0] else tiled[:rows]
        grad_w[start:stop].subtract_(weight[start:stop] * factor)


class _ColumnNormalizedMatmul(PyLayer):
    @staticmethod
    def forward(ctx, xn, weight, block):
        # 1-D: Paddle's CPU broadcast of a [C] vector over [N, C] is faster than of a [1, C] row
        r = paddle.rsqrt(_column_sq_norms(weight, block))
        cos = inplace(paddle.matmul(xn, weight), "multiply", r)
        ctx.block = block
        ctx.needs_grad = (not xn.stop_gradient, not weight.stop_gradient)
        ctx.save_for_backward(xn, weight, r, cos)
        return cos

    @staticmethod
    def backward(ctx, grad):
        xn, weight, r, cos = ctx.saved_tensor()
        need_x, need_w = ctx.needs_grad
        g = grad * r
        grad_x = paddle.matmul(g, weight, transpose_y=True) if need_x else None
        if not need_w:
            return grad_x, None
        grad_w = paddle.matmul(xn, g, transpose_x=True)
        # Σ_i G_ic·cos_ic (cos is the caller's output tensor too: not overwritten)
        coef = inplace(column_sum(grad * cos), "multiply", paddle.square(r)).reshape([1, -1])
        _subtract_column_scaled(grad_w, weight, coef, ctx.block)
        return grad_x, grad_w


def column_normalized_matmul(xn, weight):
    """``xn · (W / ‖W‖)`` with each column ``W[:, c]`` divided by its plain L2 norm (no epsilon): ``[N, C]``.

    ``xn [N, D]`` (any tensor; the heads pass the normalised embeddings), ``weight [D, C]``. Gradients reach
    both; not differentiable twice.
    """
    if not paddle.in_dynamic_mode():
        # Tracing: the plain formula (block slicing and item assignment are eager-mode tools).
        sq = paddle.square(weight).sum(axis=0, keepdim=True)
        return paddle.matmul(xn, weight * paddle.rsqrt(sq))
    # Blocks of about half a logit matrix [N, C]: the temporaries stay below the product's own size.
    block = max(1, min(weight.shape[0], xn.shape[0] // 2))
    return _ColumnNormalizedMatmul.apply(xn, weight, block)
