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
import paddle


def _fill(values, mask, fill):
    return paddle.where(mask, values, paddle.full_like(values, fill))


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
    big = float("inf")
    sentinel = -big if mode == "max" else big
    valid = mask.any(axis=1)
    with paddle.no_grad():
        filled = _fill(values.detach(), mask, sentinel)
        if ties == "first":
            idx = (paddle.argmax if mode == "max" else paddle.argmin)(filled, axis=1, keepdim=True)
        elif ties == "split":
            ext = (filled.max if mode == "max" else filled.min)(axis=1, keepdim=True)
            weight = paddle.logical_and(filled == ext, mask).astype(values.dtype)
            weight = weight / paddle.clip(weight.sum(axis=1, keepdim=True), min=1.0)
        else:
            raise ValueError(f"ties must be 'split' or 'first', got {ties!r}")
    if ties == "first":
        picked = paddle.take_along_axis(values, idx, axis=1).squeeze(1)
        return paddle.where(valid, picked, paddle.zeros_like(picked)), valid
    safe = paddle.where(mask, values, paddle.zeros_like(values))
    return (safe * weight).sum(axis=1), valid


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
