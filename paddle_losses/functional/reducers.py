"""pytorch-metric-learning style reducers: turn per-element losses into one scalar.

* ``MeanReducer``: mean over all valid elements (zeros included).
* ``AvgNonZeroReducer``: mean over the valid elements that are strictly > 0 (PML's default for triplet,
  contrastive, circle and SupCon losses).
* ``SumReducer``: plain sum.
* ``DivisorReducer``: sum / a divisor given by the loss (ProxyAnchor).

Whenever nothing is counted the result is ``0 · sum(losses)``: zero, still connected to the graph (PML
returns ``sum(embeddings · 0)``), so ``backward()`` works and yields zero gradients.

Two entry points: :func:`reduce_elements` for a tensor of per-element losses (optionally with a ``valid``
mask), and :func:`reduce_totals` for losses that were already aggregated into
``(sum, count of elements, count of elements > 0)`` (the windowed triplet path never builds the elements).
"""
import paddle

REDUCERS = ("MeanReducer", "AvgNonZeroReducer", "SumReducer")


def check_reducer(name):
    if name not in REDUCERS:
        raise ValueError(f"reducer must be one of {REDUCERS}, got {name!r}")
    return name


def _divide(total, count):
    count = count.astype(total.dtype)
    return paddle.where(count > 0, total / paddle.clip(count, min=1.0), total * 0.0)


def reduce_elements(losses, reducer="MeanReducer", valid=None):
    """Reduce per-element ``losses`` (any shape) with ``reducer``; ``valid`` (bool, same shape) masks elements."""
    check_reducer(reducer)
    keep = paddle.ones_like(losses, dtype="bool") if valid is None else valid
    if reducer == "AvgNonZeroReducer":
        keep = paddle.logical_and(keep, losses > 0)
    w = keep.astype(losses.dtype)
    total = (losses * w).sum()
    if reducer == "SumReducer":
        return total
    return _divide(total, w.sum())


def reduce_totals(total, count, count_positive, reducer="MeanReducer"):
    """Reduce an aggregated loss: ``total`` (sum of elements), ``count``, ``count_positive`` (elements > 0)."""
    check_reducer(reducer)
    if reducer == "SumReducer":
        return total
    return _divide(total, count if reducer == "MeanReducer" else count_positive)


def divisor_reduce(total, divisor):
    """``total / divisor`` (``DivisorReducer``); 0 (connected) when ``divisor == 0``."""
    return _divide(total, divisor)
