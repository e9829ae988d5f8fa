"""Reductions that respect rows excluded from the loss (anchors without a positive or negative)."""
import paddle

REDUCTIONS = ("mean", "sum", "none")


def masked_mean(values, valid=None):
    """Mean of ``values`` over entries where ``valid`` is True.

    With no valid entry the result is ``0 · sum(values)``: zero, but still connected to the graph, so
    ``backward()`` works and no NaN appears.
    """
    if valid is None:
        return values.mean()
    w = valid.astype(values.dtype)
    return (values * w).sum() / paddle.clip(w.sum(), min=1.0)


def reduce(values, reduction, valid=None):
    """Apply ``reduction`` (``mean``/``sum``/``none``) to per-row ``values``; invalid rows count as 0."""
    if reduction == "mean":
        return masked_mean(values, valid)
    if valid is not None:
        values = values * valid.astype(values.dtype)
    if reduction == "sum":
        return values.sum()
    if reduction == "none":
        return values
    raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
