"""Boundary checks for a student/teacher pair of tensors (shared by every distillation base loss)."""
import paddle

from ...errors import InputError
from ...inputs import check_features, check_labels, is_tensor


def check_pair(student, teacher, owner, same_shape=True, ndim=None, names=("student", "teacher")):
    """Validate two float tensors; ``same_shape`` demands equal shapes, otherwise equal batch sizes.

    Returns both in their compute dtype (float16/bfloat16 come back as float32, see
    ``paddle_losses.inputs.compute_dtype``); callers must use the returned pair. Raises InputError naming
    ``owner``, what was expected and the shapes found.
    """
    s_name, t_name = names
    student = check_features(student, owner, what=f"{s_name} input", ndim=ndim)
    teacher = check_features(teacher, owner, what=f"{t_name} input", ndim=ndim)
    if same_shape and list(student.shape) != list(teacher.shape):
        raise InputError(f"{owner}: {s_name} and {t_name} must have the same shape, got {s_name} "
                         f"{list(student.shape)} and {t_name} {list(teacher.shape)}")
    if student.shape[0] != teacher.shape[0]:
        raise InputError(f"{owner}: {s_name} and {t_name} must have the same batch size, got "
                         f"{student.shape[0]} and {teacher.shape[0]}")
    return student, teacher


def optional_labels(target, n, num_classes, owner):
    """``None`` stays None; otherwise int class ids ``[N]``/``[N, 1]`` in ``[0, C)``, returned as ``[N]``.

    The range check needs one host sync and runs in dynamic mode only (one_hot would silently give a zero
    row for an id >= C).
    """
    if target is None:
        return None
    labels = check_labels(target, n, owner, what="target")
    if paddle.in_dynamic_mode() and bool(paddle.logical_or(labels < 0, labels >= num_classes).any()):
        raise InputError(f"{owner}: target holds class ids outside 0..{num_classes - 1} "
                         f"(the logits have {num_classes} classes)")
    return labels


def check_rank(x, ndim, owner, what, hint=""):
    """InputError unless ``x`` has rank ``ndim`` (``hint`` says how to fix it)."""
    if not is_tensor(x) or x.ndim != ndim:
        got = list(x.shape) if is_tensor(x) else type(x).__name__
        raise InputError(f"{owner}: {what} must have rank {ndim}, got {got}{hint}")
    return x
