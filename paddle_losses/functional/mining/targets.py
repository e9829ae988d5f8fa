"""What a batch's targets say about its pairs, and precomputed index tuples.

Pair and triplet losses and miners need, for every ordered pair ``(i, j)`` of a batch, whether it is a
positive pair, a negative pair or neither. Three forms of target answer that:

* class ids, int ``[N]`` or ``[N, 1]``: positives share the id (the usual case);
* a multi-hot matrix ``[N, K]`` with ``K > 1`` (bool, or numbers that are all 0 or 1): positives share at
  least one label, negatives share none (a row without any label is a negative of every other row);
* an explicit positive mask, bool ``[N, N]`` (the ``positive_mask`` argument): ``True`` = positive pair,
  ``False`` = negative pair. It need not be symmetric.

In every form the diagonal ``(i, i)`` is neither a positive nor a negative pair. An ``[N, 1]`` tensor is
always read as class ids.

:func:`read_indices_tuple` validates pytorch-metric-learning's ``indices_tuple`` (``(a, p, n)`` triplets
or ``(a1, p, a2, n)`` pairs) and turns it into a selection of :mod:`.selections`.
"""
import numpy as np
import paddle

from ...errors import InputError
from ...inputs import check_labels, is_tensor
from . import selections as M


def _dynamic():
    return paddle.in_dynamic_mode()


class PairLabels:
    """The pair relations of a batch of ``n`` rows: class ids, a multi-hot matrix or a positive mask.

    Exactly one of ``ids`` (int64 ``[n]``), ``multi_hot`` (float32 ``[n, K]``) and ``mask`` (bool ``[n, n]``)
    is set. :meth:`masks` gives the ``(pos, neg)`` bool ``[n, n]`` pair masks (diagonal in neither).
    """

    def __init__(self, n, ids=None, multi_hot=None, mask=None):
        self.n, self.ids, self.multi_hot, self.mask = n, ids, multi_hot, mask

    @property
    def are_class_ids(self):
        return self.ids is not None

    def masks(self):
        if self.ids is not None:
            return M.label_masks(self.ids)
        if self.multi_hot is not None:
            same = paddle.matmul(self.multi_hot, self.multi_hot, transpose_y=True) > 0.5
        else:
            same = self.mask
        off_diagonal = paddle.eye(self.n) == 0
        return (paddle.logical_and(same, off_diagonal),
                paddle.logical_and(paddle.logical_not(same), off_diagonal))


def _as_tensor(value, owner, what):
    if is_tensor(value):
        return value
    try:
        return paddle.to_tensor(np.asarray(value))
    except (TypeError, ValueError) as exc:
        raise InputError(f"{owner}: {what} must be a tensor or an array, got {type(value).__name__}") from exc


def read_positive_mask(mask, n, owner):
    """Validate an explicit positive mask: bool ``[n, n]``."""
    mask = _as_tensor(mask, owner, "positive_mask")
    if mask.dtype != paddle.bool:
        raise InputError(f"{owner}: positive_mask must be a bool tensor, got {mask.dtype}; "
                         f"pass e.g. labels_a == labels_b, or mask.astype('bool')")
    if list(mask.shape) != [n, n]:
        raise InputError(f"{owner}: positive_mask must have shape [N, N] = [{n}, {n}] for a batch of {n}, "
                         f"got {list(mask.shape)}")
    return mask


def read_multi_hot(target, n, owner):
    """Validate a multi-hot label matrix ``[n, K]`` (bool or 0/1 numbers); float32 out."""
    if target.shape[0] != n:
        raise InputError(f"{owner}: the multi-hot label matrix has {target.shape[0]} rows but the batch has "
                         f"{n} samples")
    if target.dtype != paddle.bool and _dynamic() and target.size > 0:
        values = target.astype("float64")
        if not bool(paddle.logical_or(values == 0, values == 1).all()):
            raise InputError(f"{owner}: a label matrix [N, K] is read as multi-hot and must hold only 0 and 1 "
                             f"(or be bool); for class ids pass shape [N] or [N, 1]")
    return target.astype("float32")


def read_pair_labels(target, n, owner, positive_mask=None):
    """:class:`PairLabels` of a batch of ``n`` from ``target`` (class ids or multi-hot) or ``positive_mask``.

    ``positive_mask`` wins when both are given (the target is then not read).
    """
    if isinstance(target, PairLabels):
        return target
    if positive_mask is not None:
        return PairLabels(n, mask=read_positive_mask(positive_mask, n, owner))
    if target is not None:
        target = _as_tensor(target, owner, "label")
        if target.ndim == 2 and target.shape[1] != 1:
            return PairLabels(n, multi_hot=read_multi_hot(target, n, owner))
    return PairLabels(n, ids=check_labels(target, n, owner))


def class_ids_only(pair_labels, owner):
    """The class ids of ``pair_labels``; InputError for multi-hot labels or a positive mask."""
    if not pair_labels.are_class_ids:
        raise InputError(f"{owner} needs one class id per sample; multi-hot labels and positive masks are "
                         f"not defined for it")
    return pair_labels.ids


# ------------------------------------------------------------------------------------- indices_tuple
def _index_vector(value, n, owner, position):
    v = _as_tensor(value, owner, f"indices_tuple[{position}]")
    if v.dtype not in (paddle.int64, paddle.int32, paddle.int16, paddle.int8, paddle.uint8):
        raise InputError(f"{owner}: indices_tuple[{position}] must hold integer indices, got {v.dtype}")
    if v.ndim != 1:
        raise InputError(f"{owner}: indices_tuple[{position}] must be 1-D, got shape {list(v.shape)}")
    v = v.astype("int64")
    if _dynamic() and v.shape[0] > 0:
        lo, hi = int(v.min()), int(v.max())
        if lo < 0 or hi >= n:
            raise InputError(f"{owner}: indices_tuple[{position}] has indices in [{lo}, {hi}], outside the "
                             f"batch [0, {n})")
    return v


def read_indices_tuple(indices_tuple, n, owner):
    """Validate pytorch-metric-learning's ``indices_tuple`` for a batch of ``n``.

    ``(a, p, n)`` (three equal-length 1-D int vectors) gives :class:`~.selections.Triplets`;
    ``(a1, p, a2, n)`` (``len(a1) == len(p)``, ``len(a2) == len(n)``) gives :class:`IndexPairs`.
    Indices must lie in ``[0, n)``. Every problem is an InputError naming it.
    """
    if isinstance(indices_tuple, (M.Triplets, IndexPairs)):
        return indices_tuple
    if not isinstance(indices_tuple, (tuple, list)):
        raise InputError(f"{owner}: indices_tuple must be a tuple (a, p, n) or (a1, p, a2, n) of index "
                         f"vectors, got {type(indices_tuple).__name__}")
    if len(indices_tuple) not in (3, 4):
        raise InputError(f"{owner}: indices_tuple must have 3 (a, p, n) or 4 (a1, p, a2, n) entries, got "
                         f"{len(indices_tuple)}")
    vs = [_index_vector(v, n, owner, i) for i, v in enumerate(indices_tuple)]
    lengths = [int(v.shape[0]) for v in vs]
    if len(vs) == 3:
        if len(set(lengths)) != 1:
            raise InputError(f"{owner}: indices_tuple (a, p, n) must have equal lengths, got {lengths}")
        return M.Triplets(*vs)
    if lengths[0] != lengths[1] or lengths[2] != lengths[3]:
        raise InputError(f"{owner}: indices_tuple (a1, p, a2, n) needs len(a1) == len(p) and "
                         f"len(a2) == len(n), got {lengths}")
    return IndexPairs(*vs)


class IndexPairs:
    """Explicit pairs ``(a1, p)`` (positive) and ``(a2, n)`` (negative) as index vectors, PML's 4-tuple."""

    def __init__(self, a1, p, a2, n):
        self.a1, self.p, self.a2, self.n = a1, p, a2, n

    def indices(self):
        return self.a1, self.p, self.a2, self.n


def _pair_mask(i, j, n):
    mask = paddle.zeros([n, n], dtype="float32")
    if i.shape[0] == 0:
        return mask > 0
    ones = paddle.ones([i.shape[0]], dtype="float32")
    return paddle.scatter_nd_add(mask, paddle.stack([i, j], axis=1), ones) > 0


def selection_pair_masks(sel, n):
    """``(pos, neg)`` bool ``[n, n]`` masks of any selection (a pair listed twice counts once)."""
    if isinstance(sel, M.Pairs):
        return sel.pos, sel.neg
    if isinstance(sel, M.TripletWindow):
        sel = M.expand_window(sel)
    if isinstance(sel, M.Triplets):
        a, p, neg = sel.indices()
        return _pair_mask(a, p, n), _pair_mask(a, neg, n)
    a1, p, a2, neg = sel.indices()
    return _pair_mask(a1, p, n), _pair_mask(a2, neg, n)


def pairs_to_triplets(a1, p, a2, n):
    """PML's pairs -> triplets rule: every ``(i, j)`` with ``a1[i] == a2[j]`` (row-major) gives
    ``(a1[i], p[i], n[j])``."""
    if a1.shape[0] == 0 or a2.shape[0] == 0:
        empty = paddle.zeros([0], dtype="int64")
        return M.Triplets(empty, empty, empty)
    ij = paddle.nonzero(a1.reshape([-1, 1]) == a2.reshape([1, -1]))
    i, j = ij[:, 0], ij[:, 1]
    return M.Triplets(paddle.gather(a1, i), paddle.gather(p, i), paddle.gather(n, j))


def selection_triplets(sel):
    """Explicit :class:`~.selections.Triplets` of any selection (pairs joined on their anchor as PML)."""
    if isinstance(sel, M.Triplets):
        return sel
    if isinstance(sel, M.TripletWindow):
        return M.expand_window(sel)
    if isinstance(sel, M.Pairs):
        a1, p, a2, neg = sel.indices()
        return pairs_to_triplets(a1, p, a2, neg)
    return pairs_to_triplets(*sel.indices())
