"""Label masks over a query × key grid (``[N]`` query labels, ``[M]`` key labels -> ``[N, M]`` bool)."""
import paddle


def same_label(labels, key_labels=None):
    """``pos_ij = [y_i == k_j]`` (the diagonal is included when keys are the queries)."""
    key_labels = labels if key_labels is None else key_labels
    return labels.reshape([-1, 1]) == key_labels.reshape([1, -1])


def positive_negative(labels, key_labels=None, exclude_self=False):
    """Return ``(pos, neg)`` bool masks; ``exclude_self`` drops the diagonal from ``pos`` (square case only)."""
    pos = same_label(labels, key_labels)
    neg = paddle.logical_not(pos)
    if exclude_self:
        n = labels.shape[0]
        # Paddle has no bool kernel for eye on CPU.
        pos = paddle.logical_and(pos, paddle.eye(n, dtype="int32") == 0)
    return pos, neg
