"""CenterLoss (Wen et al., ECCV 2016): pull each feature towards a learned center of its class."""
import paddle
import paddle.nn as nn

from ..errors import InputError
from ..inputs import check_features, check_labels, pick
from ..registry import register_loss
from .ce import check_class_ids

_CLIP_MIN, _CLIP_MAX = 1e-12, 1e12


@register_loss
class CenterLoss(nn.Layer):
    """Squared distance of each feature to its class center, PaddleClas ``CenterLoss``.

    Math: ``d_ij = ||x_i||² + ||c_j||² − 2·x_i·c_j`` (``[N, C]``), ``mask_ij = [y_i = j]``,
    ``loss = Σ_ij clip(d_ij·mask_ij, 1e-12, 1e12) / N``. The clip comes after the mask, so every masked-out
    entry adds 1e-12: the loss carries a constant ``(C − 1)·1e-12`` (PaddleClas quirk, kept; numerically
    negligible, no gradient). Only the entry ``j = y_i`` of each row survives the mask, so it is computed
    per row from the gathered center: ``O(N·D)`` time and memory, no ``[N, C]`` matrix (same values).

    Args:
        num_classes: C. feat_dim: D.
        feature_from: key of the input dict holding the ``[N, D]`` features.
        center_update: opt-in (not in PaddleClas). False (default): ``centers`` is an ordinary parameter that
            an optimizer trains from the loss gradient ``∂L/∂c_j = (2/N)·Σ_{y_i=j}(c_j − x_i)``; PaddleClas
            configs give it its own SGD (``scope: CenterLoss``) at learning rate 1000 = 0.5/0.0005 to undo the
            loss weight. True: the paper's rule instead -- in training mode each forward moves the centers
            of the classes present, without gradient and without an optimizer,
            ``c_j ← c_j − α·Σ_{y_i=j}(c_j − x_i) / (1 + n_j)`` (``n_j`` = samples of class j in the batch); the
            loss is computed with the centers before the update and gives no gradient to them
            (``centers.stop_gradient`` is set). Use it to drop the second optimizer and its odd learning rate.
        alpha: the paper's center learning rate α for ``center_update`` (0 < α ≤ 1).

    State: parameter ``centers [num_classes, feat_dim]`` drawn from ``paddle.randn`` (Paddle's global RNG), as
    in PaddleClas; in CombinedLoss it is ``loss_func.<i>.centers``.
    Reads ``input[feature_from]`` (or a bare Tensor) and int labels ``[N]``/``[N, 1]``.
    Returns ``{"CenterLoss": loss}``.

    Divergences (docs/compatibility.md): labels outside ``[0, C)`` raise InputError (PaddleClas silently
    gives them a zero term); float64 features work (the centers are cast) instead of raising.
    """

    input_keys = ("features",)
    input_key_params = ("feature_from",)
    output_keys = ("CenterLoss",)

    def __init__(self, num_classes: int, feat_dim: int, feature_from: str = "features",
                 center_update: bool = False, alpha: float = 0.5):
        super().__init__()
        if num_classes < 1 or feat_dim < 1:
            raise ValueError(f"CenterLoss: num_classes and feat_dim must be positive, got {num_classes} and "
                             f"{feat_dim}")
        if center_update and not 0 < alpha <= 1:
            raise ValueError(f"CenterLoss: alpha must be in (0, 1] for center_update, got {alpha!r}")
        self.num_classes = num_classes
        self.feat_dim = feat_dim
        self.feature_from = feature_from
        self.center_update = center_update
        self.alpha = alpha
        self.centers = self.create_parameter(
            [num_classes, feat_dim],
            default_initializer=nn.initializer.Assign(paddle.randn([num_classes, feat_dim])))
        if center_update:
            self.centers.stop_gradient = True

    def forward(self, input, label):
        name = type(self).__name__
        x = check_features(pick(input, self.feature_from, name), name)
        if x.shape[1] != self.feat_dim:
            raise InputError(f"{name}: features have size {x.shape[1]} but feat_dim={self.feat_dim}")
        ids = check_labels(label, x.shape[0], name)
        check_class_ids(ids, self.num_classes, name)
        centers = self.centers if self.centers.dtype == x.dtype else self.centers.astype(x.dtype)
        if self.center_update:
            # A copy: the in-place update below must not touch what backward reads for the feature gradient.
            centers = centers.detach().clone()
        # Only the label column of each row is unmasked, so the [N, C] distance matrix is never needed:
        # the N own-center distances are computed directly and every masked-out entry's clip adds the
        # constant 1e-12 (no gradient).
        own = paddle.gather(centers, ids)
        dist = (x * x).sum(axis=1) + (own * own).sum(axis=1) - 2.0 * (x * own).sum(axis=1)
        n = x.shape[0] if x.shape[0] > 0 else paddle.shape(x)[0].astype(x.dtype)  # unknown while tracing
        loss = paddle.clip(dist, min=_CLIP_MIN, max=_CLIP_MAX).sum() / n + (self.num_classes - 1) * _CLIP_MIN
        if self.center_update and self.training:
            self._move_centers(x.detach(), ids)
        return {"CenterLoss": loss}

    def _move_centers(self, x, ids):
        """Wen et al.'s update: ``c_j ← c_j − α·(n_j·c_j − Σ_{y_i=j} x_i) / (1 + n_j)``."""
        with paddle.no_grad():
            mask = paddle.nn.functional.one_hot(ids, self.num_classes).astype(x.dtype)
            centers = self.centers.astype(x.dtype)
            counts = mask.sum(axis=0).unsqueeze(1)                     # [C, 1]
            sums = paddle.matmul(mask, x, transpose_x=True)            # [C, D]
            delta = (counts * centers - sums) / (1.0 + counts)
            paddle.assign((centers - self.alpha * delta).astype(self.centers.dtype), output=self.centers)
