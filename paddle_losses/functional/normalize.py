"""Row normalisation variants used by PaddleClas losses.

PaddleClas normalises features in three numerically different ways; each loss names the one it uses
and parity at 1e-5 depends on picking the same one.

* ``plain``: ``x / ||x||``, no epsilon (a zero row gives NaN).
* ``clamp``: ``x / max(||x||, eps)`` -- what ``paddle.nn.functional.normalize`` computes.
* ``add``:   ``x / (||x|| + eps)``.

The norm is written out as ``sqrt(Σ x²)`` rather than taken from ``paddle.linalg.norm``: same values, but
the backward of Paddle's ``p_norm`` kernel costs about ten times more on CPU. For rows of a matrix the
sum of squares is a matrix-vector product and the division a multiplication by ``rsqrt`` or the
reciprocal (same values to rounding; forward + backward of ``[256, 128]`` drops from 220–280 to 165–230
µs, a tenth of a step at that size).

Scale safety: ``Σ x²`` overflows float32 once a row's entries pass about 1e19 (and underflows below about
1e-19, which breaks ``plain``). A row whose magnitude (L1 norm) lies outside ``[2^-40, 2^41)`` is therefore
first multiplied by a power of two ``2^-k`` (``k`` about the exponent of its magnitude), an exact operation, and the
epsilon with it where the variant has one, so the result is the same function of ``x``; every other row is
multiplied by exactly 1. In dynamic mode the rescaled path runs only when a sum of squares came out
non-finite (or, for ``plain``, below 2^-100), found with one scalar host sync; ordinary inputs therefore
take the unscaled path with bit-identical values and gradients and pay one small check. The factor is computed
without gradient (the normalised row does not depend on it). Half-precision input is computed in float32
and returned in float32.
"""
import paddle

from .reduction import row_sum

VARIANTS = ("plain", "clamp", "add")

# Below this squared norm the ``add`` variant's norm is 1e-15 instead of the exact value, far under its
# epsilon, so values are unchanged while the square root's gradient stays finite on a zero row.
_ADD_FLOOR = 1e-30

# Rows whose L1-norm exponent lies within [-_SAFE_EXP, _SAFE_EXP] are left unscaled: their squares and sums
# stay far inside float32's range (2^80 * D even for D ~ 1e14).
_SAFE_EXP = 40
# Variants with an epsilon scale it (and its square) with the row: a factor above 2^60 would overflow eps²
# in float32. Rows that small have a norm far below eps anyway, so the variant's floor decides them.
_MAX_UPSCALE_EXP = 60
_L1_PRESCALE_EXP = 64
_PLAIN_MIN_SQ = 2.0 ** -100  # below this a float32 sum of squares may have lost digits to underflow
_L1_PRESCALE = 2.0 ** -_L1_PRESCALE_EXP


def _row_scale(x, axis, with_eps, rows):
    """``2^-k`` per row (kept dims) where the row's magnitude is outside the safe range, else exactly 1.

    ``k`` comes from the row's L1 norm (a matrix-vector product, much cheaper on CPU than a max-abs
    reduction), taken of ``|x| * 2^-64`` so that it cannot overflow: ``max|x| <= ||x||_1 <= D * max|x|``, so
    the scaled row's largest entry lies in ``[1/(2D), 2]``, enough for its sum of squares.
    """
    a = paddle.abs(x.detach()) * _L1_PRESCALE
    l1 = row_sum(a, keepdim=True) if rows else a.sum(axis=axis, keepdim=True)
    tiny = float(paddle.finfo(x.dtype).tiny)
    k = paddle.floor(paddle.log2(paddle.clip(l1, min=tiny))) + _L1_PRESCALE_EXP
    k = paddle.where(paddle.abs(k) > _SAFE_EXP, k, paddle.zeros_like(k))
    if with_eps:
        k = paddle.clip(k, min=-_MAX_UPSCALE_EXP)
    return paddle.pow(paddle.full_like(k, 2.0), -k)


def _sum_sq(x, axis, rows):
    return row_sum(x * x, keepdim=True) if rows else (x * x).sum(axis=axis, keepdim=True)


def _in_range(sq, variant):
    """True when every row's sum of squares is usable as is (one scalar host sync)."""
    ok = paddle.isfinite(sq).all()
    if variant == "plain":
        ok = ok & (sq.min() >= _PLAIN_MIN_SQ)
    return bool(ok)


def l2_normalize(x, variant="clamp", axis=-1, eps=1e-12):
    """Normalise ``x`` to unit L2 norm along ``axis`` with the given variant (see module docstring)."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown normalisation variant {variant!r}; expected one of {VARIANTS}")
    if x.dtype in (paddle.float16, paddle.bfloat16):
        x = paddle.cast(x, "float32")
    rows = x.ndim == 2 and axis in (-1, 1)
    sq = _sum_sq(x, axis, rows)
    if paddle.in_dynamic_mode() and _in_range(sq, variant):
        return _divide(x, sq, variant, eps)
    # some row's sum of squares overflowed (or, for ``plain``, underflowed): redo it on rescaled rows. While
    # tracing this path is taken for every input (same values, a few more operations).
    scale = _row_scale(x, axis, variant != "plain", rows)
    x = x * scale
    sq = _sum_sq(x, axis, rows)
    if variant == "plain":
        return x * paddle.rsqrt(sq)
    eps = eps * scale  # the same function of the unscaled row; exactly eps where scale is 1
    if variant == "clamp":
        return x * paddle.rsqrt(paddle.maximum(sq, eps * eps))
    return x * paddle.reciprocal(paddle.sqrt(paddle.maximum(sq, _ADD_FLOOR * scale * scale)) + eps)


def _divide(x, sq, variant, eps):
    """``x`` over its norm from the row sums of squares ``sq`` (scalar ``eps``)."""
    if variant == "plain":
        return x * paddle.rsqrt(sq)
    if variant == "clamp":
        # max(sqrt(s), eps) == sqrt(max(s, eps²)), and the clip keeps the gradient finite on a zero row.
        return x * paddle.rsqrt(paddle.clip(sq, min=eps * eps))
    return x * paddle.reciprocal(paddle.sqrt(paddle.clip(sq, min=_ADD_FLOOR)) + eps)
