"""Supervised contrastive losses (Khosla et al. 2020): SupConLoss and CCSSL's SoftSupConLoss."""
from typing import Literal

import paddle
import paddle.nn as nn

from ..errors import InputError
from ..functional.masks import same_label
from ..functional.normalize import l2_normalize
from ..functional.reduction import masked_mean
from ..functional.supcon import supcon_rows
from ..inputs import check_features, check_finite, check_labels, pick
from ..registry import register_loss


def view_major(x):
    """``[B, V, D]`` -> ``[V·B, D]``: row ``v·B + a`` is view ``v`` of identity ``a``."""
    b, v, d = x.shape
    return x.transpose([1, 0, 2]).reshape([-1, d])


def _check_contrast_params(owner, contrast_mode, temperature, base_temperature):
    if contrast_mode not in ("all", "one"):
        raise ValueError(f"{owner}: contrast_mode must be 'all' or 'one', got {contrast_mode!r}")
    if temperature <= 0 or base_temperature <= 0:
        raise ValueError(f"{owner}: temperature and base_temperature must be > 0, got {temperature} and "
                         f"{base_temperature}")


def _anchor_views(views, contrast_mode):
    """Views per identity that serve as anchors: all (``'all'``) or view 0 only (``'one'``); the anchors are
    the first rows of the view-major contrast set."""
    return views if contrast_mode == "all" else 1


@register_loss
class SupConLoss(nn.Layer):
    """Supervised contrastive loss over ``views`` augmented views per identity, PaddleClas ``SupConLoss``.

    Layout: the ``N`` feature rows are consecutive groups of ``views`` rows, the views of one identity
    (``B = N / views`` identities); the identity's label is the label of its **first** row (the others are
    not read, as in PaddleClas). Math: features are normalised ``x/(||x|| + 1e-12)`` (if
    ``normalize_feature``), arranged view-major (row ``v·B + a``), and for each anchor ``r``
    ``ℓ_r = −(T/T_base)·mean_{k ∈ P(r)} [z_rk − ln Σ_{k'≠r} exp z_rk']`` with ``z = anchor·contrastᵀ/T`` and
    ``P(r)`` the other rows of the same label; ``loss = mean_r ℓ_r``.

    Args:
        views: rows per identity V. temperature: T. base_temperature: T_base.
        contrast_mode: ``'all'`` (every row is an anchor) or ``'one'`` (only view 0 of each identity is an
            anchor, contrasted against all rows, as in the SupCon paper).
        normalize_feature: L2-normalise the features first.

    Reads ``input['features']`` (or a bare Tensor) ``[N, D]`` and int labels (N entries, ``[N]``/``[N, 1]``;
    None gives the unsupervised SimCLR mask, or pass ``mask [B, B]``). Returns ``{"SupConLoss": loss}``.

    Divergences (docs/compatibility.md): the number of identities is computed from every batch (PaddleClas
    caches it from the first batch, so a smaller last batch crashes); ``contrast_mode='one'`` works
    (PaddleClas crashes); anchors without any positive (``views=1`` and a unique label) are left out of the
    mean instead of making the loss NaN.
    """

    input_keys = ("features",)
    output_keys = ("SupConLoss",)

    def __init__(self, views: int = 16, temperature: float = 0.07, contrast_mode: Literal["all", "one"] = "all",
                 base_temperature: float = 0.07, normalize_feature: bool = True):
        super().__init__()
        if views < 1:
            raise ValueError(f"SupConLoss: views must be >= 1, got {views}")
        _check_contrast_params("SupConLoss", contrast_mode, temperature, base_temperature)
        self.views = views
        self.temperature = temperature
        self.contrast_mode = contrast_mode
        self.base_temperature = base_temperature
        self.normalize_feature = normalize_feature

    def forward(self, features, labels=None, mask=None):
        name = type(self).__name__
        x = check_features(pick(features, "features", name), name)
        n, d = x.shape
        if n % self.views:
            raise InputError(f"{name}: the batch has {n} rows, not a multiple of views={self.views}; each "
                             f"identity must contribute exactly {self.views} consecutive rows")
        num_ids = n // self.views
        if self.normalize_feature:
            x = l2_normalize(x, "add", axis=1)
        contrast = view_major(x.reshape([num_ids, self.views, d]))
        positive = self._identity_mask(labels, mask, n, num_ids, x.dtype)
        anchor_views = _anchor_views(self.views, self.contrast_mode)
        positive = paddle.tile(positive, [anchor_views, self.views])
        rows, valid = supcon_rows(contrast, anchor_views * num_ids, positive, self.temperature,
                                  self.base_temperature)
        return {"SupConLoss": masked_mean(rows, valid)}

    def _identity_mask(self, labels, mask, n, num_ids, dtype):
        """``[B, B]`` positives between identities: same label of the groups' first rows (or SimCLR / ``mask``)."""
        name = type(self).__name__
        if labels is not None and mask is not None:
            raise InputError(f"{name}: pass labels or mask, not both")
        if labels is not None:
            ids = check_labels(labels.reshape([-1]) if isinstance(labels, paddle.Tensor) else labels, n, name)
            first_view = ids.reshape([num_ids, self.views])[:, 0]
            return same_label(first_view).astype(dtype)
        if mask is None:
            return paddle.eye(num_ids, dtype=dtype)
        if list(mask.shape) != [num_ids, num_ids]:
            raise InputError(f"{name}: mask must have shape [B, B] = {[num_ids, num_ids]}, got {list(mask.shape)}")
        return mask.astype(dtype)


@register_loss
class SoftSupConLoss(nn.Layer):
    """Confidence-weighted supervised contrastive loss of CCSSL, PaddleClas ``SoftSupConLoss``.

    Math: for ``feat [B, V, D]`` (V = 2 in CCSSL: two strong augmentations; no normalisation inside),
    pseudo-labels ``l`` and confidences ``p``: ``M_ab = [l_a = l_b]·p_a·p_b`` tiled over the views, and
    ``ℓ_r = −(T/T_base)·Σ_k M_rk log p_rk / Σ_k M_rk`` (self-pair excluded) as in SupConLoss.
    The loss is **float64**, as in PaddleClas (whose float64 self-exclusion mask promotes the whole
    ``[V·B, V·B]`` computation); here that computation runs in ``feat``'s dtype and only the per-anchor rows
    are cast (same values to float32 rounding, a third of the memory; the gradient to ``feat`` is float32).

    Args:
        temperature: T. base_temperature: T_base. contrast_mode: ``'all'`` or ``'one'`` (view 0 anchors).

    ``forward(feat, batch, max_probs=None, labels=None, mask=None, reduction="mean", select_matrix=None)``:
    ``batch['max_probs']`` (float ``[B]``) and ``batch['p_targets_u_w']`` (int ``[B]``) take precedence over the
    keyword arguments; ``mask`` and ``select_matrix`` are accepted and unused, as in PaddleClas.
    ``reduction="mean"`` gives a scalar, anything else the ``[anchor views, B]`` matrix.
    Returns ``{"SoftSupConLoss": loss}``.

    Divergences (docs/compatibility.md): any V ≥ 2 works (PaddleClas: exactly 2); ``contrast_mode='one'``
    works (PaddleClas: UnboundLocalError); anchors with zero total confidence weight (``max_prob = 0``)
    contribute 0 and leave the mean instead of making it NaN.
    """

    input_keys = ()
    target_keys = ("max_probs", "p_targets_u_w")
    output_keys = ("SoftSupConLoss",)

    def __init__(self, temperature: float = 0.07, contrast_mode: Literal["all", "one"] = "all",
                 base_temperature: float = 0.07):
        super().__init__()
        _check_contrast_params("SoftSupConLoss", contrast_mode, temperature, base_temperature)
        self.temperature = temperature
        self.contrast_mode = contrast_mode
        self.base_temperature = base_temperature

    def forward(self, feat, batch=None, max_probs=None, labels=None, mask=None, reduction="mean",
                select_matrix=None):
        name = type(self).__name__
        feat = check_features(feat, name, what="feat", ndim=3)
        b, v, _ = feat.shape
        if v < 2:
            raise InputError(f"{name}: feat must have shape [B, V, D] with V >= 2 views, got {list(feat.shape)}")
        if isinstance(batch, dict):
            max_probs = batch.get("max_probs", max_probs)
            labels = batch.get("p_targets_u_w", labels)
        if max_probs is None or labels is None:
            raise InputError(f"{name} needs batch['max_probs'] and batch['p_targets_u_w'] (or the max_probs and "
                             f"labels arguments)")
        ids = check_labels(labels, b, name, what="p_targets_u_w")
        probs = max_probs.reshape([-1])
        if not paddle.is_floating_point(probs) or probs.shape[0] != b:
            raise InputError(f"{name}: max_probs must be float with {b} entries, got {probs.dtype} "
                             f"{list(max_probs.shape)}")
        check_finite(probs, name, "max_probs")
        probs = probs.astype(feat.dtype)
        weights = same_label(ids).astype(feat.dtype) * probs.unsqueeze(1) * probs.unsqueeze(0)
        contrast = view_major(feat)
        anchor_views = _anchor_views(v, self.contrast_mode)
        positive = paddle.tile(weights, [anchor_views, v])
        rows, valid = supcon_rows(contrast, anchor_views * b, positive, self.temperature, self.base_temperature)
        rows = rows.astype("float64")
        if reduction == "mean":
            return {"SoftSupConLoss": masked_mean(rows, valid)}
        return {"SoftSupConLoss": rows.reshape([anchor_views, b])}
