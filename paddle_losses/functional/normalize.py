"""Row normalisation variants used by PaddleClas losses.

PaddleClas normalises features in three numerically different ways; each loss names the one it uses
and parity at 1e-5 depends on picking the same one.

* ``plain``: ``x / ||x||``, no epsilon (a zero row gives NaN).
* ``clamp``: ``x / max(||x||, eps)`` -- ``paddle.nn.functional.normalize``.
* ``add``:   ``x / (||x|| + eps)``.
"""
import paddle
import paddle.nn.functional as F

VARIANTS = ("plain", "clamp", "add")


def l2_normalize(x, variant="clamp", axis=-1, eps=1e-12):
    """Normalise ``x`` to unit L2 norm along ``axis`` with the given variant (see module docstring)."""
    if variant == "clamp":
        return F.normalize(x, p=2, axis=axis, epsilon=eps)
    norm = paddle.linalg.norm(x, p=2, axis=axis, keepdim=True)
    if variant == "plain":
        return x / norm
    if variant == "add":
        return x / (norm + eps)
    raise ValueError(f"unknown normalisation variant {variant!r}; expected one of {VARIANTS}")
