"""Class-parallel heads (``class_parallel: true`` on FC, ArcMargin, CosMargin, CircleMargin, AdaMargin).

With ``W`` ranks, rank ``r`` holds the weight columns of a contiguous slice of the ``C`` classes
(:func:`paddle_losses.functional.sharded_ce.shard_bounds`: ``C // W`` each, the first ``C % W`` ranks one
more), so head memory per rank is ``D·C/W`` instead of ``D·C``. In the forward the head all-gathers the
embeddings and labels of every rank (rank order) and returns the logits of the global batch for its own
classes, ``[N_global, C_r]``, marked with a :class:`~paddle_losses.distributed.ClassShard`; CELoss then
computes the cross entropy of the full logits with a distributed log-sum-exp. The loss is the same on
every rank.

Gradients: the shard weight gets the full ``∂L/∂W_r`` on its rank and is kept out of ``DataParallel``'s
averaging (``no_sync``). The embeddings' gradient from one rank covers only its classes; the gather's
backward sums it over the ranks and multiplies this rank's rows by ``W``, so after ``DataParallel``
averages the backbone gradients they equal the single-process gradient on the global batch.

Initialisation: each rank draws its own columns from the distribution the full ``[D, C]`` weight would use,
from a seed taken from Paddle's global generator (the same on every rank after ``paddle.seed``) plus the
rank, so shards differ from each other; a single-process run with the same seed draws different numbers.
To continue from a single-process checkpoint, split it (:mod:`paddle_losses.heads.shards`).
"""
import numpy as np
import paddle
import paddle.nn as nn

from .. import distributed as pd_dist
from ..functional.sharded_ce import shard_bounds


def setup(head, class_num, class_parallel):
    """Set ``head.class_parallel``, ``head.class_start``, ``head.class_stop``; return the shard width."""
    head.class_parallel = bool(class_parallel)
    rank, world = pd_dist.world() if head.class_parallel else (0, 1)
    if head.class_parallel and class_num < world:
        raise ValueError(f"{type(head).__name__}: class_parallel needs at least one class per rank, got "
                         f"class_num={class_num} for {world} ranks")
    head.class_start, head.class_stop = shard_bounds(class_num, world, rank)
    head._agreed = False
    return head.class_stop - head.class_start


def shard_rng():
    """A numpy generator for this rank's shard initialisation (see the module docstring)."""
    seed = int(paddle.randint(0, 2 ** 31 - 1, [1]).numpy()[0])
    return np.random.RandomState((seed + 7919 * pd_dist.world()[0]) % (2 ** 32))


def xavier_normal_shard(embedding_size, class_num, width):
    """Assign-initializer for a ``[D, width]`` shard drawn like XavierNormal of the full ``[D, C]``."""
    std = float(np.sqrt(2.0 / (embedding_size + class_num)))
    values = shard_rng().normal(0.0, std, (embedding_size, width)).astype("float32")
    return nn.initializer.Assign(values)


def keep_out_of_data_parallel(*params):
    """Shards differ by rank: DataParallel must neither broadcast nor average them."""
    for p in params:
        if p is not None:
            p.no_sync = True


def gather_inputs(head, x, label):
    """Embeddings and labels of every rank (rank order); checks once that the ranks agree on the head."""
    if not head._agreed:
        pd_dist.check_same(f"{type(head).__name__}'s class_num and embedding_size",
                           [head.class_num, head.embedding_size])
        head._agreed = True
    named = [("embeddings", x)] + ([("label", label)] if isinstance(label, paddle.Tensor) else [])
    if pd_dist.world()[1] == 1:
        return x, label
    sizes = pd_dist.check_agreement(named)
    x = pd_dist.gather_rows(x, sizes[0], summed=True)
    if isinstance(label, paddle.Tensor):
        label = pd_dist.gather_rows(label, sizes[1])
    return x, label


def with_spare_column(cos, ids, head):
    """``cos`` with one extra zero column and the label ids made local: rows whose class another rank holds
    point at the spare column, so the margin step writes there and the caller drops it."""
    width = head.class_stop - head.class_start
    local = ids - head.class_start
    owned = paddle.logical_and(local >= 0, local < width)
    spare = paddle.zeros([cos.shape[0], 1], dtype=cos.dtype)
    return paddle.concat([cos, spare], axis=1), paddle.where(owned, local, paddle.full_like(local, width))


def mark(head, logits, ids=None):
    """Mark class-parallel logits (no-op for a plain head)."""
    if not head.class_parallel:
        return logits
    return pd_dist.mark_class_shard(logits, pd_dist.ClassShard(head.class_start, head.class_num, ids))
