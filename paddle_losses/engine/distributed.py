"""Multi-process helpers of the trainer: rank/world size, process-group start, eval gathers, buffers.

``Global.gather_embeddings: True`` is the global form of a loss entry's ``gather: true``: the trainer
gathers the model outputs and labels of all ranks once (:func:`gather_batch`, from
:mod:`paddle_losses.distributed`, whose docstring gives the gradient scaling) and every loss sees the
global batch.
"""
import paddle
import paddle.distributed as dist

from ..distributed import gather_batch, global_batch, world  # noqa: F401  (re-exported for the trainer)


def init_if_needed():
    """Initialise the process group when launched with several trainers; returns the world size."""
    n = dist.get_world_size()
    if n > 1 and not dist.is_initialized():
        dist.init_parallel_env()
    return n


def all_gather_array(x):
    """Concatenate a tensor from every rank (no gradient); used to collect eval features."""
    n = dist.get_world_size()
    if n == 1:
        return x
    parts = []
    dist.all_gather(parts, x)
    return paddle.concat(parts, axis=0)


def broadcast_buffers(layer, src=0):
    """Copy rank ``src``'s buffers (BatchNorm running statistics) to every rank.

    Data parallelism averages gradients but not buffers, so each rank's BatchNorm statistics follow its own
    batches; before evaluating sharded data every rank must use the same model.
    """
    if dist.get_world_size() == 1:
        return
    # BatchNorm's running mean/variance are non-trainable parameters in Paddle, not buffers
    for value in layer.state_dict().values():
        if value.stop_gradient:
            dist.broadcast(value, src=src)
