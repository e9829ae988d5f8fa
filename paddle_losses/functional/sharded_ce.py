"""Cross entropy over class-sharded logits: each of ``W`` ranks holds the columns ``[start, stop)`` of ``C``.

Split rule (:func:`shard_bounds`): rank ``r`` holds ``C // W`` classes, plus one more when ``r < C % W``;
shards are contiguous and in rank order (``C = 10, W = 4``: 3, 3, 2, 2 classes at 0, 3, 6, 8).

Math, for the logits ``z [N, C]`` of the global batch, of which this rank holds ``z[:, start:stop]``:

* ``m_i = max_j z_ij`` (all-reduce MAX of the shards' row maxima), ``s_i = Σ_j exp(z_ij − m_i)``
  (all-reduce SUM), ``lse_i = m_i + log s_i`` -- the distributed log-sum-exp;
* ``z_{i,y_i}`` from the shard that owns ``y_i`` (all-reduce SUM of the owners' picks, 0 elsewhere);
* hard labels: ``ℓ_i = lse_i − z_{i,y_i}``; id ``-100`` gives ``ℓ_i = 0`` (as the single-process CELoss);
* label smoothing ``ε``: ``t = (1 − ε)·onehot + ε/C``, ``ℓ_i = lse_i − (1 − ε)·z_{i,y_i} − (ε/C)·Σ_j z_ij``
  (the row sum all-reduced too).

Every rank gets the same ``ℓ``. Backward is local: ``∂ℓ_i/∂z_ij = softmax(z)_ij − t_ij`` for this rank's
columns, with the softmax ``exp(z − lse)`` of the saved shard. Communication per step: three (four with
``ε``) all-reduces of ``[N]`` vectors; memory: the ``[N, C/W]`` shard softmax.
"""
import paddle
import paddle.distributed as dist
from paddle.autograd import PyLayer

IGNORE_INDEX = -100


def shard_bounds(class_num, world, rank):
    """``(start, stop)`` of rank ``rank``'s classes when ``class_num`` classes are split over ``world`` ranks."""
    base, extra = divmod(int(class_num), int(world))
    start = rank * base + min(rank, extra)
    return start, start + base + (1 if rank < extra else 0)


def _all_reduce(t, op):
    if dist.get_world_size() > 1:
        from ..distributed import collective  # a dead peer is reported by rank
        collective(dist.all_reduce, t, op=op)
    return t


class _ShardedCE(PyLayer):
    @staticmethod
    def forward(ctx, z, ids, start, class_num, epsilon):
        width = z.shape[1]
        m = _all_reduce(z.max(axis=1, keepdim=True).detach(), dist.ReduceOp.MAX)
        e = paddle.exp(z - m)
        s = _all_reduce(e.sum(axis=1, keepdim=True), dist.ReduceOp.SUM)
        lse = m + paddle.log(s)
        local = ids - start
        owned = paddle.logical_and(local >= 0, local < width)
        onehot = paddle.nn.functional.one_hot(paddle.where(owned, local, paddle.zeros_like(local)).squeeze(1),
                                              width).astype(z.dtype) * owned.astype(z.dtype)
        picked = _all_reduce((z * onehot).sum(axis=1, keepdim=True), dist.ReduceOp.SUM)
        valid = (ids != IGNORE_INDEX).astype(z.dtype)
        if epsilon:
            row_sum = _all_reduce(z.sum(axis=1, keepdim=True), dist.ReduceOp.SUM)
            rows = lse - (1.0 - epsilon) * picked - (epsilon / class_num) * row_sum
            target = (1.0 - epsilon) * onehot + epsilon / class_num
        else:
            rows = (lse - picked) * valid
            target = onehot
        ctx.save_for_backward(e / s, target, valid)
        return rows.squeeze(1)

    @staticmethod
    def backward(ctx, grad):
        p, target, valid = ctx.saved_tensor()
        return (grad.unsqueeze(1) * valid) * (p - target)


def sharded_cross_entropy_rows(z, ids, start, class_num, epsilon=None):
    """Per-row cross entropy ``ℓ [N]`` of the global logits from this rank's shard ``z [N, stop − start]``.

    Args:
        z: this rank's logit columns ``[start, stop)`` for all ``N`` rows of the global batch.
        ids: int64 class ids ``[N, 1]`` of the global batch (``-100`` ignored without smoothing).
        start: first class of the shard. class_num: ``C``, all shards together.
        epsilon: label smoothing factor in (0, 1), or None.
    """
    return _ShardedCE.apply(z, ids.astype("int64"), int(start), int(class_num), float(epsilon or 0.0))
