"""PairwiseCosface: CosFace margin applied to in-batch pairs (the pairwise form of Circle loss's paper)."""
import paddle.nn as nn
import paddle.nn.functional as F

from ..functional.masks import positive_negative
from ..functional.normalize import l2_normalize
from ..functional.pairwise_lse import cosface_pair_lse
from ..inputs import check_features, check_labels, pick
from ..registry import register_loss

# PaddleClas pushes masked-out pairs out of the log-sum-exp with this additive constant (−1e8 in float32).
# Kept as is: it fixes the values of rows without positives (softplus(≈ −1e8) = 0).
_MASKED = -99999999.0


@register_loss
class PairwiseCosface(nn.Layer):
    """Pairwise CosFace loss, PaddleClas ``PairwiseCosface``.

    Math, with ``S = N(x)·N(x)ᵀ`` (``N`` = ``F.normalize``), ``P_ij = [y_i = y_j] − [i = j]`` and
    ``Q_ij = [y_i ≠ y_j]``:
    ``lp_ij = −γ·S_ij·P_ij + c·(1 − P_ij)``, ``ln_ij = γ·(S_ij·Q_ij + m) + c·(1 − Q_ij)`` with ``c = −99999999``,
    ``loss = mean_i softplus(logsumexp_j lp_ij + logsumexp_j ln_ij)``.
    A row without positives (singleton label) contributes ``softplus(≈ −1e8) = 0`` but stays in the mean, and
    its sample still gets gradient as a negative of other rows (PaddleClas behaviour, kept); a single-class
    batch gives 0, with a (zero) gradient path.
    The two log-sum-exps and their gradient ``(G + Gᵀ)·N(x)`` come from
    :func:`~paddle_losses.functional.pairwise_lse.cosface_pair_lse` (hand-written backward, no dense float
    masks; same values and gradients as the formula above up to rounding).

    Args:
        margin: m, added to the negative similarities. gamma: γ, the scale.

    Reads ``input['features']`` (or a bare Tensor) ``[N, D]`` and int labels ``[N]``/``[N, 1]``.
    Returns ``{"PairwiseCosface": loss}``.
    """

    input_keys = ("features",)
    output_keys = ("PairwiseCosface",)

    def __init__(self, margin: float, gamma: float):
        super().__init__()
        self.margin = margin
        self.gamma = gamma

    def forward(self, embedding, targets):
        name = type(self).__name__
        x = check_features(pick(embedding, "features", name), name)
        ids = check_labels(targets, x.shape[0], name)
        x = l2_normalize(x, "clamp", axis=1)
        same, different = positive_negative(ids)
        # The two log-sum-exps over S = x·xᵀ have a hand-written backward (functional.pairwise_lse); the
        # softplus and the mean over [N] rows stay in autograd (Paddle's softplus threshold included).
        lse = cosface_pair_lse(x, same, different, self.gamma, self.margin, _MASKED)
        return {"PairwiseCosface": F.softplus(lse).mean()}
