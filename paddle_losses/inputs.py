"""Boundary checks shared by every loss and head.

PaddleClas hands a loss ``(input, target)``: ``input`` is the model-output dict (``backbone``, ``neck``,
``features``, ``logits``), a bare Tensor, or a dict of sub-model dicts; ``target`` is an int64 label tensor
``[N, 1]`` (``[N]`` from other callers). These helpers pick the tensor a loss reads and validate shapes,
dtypes and values so that a bad batch fails here with a message saying what was expected, not deep inside
a Paddle kernel.

Mixed precision: float16 and bfloat16 tensors (what a model under ``paddle.amp.auto_cast`` hands a loss) are
cast to float32 here (:func:`compute_dtype`). Paddle's CPU build registers few half-precision kernels, and
the exponentials, soft-max and log-sum-exp of the losses overflow or lose all precision in 16 bits, so
every loss and head computes in float32 and returns float32; ``paddle.cast`` is differentiable, so the
gradient reaches the input in its own dtype. float64 is kept as is. Any other dtype is refused with an
InputError naming it and the accepted ones.

Value checks that need the host (NaN scan) run only in dynamic mode, so losses stay traceable by
``paddle.jit.to_static``; they can be switched off for speed with :func:`set_value_checks`.
"""
import paddle

from .errors import InputError

_VALUE_CHECKS = True


def set_value_checks(enabled):
    """Enable or disable the NaN/Inf scan of loss inputs (one scalar host sync per call). Returns the old value."""
    global _VALUE_CHECKS
    old, _VALUE_CHECKS = _VALUE_CHECKS, bool(enabled)
    return old


def _dynamic():
    return paddle.in_dynamic_mode()


def is_tensor(x):
    """True for eager tensors and for the values ``paddle.jit.to_static(full_graph=True)`` traces."""
    return isinstance(x, paddle.Tensor) or type(x).__name__ in ("Value", "Variable")


def pick(input, key, owner, allow_tensor=True):
    """Return ``input[key]``; a bare Tensor is taken as is when ``allow_tensor``.

    Raises InputError naming ``owner`` (the loss), the missing key and the keys that are present.
    """
    if is_tensor(input):
        if allow_tensor:
            return input
        raise InputError(f"{owner} expects a dict of model outputs with key {key!r}, got a bare Tensor")
    if isinstance(input, dict):
        if key in input:
            return input[key]
        raise InputError(
            f"{owner} reads input[{key!r}], but the model output has keys {sorted(map(str, input))}; "
            f"set the loss's key parameter (e.g. feature_from) to one of them")
    raise InputError(f"{owner} expects a dict of model outputs or a Tensor, got {type(input).__name__}")


ACCEPTED_FLOAT_DTYPES = ("float16", "bfloat16", "float32", "float64")
_HALF = (paddle.float16, paddle.bfloat16)


def _dtype_name(dtype):
    return str(dtype).replace("paddle.", "")


def compute_dtype(x, owner, what="input", allow_float64=True):
    """Return ``x`` in the dtype a loss computes in: float16/bfloat16 -> float32, float32/float64 unchanged.

    Raises InputError naming the dtype and the accepted ones for integer, bool, complex or other tensors.
    """
    if x.dtype in _HALF:
        return paddle.cast(x, "float32")
    if x.dtype == paddle.float32 or (allow_float64 and x.dtype == paddle.float64):
        return x
    accepted = ACCEPTED_FLOAT_DTYPES if allow_float64 else ACCEPTED_FLOAT_DTYPES[:3]
    raise InputError(f"{owner}: {what} must be a floating-point tensor ({', '.join(accepted)}), "
                     f"got {_dtype_name(x.dtype)}")


def check_finite(x, owner, what="input"):
    """Raise InputError if ``x`` holds NaN or Inf (dynamic mode only)."""
    if _VALUE_CHECKS and _dynamic() and x.size > 0 and not bool(paddle.isfinite(x).all()):
        raise InputError(f"{owner}: {what} contains NaN or Inf values; expected finite numbers "
                         f"(check the learning rate and the model output)")


def check_features(x, owner, what="features", ndim=2, allow_float64=True):
    """Validate a float feature tensor of rank ``ndim`` with a non-empty batch and finite values.

    Returns it in its compute dtype (:func:`compute_dtype`: half precision comes back as float32); callers
    must use the returned tensor.
    """
    if not is_tensor(x):
        raise InputError(f"{owner}: {what} must be a paddle.Tensor, got {type(x).__name__}")
    if ndim is not None and x.ndim != ndim:
        expected = "[N, D]" if ndim == 2 else f"rank {ndim}"
        raise InputError(f"{owner}: {what} must have shape {expected}, got shape {list(x.shape)}")
    if not allow_float64 and x.dtype == paddle.float64:
        raise InputError(f"{owner}: {what} must be float16, bfloat16 or float32 (state is float32), got float64")
    x = compute_dtype(x, owner, what, allow_float64)
    if _dynamic() and x.ndim >= 1 and x.shape[0] == 0:
        raise InputError(f"{owner}: empty batch ({what} has shape {list(x.shape)}); expected at least one sample")
    check_finite(x, owner, what)
    return x


def check_labels(label, n, owner, what="label"):
    """Validate integer class labels for a batch of ``n`` and return them as int64 ``[n]``.

    Accepts ``[n]`` and ``[n, 1]`` (what PaddleClas's engine delivers).
    """
    if label is None:
        raise InputError(f"{owner} needs {what}s (int64 tensor of shape [N] or [N, 1]), got None")
    if not is_tensor(label):
        label = paddle.to_tensor(label)
    if paddle.is_floating_point(label):
        raise InputError(f"{owner}: {what} must hold integer class ids (int64), got {label.dtype}; "
                         f"soft or one-hot labels are not accepted here")
    if label.dtype == paddle.bool:
        raise InputError(f"{owner}: {what} must hold integer class ids, got bool")
    shape = list(label.shape)
    if label.ndim == 2 and shape[1] == 1:
        label = label.reshape([-1])
    elif label.ndim != 1:
        raise InputError(f"{owner}: {what} must have shape [N] or [N, 1], got {shape}")
    if label.shape[0] != n:
        raise InputError(f"{owner}: {what} has {label.shape[0]} entries but the batch has {n} samples")
    if label.dtype != paddle.int64:
        label = label.astype("int64")
    return label


def keyed_features_and_labels(input, target, key, owner):
    """``(features [N, D], labels [N] int64)`` of a loss that reads ``input[key]`` and a label per row."""
    x = check_features(pick(input, key, owner), owner, f"input[{key!r}]")
    return x, check_labels(target, x.shape[0], owner)
