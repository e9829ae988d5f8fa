"""Triplet hinge losses over mined triplets, in O(N²) memory even for "all triplets".

The hinge ``l = relu(u_ap - u_an + margin)`` (``u`` = distance, or negated similarity) is, for a fixed
positive pair ``(a, p)``, a piecewise-linear function of the negative's ``u_an``. When the negatives of
every anchor are sorted once (``N log N`` per row), the triplets ``(a, p, ·)`` inside a window
``lo < u_an <= hi`` (see ``functional.mining.selections.TripletWindow``) and with a positive loss
``u_an < u_ap + margin`` form one contiguous run of that order. Prefix sums then give, per pair,

* the number of mined triplets, the number with ``l > 0``,
* ``Σ l = k · (u_ap + margin) - (S[end] - S[start])``,

so the loss, its mean / mean-over-non-zero, and the exact gradient (through sort, cumsum and gathers) come
without materialising the ``O(N³)`` triplets. Prefix sums are accumulated in float64 to avoid cancellation.

Anything that is not such a window-of-one-hinge (softplus ``smooth_loss``, ``swap``, a miner whose distance
differs from the loss's) uses :func:`explicit_triplet_losses` on index vectors.
"""
import paddle
import paddle.nn.functional as F

from .mining.selections import count_below, window_bounds


def windowed_triplet_totals(u, window, margin):
    """``(total, count, count_positive)`` of ``relu(u_ap - u_an + margin)`` over the window's triplets.

    ``u`` must be the (differentiable) matrix the window was mined on, in "smaller is closer" form.
    """
    with paddle.no_grad():
        perm, c_lo, c_hi = window_bounds(window)
        n_neg = window.neg.astype("int64").sum(axis=1, keepdim=True)
        keyed = paddle.where(window.neg, window.u, paddle.full_like(window.u, float("inf")))
        sorted_keys = paddle.take_along_axis(keyed, perm, axis=1)
        c_loss = count_below(sorted_keys, n_neg, window.u + margin)  # negatives with a positive hinge
        c_end = paddle.maximum(paddle.minimum(c_hi, c_loss), c_lo)
        n_active = (c_end - c_lo).astype("float64")
        n_mined = (c_hi - c_lo).astype("float64")
    wide = u.astype("float64")
    sorted_neg = paddle.take_along_axis(paddle.where(window.neg, wide, paddle.zeros_like(wide)), perm, axis=1)
    prefix = paddle.concat([paddle.zeros([u.shape[0], 1], dtype="float64"), paddle.cumsum(sorted_neg, axis=1)],
                           axis=1)
    run_sum = paddle.take_along_axis(prefix, c_end, axis=1) - paddle.take_along_axis(prefix, c_lo, axis=1)
    per_pair = n_active * (wide + margin) - run_sum
    per_pair = paddle.where(n_active > 0, per_pair, paddle.zeros_like(per_pair))
    total = per_pair.sum().astype(u.dtype)
    return total, n_mined.sum().astype(u.dtype), n_active.sum().astype(u.dtype)


def explicit_triplet_losses(u, a, p, n, margin, swap=False, smooth_loss=False):
    """Per-triplet PML hinge on index vectors: ``relu`` (or ``softplus``) of ``u_ap - u_an + margin``,
    with ``u_an := min(u_an, u_pn)`` under ``swap``. Shape ``[T]``."""
    u_ap = paddle.gather_nd(u, paddle.stack([a, p], axis=1))
    u_an = paddle.gather_nd(u, paddle.stack([a, n], axis=1))
    if swap:
        u_an = paddle.minimum(u_an, paddle.gather_nd(u, paddle.stack([p, n], axis=1)))
    x = u_ap - u_an + margin
    return F.softplus(x) if smooth_loss else F.relu(x)
