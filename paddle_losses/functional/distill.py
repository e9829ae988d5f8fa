"""Tensor math shared by the knowledge-distillation losses (logit, feature and relational).

Each function reproduces the exact Paddle primitive chain PaddleClas uses, because parity at 1e-5 (and
which input receives a gradient) depends on it:

* :func:`kl_to_teacher` is ``F.kl_div(log_q, p, reduction="sum")``: ``Σ p·(log p − log q)``, entries with
  ``p = 0`` count 0, and ``p`` (the teacher side) never receives a gradient.
* :func:`soft_cross_entropy` is the plain product ``−Σ p·log q``: both sides receive a gradient.
* :func:`target_onehot` picks the ground truth or the teacher's argmax (first index on ties).
* :func:`pearson_rows` / :func:`cosine_rows` add ``eps`` to the product of the norms (DIST, MetaBIN).
* :func:`rkd_distances` / :func:`rkd_angles` are RKD's relational matrices; the distance keeps the noisy,
  clipped diagonal (it enters the mean in PaddleClas).
"""
import paddle
import paddle.nn.functional as F

from .pairwise import gram_euclidean


def kl_to_teacher(log_q, p):
    """``Σ p·(log p − log q)`` over every element; ``p`` is treated as a constant (no gradient)."""
    return F.kl_div(log_q, p.detach(), reduction="sum")


def soft_cross_entropy(p, log_q, axis=-1):
    """Per-row ``−Σ_c p·log q`` along ``axis`` (no stop-gradient on either side)."""
    return -(p * log_q).sum(axis=axis)


def target_onehot(labels, teacher_logits, num_classes, use_teacher=False):
    """One-hot float targets ``[N, C]``: the teacher's argmax when ``labels`` is None or ``use_teacher``.

    ``labels`` are int ``[N]`` or ``[N, 1]``; the argmax takes the first maximal index on ties.
    """
    if labels is None or use_teacher:
        labels = paddle.argmax(teacher_logits, axis=-1)
    return F.one_hot(labels.reshape([-1]), num_classes).astype(teacher_logits.dtype)


def cosine_rows(a, b, eps=1e-8):
    """Row-wise ``Σ a·b / (‖a‖·‖b‖ + eps)`` of two ``[N, D]`` matrices -> ``[N]``."""
    dot = (a * b).sum(axis=1)
    return dot / (paddle.linalg.norm(a, p=2, axis=1) * paddle.linalg.norm(b, p=2, axis=1) + eps)


def pearson_rows(a, b, eps=1e-8):
    """Row-wise Pearson correlation: :func:`cosine_rows` of the row-centred matrices -> ``[N]``."""
    return cosine_rows(a - a.mean(axis=1, keepdim=True), b - b.mean(axis=1, keepdim=True), eps)


def pool_flatten(x, target_size):
    """Adaptive-average-pool a ``[N, C, H, W]`` map to ``target_size`` (None: no pooling), flatten to ``[N, -1]``."""
    if target_size is not None:
        x = F.adaptive_avg_pool2d(x, target_size)
    return x.reshape([x.shape[0], -1])


def rkd_distances(e, clip=1e-12):
    """``sqrt(max(‖e_i‖² + ‖e_j‖² − 2 e_i·e_j, clip))`` for all pairs, diagonal not zeroed ``[N, N]``."""
    return gram_euclidean(e, clip=clip)


def rkd_angles(e):
    """Cosines of the angles ``∠(e_j − e_i, e_k − e_i)`` for all triples, as an ``[N, N, N]`` tensor.

    Difference vectors are normalised with ``F.normalize`` (``max(‖d‖, 1e-12)``), so pairs with ``j = i`` or
    ``k = i`` give 0.
    """
    d = e.unsqueeze(0) - e.unsqueeze(1)  # d[i, j] = e_j - e_i
    u = F.normalize(d, p=2, axis=2)
    return paddle.bmm(u, u.transpose([0, 2, 1]))

