"""Pairwise similarity and distance matrices, each from a single matmul.

Shapes: ``x`` is ``[N, D]``, ``y`` is ``[M, D]`` (defaults to ``x``); results are ``[N, M]``.
"""
import paddle


def dot_similarity(x, y=None):
    """``S = x · yᵀ``: the cosine similarity when rows are unit-normalised."""
    return paddle.matmul(x, x if y is None else y, transpose_y=True)


def squared_euclidean(x, y=None, zero_diagonal=None):
    """``q_ij = ||x_i - y_j||²`` via ``||x||² + ||y||² - 2 x·y``, clamped at 0.

    Equals the explicit sum of squared differences up to rounding. With ``y`` omitted the diagonal is set to
    exactly 0 (as the explicit difference form gives) unless ``zero_diagonal=False``.
    """
    same = y is None
    y = x if same else y
    xx = (x * x).sum(axis=1, keepdim=True)
    yy = xx if same else (y * y).sum(axis=1, keepdim=True)
    q = xx + yy.t() - 2.0 * paddle.matmul(x, y, transpose_y=True)
    q = paddle.clip(q, min=0.0)
    if (same if zero_diagonal is None else zero_diagonal):
        n = x.shape[0]
        q = q * (1.0 - paddle.eye(n, dtype=q.dtype))
    return q


def gram_euclidean(x, y=None, clip=1e-12):
    """PaddleClas's ``E(x)``: ``sqrt(max(||x_i||² + ||y_j||² - 2 x_i·y_j, clip))``.

    The clip keeps the square root differentiable on the diagonal; its gradient is zero where it is active,
    exactly as PaddleClas's ``addmm`` + ``clip`` + ``sqrt`` chain.
    """
    y = x if y is None else y
    xx = (x * x).sum(axis=1, keepdim=True)
    yy = (y * y).sum(axis=1, keepdim=True)
    d2 = xx + yy.t() - 2.0 * paddle.matmul(x, y, transpose_y=True)
    return paddle.sqrt(paddle.clip(d2, min=clip))
