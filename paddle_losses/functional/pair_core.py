"""Pair losses as functions of the similarity matrix of unit rows, with their gradient in closed form.

With their default distances, the pytorch-metric-learning pair losses read the embeddings only through
``S = x̂·x̂ᵀ`` (``x̂`` = L2-normalised rows): cosine similarity is ``S`` and the L2 distance between unit
rows is ``d = sqrt(max(2 − 2S, 0))``. Autograd over such a loss keeps every ``[N, N]`` intermediate
(shifted logits, exponentials, masked copies, hinges) and walks each one back. Here a *head* -- a function
of ``S`` written for one loss (:mod:`.pair_heads`) -- computes the loss value and ``G = ∂L/∂S`` together in
the forward pass, in a few in-place passes over ``S``'s buffer (masks are float multipliers, reductions run
along rows); the backward pass is then one matmul::

    ∂L/∂x̂ = (G + Gᵀ)·x̂        (2·G·x̂ when G is symmetric)

and the normalisation ``x → x̂`` stays on the autograd tape, so the gradient's component along ``x̂`` (which
``2 − 2S`` drops, against the ``‖x̂_i‖² + ‖x̂_j‖² − 2S`` of ``LpDistance``) is removed there as before.

A head is called as ``head(s)`` with ``s`` the ``[N, N]`` similarity buffer, which it owns and may overwrite,
and returns ``(value, grad, symmetric)``: the loss as a 0-d tensor, ``G`` and whether ``G = Gᵀ``.
"""
import paddle
from paddle.autograd import PyLayer

from .inplace import fill_diagonal
from .reduction import AvgNonZeroReducer, MeanReducer, SumReducer

# Reducers whose value and per-element weights the heads compute themselves (see reducer_scale).
CORE_REDUCERS = (MeanReducer, AvgNonZeroReducer, SumReducer)

# Added to masked-out entries before a row maximum: far beyond any logit a head forms from |S| <= 1.
MASKED = 1e30


class _SimilarityCore(PyLayer):
    @staticmethod
    def forward(ctx, unit_rows, head):
        s = paddle.matmul(unit_rows, unit_rows, transpose_y=True)
        value, grad, symmetric = head(s)
        ctx.save_for_backward(unit_rows, grad)
        ctx.symmetric = symmetric
        return value

    @staticmethod
    def backward(ctx, grad_value):
        unit_rows, grad = ctx.saved_tensor()
        if ctx.symmetric:
            return paddle.matmul(grad, unit_rows) * (2.0 * grad_value)
        # G + Gᵀ into a new buffer: adding a transposed view of G into G itself would read overwritten entries
        return paddle.matmul(grad + grad.t(), unit_rows) * grad_value


def similarity_loss(unit_rows, head):
    """The value of ``head`` (see module docstring) on ``S = unit_rows · unit_rowsᵀ``, differentiable in
    ``unit_rows`` ``[N, D]`` through the head's closed-form ``∂L/∂S``."""
    return _SimilarityCore.apply(unit_rows, head)


def outer_sum(a, b):
    """``[a_i + b_j]`` (``[N, M]``) as a matmul ``[a, 1]·[1, b]ᵀ`` of inner size 2: one rounding per entry, like
    ``a.reshape([-1, 1]) + b.reshape([1, -1])``, but Paddle's CPU broadcast along the first axis costs several
    passes (5 ms against 1 at 1024², one thread)."""
    left = paddle.stack([a, paddle.ones_like(a)], axis=1)
    right = paddle.stack([paddle.ones_like(b), b], axis=0)
    return paddle.matmul(left, right)


# Class ids up to this value are exact in float32, so their differences are exact integers.
_EXACT_IDS = 2 ** 24


def float_pair_masks(labels, dtype):
    """``(pos, neg)`` float ``[N, N]`` 0/1 masks of a :class:`~.mining.targets.PairLabels` (the diagonal in
    neither), for multiplying into a head's matrices.

    Class ids within ``±2^24`` go through ``neg = min(|y_i − y_j|, 1)`` (exact integer differences from
    :func:`outer_sum`): a third of the passes of an equality matrix cast to floats.
    """
    if labels.are_class_ids:
        ids = labels.ids
        if ids.shape[0] > 0 and int(paddle.abs(ids).max()) < _EXACT_IDS:
            y = ids.astype(dtype)
            neg = outer_sum(y, -y).abs_().clip_(max=1.0)
        else:
            neg = (ids.reshape([-1, 1]) != ids.reshape([1, -1])).astype(dtype)
        return fill_diagonal(paddle.scale(neg, -1.0, 1.0), 0.0), neg
    pos, neg = labels.masks()
    return pos.astype(dtype), neg.astype(dtype)


def indicator(values):
    """``[values > 0]`` as 0/1 floats, in place, for ``values >= 0`` (clip to [0, 1], round up)."""
    return values.clip_(0.0, 1.0).ceil_()


def reducer_scale(reducer, count_valid, count_positive=None):
    """``1 / #counted`` of a core reducer as a Python float: the valid elements (``MeanReducer``), those
    that are also ``> 0`` (``AvgNonZeroReducer``), or ``1`` (``SumReducer``). A count of 0 gives 1: the
    counted elements' total is 0 then, as the reducers' own ``0 · total``. A float, not a 0-d tensor:
    Paddle's CPU kernels broadcast a 0-d operand over ``[N, N]`` at several times the cost of ``scale_``."""
    if isinstance(reducer, SumReducer):
        return 1.0
    count = count_positive if isinstance(reducer, AvgNonZeroReducer) else count_valid
    return 1.0 / max(float(count), 1.0)


def unit_distance(s):
    """``(d, q)`` from ``S`` (overwritten): ``q = max((S_ii + S_jj) − 2S_ij, 0)``, the squared L2 distance of
    unit rows in ``LpDistance``'s order of operations, and ``d = sqrt(q)``. Exactly 0 on the diagonal and,
    where the matmul gives bit-identical dot products, between duplicate rows (``2 − 2S`` would leave the
    rounding noise of ``S_ii ≠ 1`` there, and its square root, about 1e-8 in float64, would count as a
    distance)."""
    norms = paddle.diagonal(s).clone()
    q = outer_sum(norms, norms).subtract_(s.scale_(2.0)).clip_(min=0.0)
    return paddle.sqrt(q), q


def inverse_distance(d, q):
    """``1/d`` where ``d > 0`` and 0 where ``d = 0`` (``LpDistance``'s zero gradient there), in ``q``'s buffer:
    ``d / (q + tiny)``."""
    return q.scale_(1.0, float(paddle.finfo(q.dtype).tiny)).reciprocal_().multiply_(d)


def exponent_limit(dtype):
    """Largest exponent a head may form without a per-row shift: ``e^{±limit}`` and ``N`` times it stay
    normal numbers in ``dtype`` (float32: 60, float64: 600)."""
    return 600.0 if dtype == paddle.float64 else 60.0
