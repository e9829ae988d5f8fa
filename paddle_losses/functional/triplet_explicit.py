"""Losses over explicit ``(anchor, positive, negative)`` rows, with the semantics of other frameworks.

Every function takes three ``[N, D]`` tensors whose row ``i`` forms triplet ``i``.

* :func:`triplet_margin_loss` -- ``torch.nn.TripletMarginLoss`` / ``paddle.nn.TripletMarginLoss``:
  ``d(x, y) = (Σ_j |x_j - y_j + eps|^p)^(1/p)`` (eps added to every component of the difference, so
  identical rows give ``eps·D^(1/p)`` and a finite gradient), ``l_i = max(0, margin + d(a,p) - d_neg)``,
  ``d_neg = d(a,n)`` or ``min(d(a,n), d(p,n))`` with ``swap``. Paddle's own ``F.triplet_margin_loss`` has
  exactly these semantics (checked against the torch golden cases, identical rows and float64 included),
  so it is used directly.
* :func:`triplet_margin_with_distance_loss` -- ``TripletMarginWithDistanceLoss``: the same hinge, swap
  and reductions over a user distance function; ``None`` means :func:`pairwise_distance` (p=2, eps=1e-6).
  Paddle's ``F.triplet_margin_with_distance_loss`` has exactly these semantics too (checked on the 9 torch
  golden cases), so it is used directly. (The *layer* ``paddle.nn.TripletMarginWithDistanceLoss`` of Paddle
  3.3.1 drops ``distance_function`` in its forward and always uses L2: use this function instead.)
* :func:`cosine_distance` -- ``1 - x·y / (max(‖x‖, eps) · max(‖y‖, eps))``: each norm clamped on its own
  (torch's ``cosine_similarity`` rule).
* :func:`optax_triplet_margin_loss` -- ``optax.losses.triplet_margin_loss``:
  ``d(x, y) = (Σ_j (x_j - y_j)^q + eps)^(1/q)``: eps inside the root, no ``abs``; per-example output,
  no reduction, no swap. ``q = 1`` is a signed sum (not the L1 norm); odd ``q`` with a negative sum gives
  NaN exactly as optax does.
* :func:`squared_l2_triplet_loss` -- the Keras/FaceNet-tutorial formula on squared Euclidean distances
  (no root, no eps): ``max(0, alpha + ‖a-p‖² - ‖a-n‖²)``.
"""
import paddle
import paddle.nn.functional as F

from .reduction import REDUCTIONS


def _check_reduction(reduction):
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")


def _apply_reduction(losses, reduction):
    _check_reduction(reduction)
    if reduction == "mean":
        return losses.mean()
    if reduction == "sum":
        return losses.sum()
    return losses


def pairwise_distance(x, y, p=2.0, eps=1e-6):
    """torch/paddle ``pairwise_distance``: ``(Σ_j |x_j - y_j + eps|^p)^(1/p)`` per row, shape ``[N]``."""
    return F.pairwise_distance(x, y, p=p, epsilon=eps)


def triplet_margin_loss(anchor, positive, negative, margin=1.0, p=2.0, eps=1e-6, swap=False, reduction="mean"):
    """``torch.nn.functional.triplet_margin_loss`` semantics (see module docstring); returns scalar or ``[N]``."""
    _check_reduction(reduction)
    return F.triplet_margin_loss(anchor, positive, negative, margin=margin, p=p, epsilon=eps, swap=swap,
                                 reduction=reduction)


def cosine_distance(x, y, eps=1e-8):
    """``1 - cos(x, y)`` per row with torch's per-norm clamp ``max(‖x‖, eps)``, shape ``[N]``."""
    nx = paddle.clip(paddle.linalg.norm(x, p=2, axis=-1), min=eps)
    ny = paddle.clip(paddle.linalg.norm(y, p=2, axis=-1), min=eps)
    return 1.0 - (x * y).sum(axis=-1) / (nx * ny)


def triplet_margin_with_distance_loss(anchor, positive, negative, distance_function=None, margin=1.0,
                                      swap=False, reduction="mean"):
    """``torch.nn.TripletMarginWithDistanceLoss`` semantics; ``distance_function(x, y) -> [N]``."""
    _check_reduction(reduction)
    return F.triplet_margin_with_distance_loss(anchor, positive, negative, distance_function=distance_function,
                                               margin=margin, swap=swap, reduction=reduction)


def optax_distance(x, y, norm_degree=2, eps=1e-6, axis=-1):
    """Optax's ``(Σ (x - y)^q + eps)^(1/q)`` (no abs, eps inside the root)."""
    s = paddle.pow(x - y, float(norm_degree)).sum(axis=axis)
    return paddle.pow(s + eps, 1.0 / norm_degree)


def optax_triplet_margin_loss(anchors, positives, negatives, norm_degree=2, margin=1.0, eps=1e-6, axis=-1):
    """``optax.losses.triplet_margin_loss``: per-example ``max(d(a,p) - d(a,n) + margin, 0)``, shape ``[N]``."""
    d_ap = optax_distance(anchors, positives, norm_degree, eps, axis)
    d_an = optax_distance(anchors, negatives, norm_degree, eps, axis)
    x = d_ap - d_an + margin
    # paddle.maximum keeps NaN (as jax's maximum does); F.relu would turn it into 0
    return paddle.maximum(x, paddle.zeros_like(x))


def squared_l2_triplet_loss(anchor, positive, negative, alpha=0.1, reduction="mean"):
    """Keras-tutorial triplet loss ``max(0, alpha + ‖a-p‖² - ‖a-n‖²)`` with ``reduction`` mean/sum/none."""
    pos = ((anchor - positive) ** 2).sum(axis=-1)
    neg = ((anchor - negative) ** 2).sum(axis=-1)
    return _apply_reduction(F.relu(alpha + pos - neg), reduction)
