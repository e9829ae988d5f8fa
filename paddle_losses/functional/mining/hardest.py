"""Masked hardest-example selection over a pairwise matrix, for any batch composition.

PaddleClas mines with ``masked_select`` + ``reshape(N, -1)``, which only works when every row has the same
number of candidates (balanced P×K batches) and whose ``max``/``min`` backward is quadratic on CPU. Here
every row is mined independently with a mask, in O(N·M) time and memory, and the gradient reaches the
selected entries only:

* ``ties="split"`` reproduces ``paddle.max``/``paddle.min``: the upstream gradient is shared equally by all
  entries that attain the extremum (PaddleClas's rule for most losses).
* ``ties="first"`` gives the whole gradient to the first column attaining it (Python's builtin max/min, as
  in PaddleClas's ``TripletLoss``), via ``argmax`` + ``take_along_axis``.

Rows without any candidate are reported in ``valid`` and get the value 0 (still connected to the graph).
"""
from typing import NamedTuple

import numpy as np
import paddle
from paddle.autograd import PyLayer


class _MaskedExtreme(PyLayer):
    """Row-wise max/min over masked entries with ``paddle.max``'s tie rule, in a fixed number of passes.

    Forward: one ``where`` and one reduction. Backward: the upstream gradient is shared equally by the
    entries equal to the extreme (one comparison, one count, one multiply) -- the same result as
    ``paddle.max``'s backward, whose CPU kernel is quadratic in the row length.
    """

    @staticmethod
    def forward(ctx, values, mask, largest):
        sentinel = paddle.full([], float("-inf") if largest else float("inf"), dtype=values.dtype)
        filled = paddle.where(mask, values, sentinel)
        ext = filled.max(axis=1) if largest else filled.min(axis=1)
        ctx.save_for_backward(filled, ext)
        return ext

    @staticmethod
    def backward(ctx, grad):
        filled, ext = ctx.saved_tensor()
        tie = (filled == ext.unsqueeze(1)).astype(grad.dtype)
        # A row without candidates ties on every (sentinel) entry; its upstream gradient is 0 (see hardest).
        share = grad / tie.sum(axis=1)
        return tie * share.unsqueeze(1), None


def hardest(values, mask, mode, ties="split"):
    """Per-row extreme of ``values`` over ``mask``.

    Args:
        values: ``[N, M]`` float tensor.
        mask: ``[N, M]`` bool, True where an entry is a candidate.
        mode: ``"max"`` or ``"min"``.
        ties: ``"split"`` (equal gradient split among tied extrema) or ``"first"``.

    Returns:
        ``(value [N], valid [N] bool)``; ``value`` is 0 where a row has no candidate.
    """
    if mode not in ("max", "min"):
        raise ValueError(f"mode must be 'max' or 'min', got {mode!r}")
    if ties not in ("split", "first"):
        raise ValueError(f"ties must be 'split' or 'first', got {ties!r}")
    valid = mask.any(axis=1)
    if ties == "split":
        picked = _MaskedExtreme.apply(values, mask, mode == "max")
    else:
        with paddle.no_grad():
            sentinel = paddle.full([], float("-inf") if mode == "max" else float("inf"), dtype=values.dtype)
            filled = paddle.where(mask, values.detach(), sentinel)
            idx = (paddle.argmax if mode == "max" else paddle.argmin)(filled, axis=1, keepdim=True)
        picked = paddle.take_along_axis(values, idx, axis=1).squeeze(1)
    return paddle.where(valid, picked, paddle.zeros_like(picked)), valid


def hardest_positive_negative(values, pos, neg, larger_is_closer, ties="split"):
    """Hardest positive and hardest negative per row of a similarity or distance matrix.

    For similarities (``larger_is_closer=True``) the hardest positive is the least similar positive and the
    hardest negative the most similar negative; for distances the opposite.

    Returns ``(ap, an, valid_pos, valid_neg)``, each ``[N]``.
    """
    pos_mode, neg_mode = ("min", "max") if larger_is_closer else ("max", "min")
    ap, vp = hardest(values, pos, pos_mode, ties)
    an, vn = hardest(values, neg, neg_mode, ties)
    return ap, an, vp, vn


# ------------------------------------------------------------------------------------------ pair mining
METRICS = ("dot", "euclidean", "sqeuclidean")


def _mining_scores(x, keys, metric):
    """A matrix whose row-wise order equals the metric's (no gradient): ``x·kᵀ`` for ``dot``, and
    ``||k_j||² - 2 x_i·k_j`` (the squared distance less its row constant ``||x_i||²``) for the distances."""
    if metric == "dot":
        return paddle.matmul(x, keys, transpose_y=True)
    kk = (keys * keys).sum(axis=1).reshape([1, -1])
    return paddle.addmm(kk, x, keys.t(), beta=1.0, alpha=-2.0)


def _select(scores, excluded, largest, ties, overwrite=False):
    """First extreme column per row over the entries not ``excluded``, plus equal tie weights ``[N, M]``
    when a row has ties.

    Returns ``(index [N], ties)``: ``ties`` is None when no row ties; otherwise the equal shares of the tied
    entries, as ``(rows, columns, shares)`` in eager mode or a dense ``[N, M]`` matrix in a traced graph. Ties
    are detected by comparing each row's extreme with its runner-up (the extreme once the chosen entry is
    blanked out), so untied batches (the usual case) cost no ``[N, M]`` pass for them. ``overwrite`` lets
    the selection reuse ``scores``' buffer (its last use); ``excluded=None`` means the excluded entries of
    ``scores`` (then the caller's own buffer) already hold the sentinel.
    """
    sentinel = float("-inf") if largest else float("inf")
    if excluded is None:  # the caller has already written the sentinel into its own buffer
        filled = scores
    elif paddle.in_dynamic_mode():
        # In place on our own buffer: Paddle's masked_fill builds the complement mask, expands the value and
        # allocates the result (about 3x the in-place fill on a large matrix).
        filled = (scores if overwrite else scores.clone()).masked_fill_(excluded, sentinel)
    else:
        filled = paddle.masked_fill(scores, excluded, sentinel)
    index = (paddle.argmax if largest else paddle.argmin)(filled, axis=1, keepdim=True)
    if ties == "first":
        return index.squeeze(1), None
    ext = paddle.take_along_axis(filled, index, axis=1)
    filled = filled.put_along_axis_(index, paddle.full_like(ext, sentinel), 1)
    runner_up = filled.max(axis=1, keepdim=True) if largest else filled.min(axis=1, keepdim=True)
    tied = paddle.logical_and(runner_up == ext, paddle.isfinite(ext))
    # A traced graph (to_static) cannot branch on data: it always carries dense weights.
    if paddle.in_dynamic_mode() and not bool(tied.any()):
        return index.squeeze(1), None
    # Put the extreme back: the excluded entries hold the (infinite) sentinel, so they never equal a finite
    # extreme (a row without candidates has the sentinel as its extreme and gets no tie entries).
    tie = paddle.logical_and(filled.put_along_axis_(index, ext, 1) == ext, paddle.isfinite(ext))
    if not paddle.in_dynamic_mode():
        weight = tie.astype(scores.dtype)
        return index.squeeze(1), weight / paddle.clip(weight.sum(axis=1, keepdim=True), min=1.0)
    # Eager: keep only the extreme entries, as (row, column, share) triples, so partners cost O(ties · D).
    entries = paddle.nonzero(tie)
    rows, cols = entries[:, 0], entries[:, 1]
    count = paddle.bincount(rows, minlength=tie.shape[0])
    return index.squeeze(1), (rows, cols, 1.0 / paddle.gather(count, rows).astype(scores.dtype))


def _partners(keys, key_sq, index, weight):
    """Key rows (and squared norms) paired with each anchor: the selected row, or the tie-weighted mean."""
    if weight is None:
        return paddle.gather(keys, index), None if key_sq is None else paddle.gather(key_sq, index)
    if isinstance(weight, tuple):
        rows, cols, share = weight
        n = index.shape[0]
        partner = paddle.index_add(paddle.zeros([n, keys.shape[1]], keys.dtype), rows, 0,
                                   paddle.gather(keys, cols) * share.unsqueeze(1))
        if key_sq is None:
            return partner, None
        partner_sq = paddle.index_add(paddle.zeros([n], key_sq.dtype), rows, 0, paddle.gather(key_sq, cols) * share)
        return partner, partner_sq
    if key_sq is None:
        return paddle.matmul(weight, keys), None
    return paddle.matmul(weight, keys), paddle.matmul(weight, key_sq.unsqueeze(1)).squeeze(1)


def _pair_values(x, partner, partner_sq, metric, single):
    if metric != "dot" and single:
        # One partner per anchor: the explicit sum of squared differences (what PaddleClas's [N, N, D]
        # difference tensor computes for the squared losses; the Gram form's value up to rounding for the
        # others, including the clip that zeroes the self pair's gradient), in fewer ops.
        diff = x - partner
        d2 = (diff * diff).sum(axis=1)
        return d2 if metric == "sqeuclidean" else paddle.sqrt(paddle.clip(d2, min=1e-12))
    dot = (x * partner).sum(axis=1)
    if metric == "dot":
        return dot
    # Tie-weighted partner means need the Gram form: Σ_k w_k ||x - k||² = ||x||² + Σ_k w_k ||k||² - 2 x·Σ_k w_k k.
    d2 = (x * x).sum(axis=1) + partner_sq - 2.0 * dot
    if metric == "sqeuclidean":
        return paddle.clip(d2, min=0.0)
    return paddle.sqrt(paddle.clip(d2, min=1e-12))


# Rows mined at once: blocks keep the no-gradient score matrix at about this many elements (64 MiB in
# float32) so that a large batch never holds an [N, M] matrix; smaller problems run as one block.
_BLOCK_ELEMENTS = 1 << 24
_block_rows_setting = None


def set_block_rows(rows=None):
    """Set how many rows batch-hard mining processes at once (``None``: automatic). Returns the previous
    setting. Results do not depend on it; memory and speed do."""
    global _block_rows_setting
    if rows is not None and (not isinstance(rows, int) or isinstance(rows, bool) or rows < 1):
        raise ValueError(f"block rows must be a positive int or None, got {rows!r}")
    previous, _block_rows_setting = _block_rows_setting, rows
    return previous


def choose_block_rows(n, m, rows=None):
    """Rows per mining block for ``n`` anchors against ``m`` keys: ``rows``, else :func:`set_block_rows`'s
    setting, else all ``n`` while ``n·m`` fits the element budget, else ``budget // m`` (at least 1)."""
    rows = _block_rows_setting if rows is None else rows
    if rows is None:
        rows = n if n * m <= _BLOCK_ELEMENTS else max(1, _BLOCK_ELEMENTS // max(m, 1))
    return max(1, min(int(rows), n))


class Candidates(NamedTuple):
    """Which keys each anchor may pick, in the form the selection consumes; build it once per mask pair
    with :meth:`from_masks` and reuse it while the masks stay the same (e.g. a fixed batch layout)."""

    pos_excluded: paddle.Tensor  # [N, M] bool, True where a key is not a positive candidate
    neg_excluded: paddle.Tensor  # [N, M] bool, True where a key is not a negative candidate
    has_pos: paddle.Tensor       # [N] bool
    has_neg: paddle.Tensor       # [N] bool

    @classmethod
    def from_masks(cls, pos, neg=None):
        """From ``[N, M]`` candidate masks; ``neg=None`` means every non-positive key."""
        with paddle.no_grad():
            if neg is None:
                return cls(paddle.logical_not(pos), pos, pos.any(axis=1), paddle.logical_not(pos.all(axis=1)))
            return cls(paddle.logical_not(pos), paddle.logical_not(neg), pos.any(axis=1), neg.any(axis=1))


    def rows(self, start, stop):
        """The candidates of anchors ``start:stop``."""
        return Candidates(self.pos_excluded[start:stop], self.neg_excluded[start:stop], self.has_pos[start:stop],
                          self.has_neg[start:stop])


class LabelCandidates(NamedTuple):
    """Candidates given by labels, built one block of anchors at a time (never an ``[N, M]`` mask):
    positives share the anchor's label (the anchor itself too unless ``exclude_self``), negatives do not."""

    labels: paddle.Tensor      # [N] int
    key_labels: paddle.Tensor  # [M] int
    exclude_self: bool = False

    @classmethod
    def of(cls, labels, key_labels=None, exclude_self=False):
        labels = labels.reshape([-1])
        return cls(labels, labels if key_labels is None else key_labels.reshape([-1]), exclude_self)

    def rows(self, start, stop):
        with paddle.no_grad():
            same = self.labels[start:stop].reshape([-1, 1]) == self.key_labels.reshape([1, -1])
            neg_excluded = same
            pos_excluded = paddle.logical_not(same)
            if self.exclude_self:
                cols = paddle.arange(self.key_labels.shape[0], dtype="int64").reshape([1, -1])
                self_pair = cols == paddle.arange(start, stop, dtype="int64").reshape([-1, 1])
                pos_excluded = paddle.logical_or(pos_excluded, self_pair)
            return Candidates(pos_excluded, neg_excluded, paddle.logical_not(pos_excluded.all(axis=1)),
                              paddle.logical_not(neg_excluded.all(axis=1)))


class _SameLabelKeys:
    """For every anchor, the keys sharing its label, as host index lists (no ``[N, M]`` mask).

    In a P×K batch an anchor has K keys of its own label among M, so mining through these lists -- the
    positives gathered and reduced on the host, the negatives found by writing the sentinel over the
    same-label entries only -- leaves one ``argmin``/``argmax`` as the only ``[N, M]`` pass besides the
    scores. :meth:`of` returns None where labels are too few for that to pay (more than a quarter of the
    pairs share a label).
    """

    def __init__(self, order, first, count, m, exclude_self):
        self.order, self.first, self.count, self.m, self.exclude_self = order, first, count, m, exclude_self

    @classmethod
    def of(cls, c):
        labels, keys = c.labels.numpy(), c.key_labels.numpy()
        order = np.argsort(keys, kind="stable")  # keys of one label stay in ascending column order
        sorted_keys = keys[order]
        first = np.searchsorted(sorted_keys, labels, "left")
        count = np.searchsorted(sorted_keys, labels, "right") - first
        if int(count.sum()) * 4 > labels.shape[0] * keys.shape[0]:
            return None
        return cls(order, first, count, keys.shape[0], c.exclude_self)

    def pairs(self, start, stop):
        """``(rows, cols)`` of the same-label entries of anchors ``start:stop`` (block-local rows), sorted by
        row and then by column."""
        n = self.count[start:stop]
        rows = np.repeat(np.arange(stop - start), n)
        offsets = np.arange(rows.shape[0]) - np.repeat(np.cumsum(n) - n, n)
        return rows, self.order[np.repeat(self.first[start:stop], n) + offsets]


def _segment_select(values, rows, cols, n_rows, largest, ties, dtype):
    """:func:`_select` over short per-row candidate lists (host arrays sorted by row, then column): the first
    extreme column per row (0 for a row without candidates) and, for ``ties="split"`` when a row ties, the
    ``(rows, columns, shares)`` of every row's extreme entries."""
    index = np.zeros(n_rows, dtype=np.int64)
    if values.shape[0] == 0:
        return paddle.to_tensor(index), None
    starts = np.flatnonzero(np.r_[True, rows[1:] != rows[:-1]])
    ext = (np.maximum if largest else np.minimum).reduceat(values, starts)
    at_ext = np.flatnonzero(values == np.repeat(ext, np.diff(np.r_[starts, values.shape[0]])))
    ext_rows = rows[at_ext]
    _, first = np.unique(ext_rows, return_index=True)
    index[ext_rows[first]] = cols[at_ext[first]]
    if ties == "first" or first.shape[0] == at_ext.shape[0]:
        return paddle.to_tensor(index), None
    shares = 1.0 / np.bincount(ext_rows, minlength=n_rows)[ext_rows]
    return paddle.to_tensor(index), (paddle.to_tensor(ext_rows), paddle.to_tensor(cols[at_ext]),
                                     paddle.to_tensor(shares).astype(dtype))


def _select_by_label_lists(scores, same, start, stop, similar, ties):
    """Positive and negative selection of anchors ``start:stop`` from their same-label key lists
    (:class:`_SameLabelKeys`); ``scores`` is our own buffer and is overwritten."""
    n_rows, m = scores.shape
    rows, cols = same.pairs(start, stop)
    pos_rows, pos_cols = rows, cols
    if same.exclude_self:
        keep = cols != rows + start
        pos_rows, pos_cols = rows[keep], cols[keep]
    values = paddle.gather(scores.reshape([-1]), paddle.to_tensor(pos_rows * m + pos_cols)).numpy()
    pos = _segment_select(values, pos_rows, pos_cols, n_rows, not similar, ties, scores.dtype)
    has_pos = paddle.to_tensor(np.bincount(pos_rows, minlength=n_rows) > 0)
    has_neg = paddle.to_tensor(same.count[start:stop] < m)
    sentinel = float("-inf") if similar else float("inf")
    flat = scores.reshape_([-1])
    paddle.scatter_(flat, paddle.to_tensor(rows * m + cols), paddle.full([rows.shape[0]], sentinel, scores.dtype))
    neg = _select(flat.reshape_([n_rows, m]), None, largest=similar, ties=ties)
    return pos, neg, has_pos, has_neg


def _concat_weights(parts, dtype):
    """Per-block eager tie weights (None, or ``(rows, cols, shares)`` with block-local rows) as one; a block
    without ties contributes its selected column with share 1 for every row."""
    if all(w is None for _, _, w in parts):
        return None
    rows, cols, shares = [], [], []
    for start, index, w in parts:
        if w is None:
            w = (paddle.arange(index.shape[0], dtype="int64"), index, paddle.ones([index.shape[0]], dtype=dtype))
        rows.append(w[0] + start), cols.append(w[1]), shares.append(w[2])
    return paddle.concat(rows), paddle.concat(cols), paddle.concat(shares)


def _mine_blocks(x, keys, c, metric, ties, rows):
    """Indices, tie weights and validity of the hardest positive / negative of every anchor, ``rows``
    anchors at a time (a traced graph runs as one block)."""
    n = x.shape[0]
    similar = metric == "dot"
    same = _SameLabelKeys.of(c) if isinstance(c, LabelCandidates) and paddle.in_dynamic_mode() else None
    if same is not None:
        parts = [_select_by_label_lists(_mining_scores(x[start:min(start + rows, n)], keys, metric), same,
                                        start, min(start + rows, n), similar, ties)
                 for start in range(0, n, rows)]
        pos = (paddle.concat([p[0][0] for p in parts]), _concat_weights(
            [(start, p[0][0], p[0][1]) for start, p in zip(range(0, n, rows), parts)], x.dtype))
        neg = (paddle.concat([p[1][0] for p in parts]), _concat_weights(
            [(start, p[1][0], p[1][1]) for start, p in zip(range(0, n, rows), parts)], x.dtype))
        return pos, neg, paddle.concat([p[2] for p in parts]), paddle.concat([p[3] for p in parts])
    if rows >= n or not paddle.in_dynamic_mode():
        c = c.rows(0, n) if isinstance(c, LabelCandidates) else c
        scores = _mining_scores(x, keys, metric)
        pos = _select(scores, c.pos_excluded, largest=not similar, ties=ties)
        neg = _select(scores, c.neg_excluded, largest=similar, ties=ties, overwrite=True)
        return pos, neg, c.has_pos, c.has_neg
    pos_i, neg_i, pos_w, neg_w, has_pos, has_neg = [], [], [], [], [], []
    for start in range(0, n, rows):
        stop = min(start + rows, n)
        cb = c.rows(start, stop)
        scores = _mining_scores(x[start:stop], keys, metric)
        pi, pw = _select(scores, cb.pos_excluded, largest=not similar, ties=ties)
        ni, nw = _select(scores, cb.neg_excluded, largest=similar, ties=ties, overwrite=True)
        pos_i.append(pi), neg_i.append(ni), pos_w.append((start, pi, pw)), neg_w.append((start, ni, nw))
        has_pos.append(cb.has_pos), has_neg.append(cb.has_neg)
    return ((paddle.concat(pos_i), _concat_weights(pos_w, x.dtype)),
            (paddle.concat(neg_i), _concat_weights(neg_w, x.dtype)), paddle.concat(has_pos), paddle.concat(has_neg))


def hardest_pairs(x, pos, neg, metric, keys=None, ties="split", candidates=None, block_rows=None):
    """Hardest positive and negative of every anchor, mined without gradient, values recomputed with one.

    Same values and gradients as mining ``hardest`` over the full pairwise matrix of ``metric``
    (``dot`` similarity; ``euclidean`` = :func:`~paddle_losses.functional.pairwise.gram_euclidean`;
    ``sqeuclidean`` = squared distance), but the ``[N, M]`` matrix is only needed forward and without
    gradient: the selected key rows are gathered and the ``N`` pair values recomputed, so the backward pass
    costs ``O(N·D)`` instead of a dense ``N × M`` gradient and two more matmuls. Tied extrema
    (``ties="split"``) share the gradient equally through tie-weighted key means, as ``paddle.max`` does.

    Args:
        x: ``[N, D]`` anchors (with gradient).
        pos, neg: ``[N, M]`` bool candidate masks; ``neg=None`` means every non-positive key (saves
            building the complement).
        metric: ``"dot"`` (hardest positive = least similar) or ``"euclidean"``/``"sqeuclidean"`` (hardest
            positive = farthest).
        keys: ``[M, D]`` keys; ``None`` means ``x`` itself (gradient flows through both ends of a pair).
        ties: ``"split"`` or ``"first"``.
        candidates: a prebuilt :class:`Candidates` of ``(pos, neg)``; then ``pos`` and ``neg`` are not read.
            ``pos`` may instead be a :class:`LabelCandidates` (then ``neg`` is not read): the masks are
            built per block of anchors and no ``[N, M]`` matrix is held.
        block_rows: anchors mined at once (``None``: :func:`choose_block_rows`, automatic or
            :func:`set_block_rows`). Values, gradients and tie rules do not depend on it; with tensor
            masks the blocks only bound the score matrix, with :class:`LabelCandidates` all memory.

    Returns:
        ``(ap, an, valid_pos, valid_neg)``, each ``[N]``; values are 0 where a row has no candidate.
    """
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
    if ties not in ("split", "first"):
        raise ValueError(f"ties must be 'split' or 'first', got {ties!r}")
    keys = x if keys is None else keys
    if isinstance(pos, LabelCandidates):
        c = pos
    else:
        c = Candidates.from_masks(pos, neg) if candidates is None else candidates
    with paddle.no_grad():
        rows = choose_block_rows(x.shape[0], keys.shape[0], block_rows)
        (pos_index, pos_weight), (neg_index, neg_weight), has_pos, has_neg = _mine_blocks(
            x.detach(), keys.detach(), c, metric, ties, rows)
    c = Candidates(None, None, has_pos, has_neg)
    needs_sq = metric != "dot" and (pos_weight is not None or neg_weight is not None)
    key_sq = (keys * keys).sum(axis=1) if needs_sq else None
    out = []
    for index, weight, valid in ((pos_index, pos_weight, c.has_pos), (neg_index, neg_weight, c.has_neg)):
        value = _pair_values(x, *_partners(keys, key_sq, index, weight), metric, single=weight is None)
        out.append((paddle.where(valid, value, paddle.zeros_like(value)), valid))
    (ap, vp), (an, vn) = out
    return ap, an, vp, vn
