"""Cross-rank losses: :func:`gathered` makes any ``loss(input, labels)`` see the global batch of W ranks.

On each of ``W`` ranks the wrapped loss receives every tensor of its input (the tensor, or each tensor of
the model-output dict) and the labels all-gathered in rank order, so its miner pairs rows of different
ranks and its cross-batch memory enqueues the global batch (every rank's memory stays identical). The
loss value on every rank is the loss ``L`` of the global batch.

Gradient. Rank ``r``'s own rows ``x_r`` enter the global batch with their gradient; the other ranks' rows
are constants there. Every rank evaluates the same function ``L`` of the same global batch, so the
gradient that reaches ``x_r`` on rank ``r`` is already the full ``dL/dx_r`` -- no communication is needed
in backward. The gather's backward multiplies it by ``W``: rank ``r``'s parameter gradient is then
``W · dL/dx_r · dx_r/dθ``, ``paddle.DataParallel`` averages over ranks (divides the sum by ``W``), and
every parameter gradient equals the single-process gradient of ``L`` on the global batch. Parameters inside
the loss itself (CenterLoss centers, a head inside a loss) get ``dL/dθ`` on every rank, identical, so the
average keeps it. This requires the loss to be the same function on every rank: a loss that draws random
numbers must be seeded identically on every rank.

Ranks may hold different batch sizes (a short last batch): rows are padded to the largest batch for the
collective and trimmed after it. Every other property -- the number of input tensors, the dict keys,
each tensor's trailing shape and dtype, the label dtype -- is compared across ranks first, and a mismatch
raises :class:`~paddle_losses.errors.InputError` on every rank naming it (every rank sees the same
gathered description, so all of them raise; none hangs in a later collective).

With ``W = 1`` the gather is the identity and the wrapped loss is the plain loss.
"""
import contextlib
import re
import zlib

import paddle
import paddle.distributed as dist
from paddle.autograd import PyLayer

from .errors import InputError

_DTYPES = ("float32", "float64", "float16", "bfloat16", "int64", "int32", "int16", "int8", "uint8", "bool")
_MAX_DIMS = 6
_META = 3 + _MAX_DIMS  # batch, ndim, dtype code, trailing dims padded with -1
_GLOBAL = {"active": False}


def world():
    """``(rank, world_size)`` as seen by ``paddle.distributed`` (``(0, 1)`` in a plain process)."""
    return dist.get_rank(), dist.get_world_size()


class LostRankError(RuntimeError):
    """A collective failed because another rank went away (its process exited or its machine is unreachable)."""


def collective(fn, *args, **kwargs):
    """Run one ``paddle.distributed`` collective; a peer that died raises :class:`LostRankError` naming it.

    gloo notices a closed connection at once (about a second at most), so the surviving ranks stop with
    this message instead of waiting; the message keeps gloo's own text.
    """
    try:
        return fn(*args, **kwargs)
    except RuntimeError as exc:
        text = str(exc)
        peer = re.search(r"pair_rank\s*=\s*(\d+)", text)
        if peer is None and "gloo" not in text.lower() and "connection" not in text.lower():
            raise
        who = f"rank {peer.group(1)}" if peer else "another rank"
        raise LostRankError(f"rank {dist.get_rank()} lost contact with {who} during {fn.__name__}: it exited or "
                            f"its machine is unreachable; look at that rank's log for the first error. "
                            f"(gloo: {text.strip().splitlines()[-1][:300]})") from None


def _dtype_name(t):
    return str(t.dtype).replace("paddle.", "")


def _meta_row(t):
    name = _dtype_name(t)
    if t.ndim < 1 or t.ndim > _MAX_DIMS + 1:
        raise InputError(f"gather: tensors must have 1 to {_MAX_DIMS + 1} dimensions (batch first), got shape "
                         f"{list(t.shape)}")
    dims = list(t.shape[1:]) + [-1] * (_MAX_DIMS - (t.ndim - 1))
    return [int(t.shape[0]), t.ndim, _DTYPES.index(name) if name in _DTYPES else len(_DTYPES)] + dims


def _all_gather_int(values):
    """All-gather a small int64 vector (same length on every rank); returns a list of lists, rank order."""
    parts = []
    collective(dist.all_gather, parts, paddle.to_tensor(values, dtype="int64"))
    return [p.numpy().tolist() for p in parts]


def _describe(row):
    ndim, code = row[1], row[2]
    dtype = _DTYPES[code] if code < len(_DTYPES) else "another dtype"
    return f"[{row[0]}, " + ", ".join(str(d) for d in row[3:3 + ndim - 1]) + f"] {dtype}"


def check_agreement(named):
    """Compare ``[(name, tensor)]`` across ranks; return every rank's batch size per tensor.

    Raises :class:`InputError` on every rank when the ranks disagree on the names, a trailing shape or a
    dtype. Batch sizes may differ; the tensors of one rank must share their batch size.
    """
    names = "|".join(n for n, _ in named)
    heads = _all_gather_int([len(named), zlib.crc32(names.encode())])
    if any(h != heads[0] for h in heads):
        raise InputError(f"gather: the ranks pass different inputs to the loss (tensor count / keys per rank: "
                         f"{[h[0] for h in heads]}; this rank: {names}); every rank must call the loss with the "
                         f"same model-output keys")
    rows = _all_gather_int([v for _, t in named for v in _meta_row(t)])
    sizes = []
    for i, (name, _) in enumerate(named):
        per_rank = [r[i * _META:(i + 1) * _META] for r in rows]
        ref = per_rank[0]
        for rank, row in enumerate(per_rank):
            if row[1:] != ref[1:]:
                what = "dtype" if row[1] == ref[1] and row[3:] == ref[3:] else "feature size"
                raise InputError(f"gather: the ranks disagree on the {what} of {name!r}: rank 0 has "
                                 f"{_describe(ref)}, rank {rank} has {_describe(row)}; every rank must pass "
                                 f"the same trailing shape and dtype (only the batch size may differ)")
        sizes.append([row[0] for row in per_rank])
    for rank in range(len(rows)):
        if len({s[rank] for s in sizes}) > 1:
            raise InputError(f"gather: on rank {rank} the loss inputs have different batch sizes "
                             f"{dict((n, s[rank]) for (n, _), s in zip(named, sizes))}")
    return sizes


class _GatherRows(PyLayer):
    """All-gather rows in rank order; backward: this rank's rows of the incoming gradient (summed over the
    ranks first when ``summed``) times ``scale``."""

    @staticmethod
    def forward(ctx, x, sizes, rank, scale, summed=False):
        top = max(sizes)
        n = sizes[rank]
        padded = x if n == top else paddle.concat(
            [x, paddle.zeros([top - n] + list(x.shape[1:]), dtype=x.dtype)], axis=0)
        parts = []
        collective(dist.all_gather, parts, padded)
        ctx.start, ctx.n, ctx.scale, ctx.summed = sum(sizes[:rank]), n, scale, summed
        return paddle.concat([p[:s] for p, s in zip(parts, sizes)], axis=0)

    @staticmethod
    def backward(ctx, grad):
        if ctx.summed:
            grad = grad.clone()
            collective(dist.all_reduce, grad)
        mine = grad[ctx.start:ctx.start + ctx.n]
        return mine * ctx.scale if ctx.scale != 1 else mine


def gather_rows(x, sizes, scale=None, summed=False):
    """Concatenate ``x`` of every rank (``sizes``: rows per rank, from :func:`check_agreement`).

    Floating tensors that need a gradient keep it for this rank's rows, multiplied by ``scale`` (default
    ``W``); other tensors are gathered as constants. ``summed``: the gradient of the gathered rows differs
    between ranks (each rank's loss sees only its part, as with class-sharded heads) and is summed over the
    ranks before this rank's rows are taken.
    """
    rank, w = world()
    if w == 1:
        return x
    if x.stop_gradient or not paddle.is_floating_point(x):
        with paddle.no_grad():
            return _GatherRows.apply(x, sizes, rank, 1).detach()
    return _GatherRows.apply(x, sizes, rank, float(w) if scale is None else float(scale), summed)


def gather_batch(input, labels):
    """Gather every tensor of ``input`` (a tensor or a dict of tensors) and ``labels`` from all ranks.

    Tensors are matched by key; non-tensor values pass through. The ranks' agreement is checked first.
    """
    if world()[1] == 1:
        return input, labels
    def wanted(v):
        # class-sharded logits already hold the rows of every rank
        return isinstance(v, paddle.Tensor) and class_shard(v) is None

    named = []
    if isinstance(input, dict):
        named = [(str(k), v) for k, v in input.items() if wanted(v)]
    elif wanted(input):
        named = [("features", input)]
    if isinstance(labels, paddle.Tensor):
        named.append(("labels", labels))
    sizes = check_agreement(named)
    out = iter(gather_rows(t, s) for (_, t), s in zip(named, sizes))
    if isinstance(input, dict):
        input = {k: (next(out) if wanted(v) else v) for k, v in input.items()}
    elif wanted(input):
        input = next(out)
    if isinstance(labels, paddle.Tensor):
        labels = next(out)
    return input, labels


@contextlib.contextmanager
def global_batch():
    """Inside this block the caller has already gathered the batch: :func:`gathered` losses do not gather
    again (the trainer's ``Global.gather_embeddings`` form)."""
    before = _GLOBAL["active"]
    _GLOBAL["active"] = True
    try:
        yield
    finally:
        _GLOBAL["active"] = before


def _gather_hook(layer, args):
    if _GLOBAL["active"] or world()[1] == 1 or not args:
        return None
    input, rest = args[0], args[1:]
    labels, rest = (rest[0], rest[1:]) if rest else (None, ())
    input, labels = gather_batch(input, labels)
    return (input,) + ((labels,) if labels is not None else ()) + tuple(rest)


def gathered(loss):
    """Make ``loss`` (any layer called as ``loss(input, labels)``) compute the loss of the global batch.

    Installs a forward pre-hook on ``loss`` and returns the same layer, so its class, registry name and
    state-dict keys are unchanged (its miner and cross-batch memory come with it). Calling it twice is
    harmless. See the module docstring for the gradient scaling; with one rank it is the plain loss.
    """
    if getattr(loss, "_pl_gather_hook", None) is None:
        loss._pl_gather_hook = loss.register_forward_pre_hook(_gather_hook)
    return loss


def is_gathered(loss):
    """Whether :func:`gathered` was applied to ``loss``."""
    return getattr(loss, "_pl_gather_hook", None) is not None


def check_same(what, values):
    """Raise :class:`InputError` on every rank unless every rank passes the same int ``values``."""
    if world()[1] == 1:
        return
    rows = _all_gather_int([int(v) for v in values])
    for rank, row in enumerate(rows):
        if row != rows[0]:
            raise InputError(f"the ranks disagree on {what}: rank 0 has {rows[0]}, rank {rank} has {row}; "
                             f"every rank must build the same configuration")


_SHARD_ATTR = "_pl_class_shard"


class ClassShard:
    """What a class-parallel head attaches to its logits: the shard's first class ``start``, the total
    ``class_num``, and the class ids of the global batch (``None`` without labels)."""

    def __init__(self, start, class_num, ids=None):
        self.start, self.class_num, self.ids = int(start), int(class_num), ids


def mark_class_shard(logits, shard):
    """Attach ``shard`` to ``logits`` (read back by :func:`class_shard`); returns ``logits``."""
    setattr(logits, _SHARD_ATTR, shard)
    return logits


def class_shard(tensor):
    """The :class:`ClassShard` of logits made by a class-parallel head, else ``None``."""
    return getattr(tensor, _SHARD_ATTR, None)


def sharded_ce_rows(logits, label, shard, epsilon, owner):
    """Per-row cross entropy of class-sharded ``logits`` (see :mod:`paddle_losses.functional.sharded_ce`).

    The class ids are the head's gathered ones when it had labels, else ``label`` gathered here (or used as
    is when it already covers the global batch). Soft labels are refused: class-parallel heads train on
    class ids.
    """
    from .functional.sharded_ce import sharded_cross_entropy_rows
    from .inputs import check_labels
    from .losses.ce import check_class_ids

    ids = shard.ids
    if ids is None:
        if isinstance(label, paddle.Tensor) and paddle.is_floating_point(label):
            raise InputError(f"{owner}: class-parallel logits take int class ids, not soft labels")
        if isinstance(label, paddle.Tensor) and label.shape[0] != logits.shape[0]:
            label = gather_batch(None, label)[1]
        ids = check_labels(label, logits.shape[0], owner).unsqueeze(1)
    check_class_ids(ids.squeeze(1), shard.class_num, owner, allow_ignore=epsilon is None)
    return sharded_cross_entropy_rows(logits, ids, shard.start, shard.class_num, epsilon)
