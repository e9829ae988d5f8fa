"""CrossBatchMemory: the feature/label memory of the XBM losses (PaddleClas ``ppcls/loss/xbm.py``).

The memory is a preallocated ``[size, embedding_size]`` float32 buffer with a ``[size]`` int64 label
buffer. Losses read its written slots (:meth:`CrossBatchMemory.push`) as the keys of one ``B × M``
similarity matmul; once the memory is full -- the steady state -- that is the buffer itself, with nothing
concatenated, copied or masked per step.

Write policy (kept from PaddleClas because the golden sequences depend on it): a batch of ``n`` rows is
written at ``[ptr, ptr + n)`` and ``ptr`` advances; when it would run past the end, the batch goes to the
**last** ``n`` slots and ``ptr`` returns to 0. This is not a FIFO ring: after a wrap the most recent rows can
be overwritten while older rows at the start survive.

Divergences from PaddleClas (docs/compatibility.md, section "Triplet family, XBM and contrastive"):

* PaddleClas decides "full" by testing ``targets[-1] != 0``, so a genuine label 0 in the last slot makes a
  full memory look partly empty (after a wrap it even looks empty, and the XBM losses crash). Here the
  number of written slots is tracked explicitly in the persisted buffer ``filled``.
* ``ptr`` is a persisted buffer (PaddleClas keeps a Python int that restarts at 0 on resume).
* A batch larger than the memory, or of the wrong feature size, raises :class:`InputError`.

State-dict keys: ``feats`` and ``targets`` (as PaddleClas), plus ``ptr`` and ``filled``.
"""
import paddle
import paddle.nn as nn

from .errors import InputError


def count_call(counter, start_iter):
    """Increment the persisted int64 call ``counter`` and say whether the memory term is on (``> start_iter``).

    XBM losses count every call, eval included, as PaddleClas does.
    """
    with paddle.no_grad():
        paddle.assign(counter + 1, output=counter)
    return int(counter) > start_iter


class CrossBatchMemory(nn.Layer):
    """Memory of the last written ``size`` embeddings and their labels.

    Args:
        size: number of slots ``M``.
        embedding_size: feature dimension ``D``.
    """

    def __init__(self, size: int, embedding_size: int):
        super().__init__()
        if int(size) < 1:
            raise ValueError(f"CrossBatchMemory size must be >= 1, got {size}")
        if int(embedding_size) < 1:
            raise ValueError(f"CrossBatchMemory embedding_size must be >= 1, got {embedding_size}")
        self.size = int(size)
        self.embedding_size = int(embedding_size)
        self.register_buffer("feats", paddle.zeros([self.size, self.embedding_size], dtype="float32"))
        self.register_buffer("targets", paddle.zeros([self.size], dtype="int64"))
        self.register_buffer("ptr", paddle.zeros([], dtype="int64"))
        self.register_buffer("filled", paddle.zeros([], dtype="int64"))

    def forward(self, *args, **kwargs):
        raise NotImplementedError("CrossBatchMemory is a state container: use enqueue_dequeue() and get()")

    @property
    def _is_full(self):
        return int(self.filled) >= self.size

    def check_batch(self, feats, targets):
        """Raise :class:`InputError` unless ``feats [n, D]`` / ``targets [n]`` fit this memory."""
        if feats.ndim != 2 or feats.shape[1] != self.embedding_size:
            raise InputError(f"CrossBatchMemory holds {self.embedding_size}-d features, got a batch of shape "
                             f"{list(feats.shape)}; set the memory's feature size (feat_dim / embedding_size) "
                             f"to the embedding size of the model")
        n = feats.shape[0]
        if n > self.size:
            raise InputError(f"CrossBatchMemory of size {self.size} cannot take a batch of {n} rows; "
                             f"use a memory at least as large as the batch")
        if targets.shape[0] != n:
            raise InputError(f"CrossBatchMemory got {n} features but {targets.shape[0]} labels")

    def enqueue_dequeue(self, feats, targets):
        """Write a batch (``feats [n, D]``, ``targets [n]`` int) with the PaddleClas write policy."""
        self.check_batch(feats, targets)
        n = feats.shape[0]
        with paddle.no_grad():
            end = self.ptr + n
            wraps = end > self.size
            start = paddle.where(wraps, paddle.full_like(self.ptr, self.size - n), self.ptr)
            index = start + paddle.arange(n, dtype="int64")
            rows = feats.detach().astype(self.feats.dtype)
            labels = targets.reshape([-1]).astype("int64")
            if paddle.in_dynamic_mode():
                # Write only the n new rows into the ring buffer (a scatter + assign copies all M rows twice).
                self.feats.scatter_(index, rows, overwrite=True)
                self.targets.scatter_(index, labels, overwrite=True)
            else:
                paddle.assign(paddle.scatter(self.feats, index, rows, overwrite=True), output=self.feats)
                paddle.assign(paddle.scatter(self.targets, index, labels, overwrite=True), output=self.targets)
            full = paddle.full_like(self.filled, self.size)
            new_filled = paddle.where(wraps, full, paddle.maximum(self.filled, end))
            new_ptr = paddle.where(wraps, paddle.zeros_like(self.ptr), end)
            paddle.assign(new_filled, output=self.filled)
            paddle.assign(new_ptr, output=self.ptr)

    def push(self, feats, targets):
        """Write the detached batch, then return the written part of the memory as keys for it.

        Returns ``(keys [m, D], key_labels [m])``: the ``m = filled`` written slots (the whole buffers, not a
        copy, once the memory is full -- the steady state), features in ``feats``' dtype, without gradient.
        The batch itself is among them.
        """
        self.enqueue_dequeue(feats.detach(), targets)
        m = int(self.filled)
        keys, labels = (self.feats, self.targets) if m == self.size else (self.feats[:m], self.targets[:m])
        return keys.astype(feats.dtype), labels

    def valid_slots(self):
        """``[size]`` bool: True for slots that hold written data (the first ``filled`` slots)."""
        return paddle.arange(self.size, dtype="int64") < self.filled

    def get(self):
        """``(feats [m, D], targets [m])`` of the ``m = filled`` written slots (PaddleClas's API).

        Losses use :meth:`push`, which writes first and avoids the copy once the memory is full.
        """
        m = int(self.filled)
        return self.feats[:m], self.targets[:m]
