"""Miners as pure functions over label masks and a distance matrix (no gradient, O(N²) memory).

Every function works on ``u``: an ``[N, N]`` matrix where *smaller is closer* (a distance, or a negated
similarity -- see ``Distance.as_distance``), and ``pos`` / ``neg`` bool masks from :func:`label_masks`
(``pos`` excludes the diagonal). A triplet's margin is ``m = u_an - u_ap`` (PML's ``d_an - d_ap`` for a
distance, ``s_ap - s_an`` for a similarity).

Results are *selections*:

* :class:`Triplets` -- explicit ``(a, p, n)`` index vectors (batch-hard: ≤ N triplets; TF-Addons
  semi-hard: ≤ N² triplets).
* :class:`TripletWindow` -- for every positive pair ``(a, p)`` the negatives ``n`` whose ``u_an`` lies in
  ``(lo_ap, hi_ap]``. PML's ``TripletMarginMiner`` types and "all triplets" are all such intervals, so
  they are kept as two ``[N, N]`` matrices instead of an ``O(N³)`` list. :func:`expand_window` produces
  PML's index tuple (lexicographic ``(a, p, n)`` order) in O(N² + T) memory for ``T`` mined triplets.
* :class:`Pairs` -- ``[N, N]`` bool masks of kept positive and negative pairs (multi-similarity, all
  pairs); :func:`pairs_to_tuple` gives PML's ``(a1, p, a2, n)`` order.
"""
import paddle


class Triplets:
    """Explicit triplets: int64 index vectors ``a``, ``p``, ``n`` of equal length."""

    def __init__(self, a, p, n):
        self.a, self.p, self.n = a, p, n

    def indices(self):
        return self.a, self.p, self.n

    def __len__(self):
        return int(self.a.shape[0])


class TripletWindow:
    """Triplets ``(a, p, n)`` with ``pos[a, p]``, ``neg[a, n]`` and ``lo[a, p] < u[a, n] <= hi[a, p]``."""

    def __init__(self, u, pos, neg, lo, hi, distance=None):
        self.u, self.pos, self.neg, self.lo, self.hi = u, pos, neg, lo, hi
        self.distance = distance  # the Distance the window was mined with (decides the loss's fast path)

    def indices(self):
        t = expand_window(self)
        return t.a, t.p, t.n


class Pairs:
    """Kept positive / negative pairs as ``[N, N]`` bool masks; ``order`` sorts pairs within an anchor."""

    def __init__(self, pos, neg, order=None):
        self.pos, self.neg, self.order = pos, neg, order

    def indices(self):
        a1, p = pairs_to_tuple(self.pos, self.order)
        a2, n = pairs_to_tuple(self.neg, self.order)
        return a1, p, a2, n


def label_masks(labels, ref_labels=None):
    """``(pos, neg)``: same label off the diagonal, and different label. ``[N, N]`` bool."""
    ref = labels if ref_labels is None else ref_labels
    same = labels.reshape([-1, 1]) == ref.reshape([1, -1])
    neg = paddle.logical_not(same)
    if ref_labels is None:
        same = paddle.logical_and(same, paddle.eye(labels.shape[0]) == 0)
    return same, neg


def _rows_with(mask):
    return mask.any(axis=1)


def batch_hard(u, pos, neg):
    """Per anchor with a positive and a negative: the farthest positive and the closest negative."""
    inf = float("inf")
    far_pos = paddle.argmax(paddle.where(pos, u, paddle.full_like(u, -inf)), axis=1)
    near_neg = paddle.argmin(paddle.where(neg, u, paddle.full_like(u, inf)), axis=1)
    a = paddle.nonzero(paddle.logical_and(_rows_with(pos), _rows_with(neg))).reshape([-1])
    return Triplets(a, paddle.gather(far_pos, a), paddle.gather(near_neg, a))


BATCH_STRATEGIES = ("hard", "semihard", "easy", "all")


def _pick(u, cand, closest):
    """Per row: index and value of the closest (smallest ``u``) or farthest candidate, and whether any."""
    inf = float("inf")
    if closest:
        filled = paddle.where(cand, u, paddle.full_like(u, inf))
        idx = paddle.argmin(filled, axis=1)
    else:
        filled = paddle.where(cand, u, paddle.full_like(u, -inf))
        idx = paddle.argmax(filled, axis=1)
    return idx, paddle.take_along_axis(filled, idx.reshape([-1, 1]), axis=1), cand.any(axis=1)


def _in_range(u, allowed):
    if allowed is None:
        return paddle.ones_like(u, dtype="bool")
    lo, hi = allowed
    return paddle.logical_and(u >= lo, u <= hi)


def batch_easy_hard(u, pos, neg, pos_strategy="easy", neg_strategy="semihard", pos_range=None, neg_range=None):
    """PML ``BatchEasyHardMiner``: one positive and / or one negative per anchor, by strategy.

    In ``u`` units (smaller is closer): a "hard" positive is the farthest, an "easy" one the closest; a
    "hard" negative is the closest, an "easy" one the farthest. "semihard" on one side means the hard choice
    among candidates strictly on the right side of the other side's pick (a positive closer than the chosen
    negative, or a negative farther than the chosen positive). ``pos_range`` / ``neg_range`` = inclusive
    ``(lo, hi)`` limits on ``u`` of the picked side's candidates. "all" keeps every pair of that side (its
    range is not applied, as PML).

    Returns :class:`Triplets` (one per anchor having both picks) when neither side is "all", else
    :class:`Pairs` (the picked pairs of one side, every pair of the other).
    """
    all_pos, all_neg = pos, neg  # PML applies the ranges to the picks only, not to an "all" side
    pos = paddle.logical_and(pos, _in_range(u, pos_range))
    neg = paddle.logical_and(neg, _in_range(u, neg_range))
    pick_pos = lambda cand: _pick(u, cand, closest=pos_strategy == "easy")  # noqa: E731
    pick_neg = lambda cand: _pick(u, cand, closest=neg_strategy != "easy")  # noqa: E731
    if pos_strategy == "semihard" and neg_strategy != "all":
        n_idx, n_val, n_ok = pick_neg(neg)
        p_idx, _, p_ok = pick_pos(paddle.logical_and(pos, u < n_val))
    elif neg_strategy == "semihard" and pos_strategy != "all":
        p_idx, p_val, p_ok = pick_pos(pos)
        n_idx, _, n_ok = pick_neg(paddle.logical_and(neg, u > p_val))
    else:
        if pos_strategy != "all":
            p_idx, _, p_ok = pick_pos(pos)
        if neg_strategy != "all":
            n_idx, _, n_ok = pick_neg(neg)

    def one_per_row(idx, ok):
        chosen = paddle.arange(u.shape[1], dtype="int64").reshape([1, -1]) == idx.reshape([-1, 1])
        return paddle.logical_and(chosen, ok.reshape([-1, 1]))

    if "all" not in (pos_strategy, neg_strategy):
        a = paddle.nonzero(paddle.logical_and(p_ok, n_ok)).reshape([-1])
        return Triplets(a, paddle.gather(p_idx, a), paddle.gather(n_idx, a))
    keep_pos = all_pos if pos_strategy == "all" else one_per_row(p_idx, p_ok)
    keep_neg = all_neg if neg_strategy == "all" else one_per_row(n_idx, n_ok)
    return Pairs(keep_pos, keep_neg)


TRIPLET_TYPES = ("all", "hard", "semihard", "easy")

# Open window ends. Finite on purpose: paddle.searchsorted(right=True) miscounts a query of -inf (3.3.1).
_UNBOUNDED = 3.0e38


def margin_window(u, pos, neg, margin=0.2, type_of_triplets="all", distance=None):
    """PML ``TripletMarginMiner`` as a window: keep ``m <= margin`` ("all"), ``m <= min(margin, 0)``
    ("hard"), ``0 < m <= margin`` ("semihard") or ``m > margin`` ("easy"), ``m = u_an - u_ap``."""
    inf = _UNBOUNDED
    u_ap = u
    if type_of_triplets == "all":
        lo, hi = paddle.full_like(u, -inf), u_ap + margin
    elif type_of_triplets == "hard":
        lo, hi = paddle.full_like(u, -inf), u_ap + min(margin, 0.0)
    elif type_of_triplets == "semihard":
        lo, hi = u_ap, u_ap + margin
    elif type_of_triplets == "easy":
        lo, hi = u_ap + margin, paddle.full_like(u, inf)
    else:
        raise ValueError(f"type_of_triplets must be one of {TRIPLET_TYPES}, got {type_of_triplets!r}")
    return TripletWindow(u, pos, neg, lo, hi, distance)


def all_triplets(u, pos, neg, distance=None):
    """Every valid triplet (PML's default when no miner is given; "batch all")."""
    inf = _UNBOUNDED
    return TripletWindow(u, pos, neg, paddle.full_like(u, -inf), paddle.full_like(u, inf), distance)


def sorted_negatives(u, neg):
    """Each row's negative distances in ascending order (non-negatives pushed to +inf at the end).

    Returns ``(values [N, N], perm [N, N] int64, n_neg [N, 1] int64)``.
    """
    keyed = paddle.where(neg, u, paddle.full_like(u, float("inf")))
    perm = paddle.argsort(keyed, axis=1)
    values = paddle.take_along_axis(keyed, perm, axis=1)
    return values, perm, neg.astype("int64").sum(axis=1, keepdim=True)


def count_at_most(sorted_values, n_valid, x):
    """Per row ``a``: how many of the first ``n_valid[a]`` sorted values are ``<= x[a, j]``."""
    return paddle.minimum(paddle.searchsorted(sorted_values, x, right=True), n_valid)


def count_below(sorted_values, n_valid, x):
    """Per row ``a``: how many of the first ``n_valid[a]`` sorted values are ``< x[a, j]``."""
    return paddle.minimum(paddle.searchsorted(sorted_values, x, right=False), n_valid)


def window_bounds(window):
    """``(perm, c_lo, c_hi)``: the window of pair ``(a, p)`` is sorted positions ``[c_lo, c_hi)`` of row a."""
    values, perm, n_neg = sorted_negatives(window.u, window.neg)
    c_lo = count_at_most(values, n_neg, window.lo)
    c_hi = paddle.maximum(count_at_most(values, n_neg, window.hi), c_lo)
    zero = paddle.zeros_like(c_lo)
    c_hi = paddle.where(window.pos, c_hi, zero)
    c_lo = paddle.where(window.pos, c_lo, zero)
    return perm, c_lo, c_hi


def expand_window(window):
    """The window's triplets as PML returns them: lexicographic ``(a, p, n)``, ``n`` ascending by index."""
    n = window.u.shape[0]
    perm, c_lo, c_hi = window_bounds(window)
    counts = (c_hi - c_lo).reshape([-1])
    pair = paddle.arange(n * n, dtype="int64")
    owner = paddle.repeat_interleave(pair, counts)  # one entry per mined triplet
    starts = paddle.cumsum(counts) - counts  # first output slot of every pair
    offset = paddle.arange(owner.shape[0], dtype="int64") - paddle.gather(starts, owner)
    a = owner // n
    p = owner % n
    rank = paddle.gather(c_lo.reshape([-1]), owner) + offset
    neg_idx = paddle.gather_nd(perm, paddle.stack([a, rank], axis=1))
    # within a pair the negatives come in distance order; PML lists them by index
    order = paddle.argsort(owner * n + neg_idx)
    return Triplets(paddle.gather(a, order), paddle.gather(p, order), paddle.gather(neg_idx, order))


SEMIHARD_DEFINITIONS = ("pml", "tfa")


def semihard_tfa(u, pos, neg):
    """TF-Addons / FaceNet semi-hard: for every positive pair ``(a, p)`` (row-major) the negative with the
    smallest ``u_an > u_ap``; if there is none, the negative with the largest ``u_an``. Anchors without a
    negative are dropped. Needs no margin."""
    values, perm, n_neg = sorted_negatives(u, neg)
    first_above = count_at_most(values, n_neg, u)  # sorted position of the smallest u_an > u_ap
    fallback = paddle.clip(n_neg - 1, min=0).expand_as(first_above)
    rank = paddle.where(first_above < n_neg, first_above, fallback)
    chosen = paddle.take_along_axis(perm, rank, axis=1)
    keep = paddle.logical_and(pos, (n_neg > 0).expand_as(pos))
    ap = paddle.nonzero(keep)
    a, p = ap[:, 0], ap[:, 1]
    return Triplets(a, p, paddle.gather_nd(chosen, ap))


def semihard(u, pos, neg, margin=0.2, definition="pml", distance=None):
    """Semi-hard mining by ``definition``: ``"pml"`` = every ``0 < m <= margin`` triplet
    (PML ``TripletMarginMiner(type_of_triplets="semihard")``), ``"tfa"`` = :func:`semihard_tfa`."""
    if definition == "pml":
        return margin_window(u, pos, neg, margin, "semihard", distance)
    if definition == "tfa":
        return semihard_tfa(u, pos, neg)
    raise ValueError(f"definition must be one of {SEMIHARD_DEFINITIONS}, got {definition!r}")


def multi_similarity(u, pos, neg, epsilon=0.1, order=None):
    """PML ``MultiSimilarityMiner``: keep positive ``j`` of anchor ``i`` if ``u_ij + ε > min_k u_ik`` over
    negatives, and negative ``k`` if ``u_ik - ε < max_j u_ij`` over positives (for a similarity:
    ``s_ij - ε < max s_ik`` and ``s_ik + ε > min s_ij``). ``order`` (default ``u``) sorts pairs in
    :meth:`Pairs.indices`."""
    inf = float("inf")
    closest_neg = paddle.where(neg, u, paddle.full_like(u, inf)).min(axis=1, keepdim=True)
    farthest_pos = paddle.where(pos, u, paddle.full_like(u, -inf)).max(axis=1, keepdim=True)
    keep_pos = paddle.logical_and(pos, u + epsilon > closest_neg)
    keep_neg = paddle.logical_and(neg, u - epsilon < farthest_pos)
    return Pairs(keep_pos, keep_neg, u if order is None else order)


def pairs_to_tuple(mask, order=None):
    """Row-major ``(anchor, other)`` of a pair mask; within an anchor by ascending ``order`` if given."""
    if order is None:
        ij = paddle.nonzero(mask)
        return ij[:, 0], ij[:, 1]
    keyed = paddle.where(mask, order, paddle.full_like(order, float("inf")))
    perm = paddle.argsort(keyed, axis=1)
    counts = mask.astype("int64").sum(axis=1, keepdim=True)
    ranks = paddle.arange(mask.shape[1], dtype="int64").reshape([1, -1])
    ar = paddle.nonzero(ranks < counts)
    return ar[:, 0], paddle.gather_nd(perm, ar)


def triplets_to_pairs(triplets, n):
    """Boolean pair masks ``(a, p)`` and ``(a, n)`` of a triplet selection (duplicates collapse)."""
    a, p, neg = triplets.indices()
    pos_mask = paddle.zeros([n, n], dtype="float32")
    neg_mask = paddle.zeros([n, n], dtype="float32")
    ones = paddle.ones([a.shape[0]], dtype="float32")
    pos_mask = paddle.scatter_nd_add(pos_mask, paddle.stack([a, p], axis=1), ones)
    neg_mask = paddle.scatter_nd_add(neg_mask, paddle.stack([a, neg], axis=1), ones)
    return Pairs(pos_mask > 0, neg_mask > 0)
