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
