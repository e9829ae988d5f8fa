"""Metric-learning diagnostics computed by the trainer from a batch's embeddings (the losses are untouched).

On the L2-normalised embeddings the trainer reads (the ``feature_from`` key of the first loss that has
one, else ``features``), with cosine similarity ``S``:

* ``hardest_pos_sim``: mean over anchors with a positive of the least similar positive's similarity;
* ``hardest_neg_sim``: mean over anchors with a negative of the most similar negative's similarity;
* ``active_triplets``: share of anchors whose batch-hard triplet still violates the margin,
  ``S_an - S_ap + margin > 0`` (``margin`` from that loss, default 0.5 -- in cosine units, which matches
  TripletAngularMarginLoss and normalised TripletLossV2 only approximately, hence "diagnostic");
* ``xbm_fill``: filled share of a cross-batch memory, when a loss has one (read from its buffers).
"""
import paddle

from ..functional.masks import positive_negative
from ..functional.mining import hardest_positive_negative
from ..functional.normalize import l2_normalize
from ..memory import CrossBatchMemory


def feature_key_and_margin(loss):
    """``(input key, margin)`` of the first loss with ``feature_from`` or ``margin`` (``("features", 0.5)``)."""
    for sub in getattr(loss, "loss_func", []):
        key = getattr(sub, "feature_from", None)
        margin = getattr(sub, "margin", None)
        if key is not None or margin is not None:
            try:
                margin = float(margin) if margin is not None else 0.5
            except (TypeError, ValueError):
                margin = 0.5
            return (key if isinstance(key, str) else "features"), margin
    return "features", 0.5


def memory_fill(loss):
    """Filled fraction of the first cross-batch memory in ``loss``, or None if it has none."""
    for sub in loss.sublayers(include_self=True):
        if isinstance(sub, CrossBatchMemory):
            return min(1.0, float(sub.filled) / sub.size)
    return None


@paddle.no_grad()
def batch_diagnostics(out, labels, key, margin):
    """Diagnostics dict for one batch (empty if the embeddings are not a 2-D tensor)."""
    feat = out.get(key) if isinstance(out, dict) else out
    if not isinstance(feat, paddle.Tensor) or feat.ndim != 2 or feat.shape[0] < 2:
        return {}
    feat = l2_normalize(feat.astype("float32"), "clamp")
    sim = paddle.matmul(feat, feat, transpose_y=True)
    labels = labels.reshape([-1])
    pos, neg = positive_negative(labels)
    # functional.masks' exclude_self builds a bool eye, which Paddle 3.3.1 CPU has no kernel for
    not_self = paddle.eye(labels.shape[0], dtype="int32") == 0
    pos = paddle.logical_and(pos, not_self)
    ap, an, vp, vn = hardest_positive_negative(sim, pos, neg, larger_is_closer=True)
    both = paddle.logical_and(vp, vn).astype("float32")
    res = {}
    if float(vp.astype("float32").sum()) > 0:
        res["hardest_pos_sim"] = float((ap * vp.astype("float32")).sum() / vp.astype("float32").sum())
    if float(vn.astype("float32").sum()) > 0:
        res["hardest_neg_sim"] = float((an * vn.astype("float32")).sum() / vn.astype("float32").sum())
    if float(both.sum()) > 0:
        active = ((an - ap + margin) > 0).astype("float32") * both
        res["active_triplets"] = float(active.sum() / both.sum())
    return res


@paddle.no_grad()
def nonfinite_report(out, labels, key):
    """Why a batch may have produced a NaN/Inf loss, as a short text: batch size, anchors without a positive
    or a negative in the batch, the range of the embedding norms and how many embedding values are not finite."""
    labels = labels.reshape([-1])
    n = int(labels.shape[0])
    parts = [f"{n} samples"]
    if n >= 1:
        pos, neg = positive_negative(labels)
        has_pos = (pos.astype("int32").sum(axis=1) > 1)  # the diagonal is the anchor itself
        has_neg = (neg.astype("int32").sum(axis=1) > 0)
        parts.append(f"{n - int(has_pos.astype('int32').sum())} anchors without a positive")
        parts.append(f"{n - int(has_neg.astype('int32').sum())} without a negative")
    feat = out.get(key) if isinstance(out, dict) else out
    if isinstance(feat, paddle.Tensor) and feat.ndim == 2:
        feat = feat.astype("float32")
        finite = paddle.isfinite(feat)
        parts.append(f"{int((~finite).astype('int32').sum())} non-finite values in {key!r}")
        norms = paddle.linalg.norm(paddle.where(finite, feat, paddle.zeros_like(feat)), axis=1)
        parts.append(f"{key!r} norms in [{float(norms.min()):.4g}, {float(norms.max()):.4g}]")
    return ", ".join(parts)
