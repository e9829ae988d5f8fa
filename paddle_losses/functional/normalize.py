"""Row normalisation variants used by PaddleClas losses.

PaddleClas normalises features in three numerically different ways; each loss names the one it uses
and parity at 1e-5 depends on picking the same one.

* ``plain``: ``x / ||x||``, no epsilon (a zero row gives NaN).
* ``clamp``: ``x / max(||x||, eps)`` -- what ``paddle.nn.functional.normalize`` computes.
* ``add``:   ``x / (||x|| + eps)``.

The norm is written out as ``sqrt(Σ x²)`` rather than taken from ``paddle.linalg.norm``: same values, but
the backward of Paddle's ``p_norm`` kernel costs about ten times more on CPU.
"""
import paddle

VARIANTS = ("plain", "clamp", "add")

# Below this squared norm the ``add`` variant's norm is 1e-15 instead of the exact value, far under its
# epsilon, so values are unchanged while the square root's gradient stays finite on a zero row.
_ADD_FLOOR = 1e-30


def l2_normalize(x, variant="clamp", axis=-1, eps=1e-12):
    """Normalise ``x`` to unit L2 norm along ``axis`` with the given variant (see module docstring)."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown normalisation variant {variant!r}; expected one of {VARIANTS}")
    sq = (x * x).sum(axis=axis, keepdim=True)
    if variant == "plain":
        return x / paddle.sqrt(sq)
    if variant == "clamp":
        # max(sqrt(s), eps) == sqrt(max(s, eps²)), and the clip keeps the gradient finite on a zero row.
        return x / paddle.sqrt(paddle.clip(sq, min=eps * eps))
    return x / (paddle.sqrt(paddle.clip(sq, min=_ADD_FLOOR)) + eps)
