"""Multi-process helpers: rank/world size, and the embedding gather for global-batch mining.

With ``Global.gather_embeddings: True`` every rank concatenates the model outputs and labels of all ranks
before the loss, so hardest-negative mining sees the global batch. Only the local slice carries gradient
(the other ranks' slices are constants here and get their gradient on their own rank). Each rank then
computes the same global loss; ``DataParallel`` averages parameter gradients over ranks, so the trainer
multiplies the backward loss by the world size to recover the gradient of the global loss.
"""
import paddle
import paddle.distributed as dist


def world():
    """``(rank, world_size)`` as seen by ``paddle.distributed`` (``(0, 1)`` in a plain process)."""
    return dist.get_rank(), dist.get_world_size()


def init_if_needed():
    """Initialise the process group when launched with several trainers; returns the world size."""
    n = dist.get_world_size()
    if n > 1 and not dist.is_initialized():
        dist.init_parallel_env()
    return n


def all_gather_with_grad(x):
    """Concatenate ``x`` from every rank along axis 0; the local part keeps its gradient.

    All ranks must pass the same shape (the identity samplers give every rank full batches).
    """
    n = dist.get_world_size()
    if n == 1:
        return x
    parts = []
    dist.all_gather(parts, x.detach())
    parts[dist.get_rank()] = x
    return paddle.concat(parts, axis=0)


def gather_batch(out, labels):
    """Gather every tensor of the model-output dict (or the tensor) and the labels from all ranks."""
    if isinstance(out, dict):
        out = {k: (all_gather_with_grad(v) if isinstance(v, paddle.Tensor) else v) for k, v in out.items()}
    else:
        out = all_gather_with_grad(out)
    return out, all_gather_with_grad(labels)


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
