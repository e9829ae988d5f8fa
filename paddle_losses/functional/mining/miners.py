"""Miner objects that configs name: ``miner: {name: BatchHardMiner, ...}``.

A miner is called as ``miner(embeddings [N, D], labels [N])`` and returns a selection from
:mod:`.selections` (``Triplets``, ``TripletWindow`` or ``Pairs``); ``selection.indices()`` gives
pytorch-metric-learning's index tuple. Miners run without gradient and use their own distance
(default ``LpDistance()``: L2 on normalised embeddings, or ``CosineSimilarity()`` for the
multi-similarity miner), exactly as PML's.

=======================  ==========================================================================
``BatchHardMiner``       farthest positive + closest negative per anchor (PML ``BatchHardMiner``)
``BatchAllMiner``        every valid triplet (what PML losses use when no miner is given)
``TripletMarginMiner``   PML ``TripletMarginMiner(margin=0.2, type_of_triplets=all|hard|semihard|easy)``
``SemiHardMiner``        semi-hard with ``definition="pml"`` (default, = TripletMarginMiner semihard) or
                         ``"tfa"`` (TF-Addons/FaceNet: per positive pair the closest negative farther
                         than the positive, else the farthest negative)
``MultiSimilarityMiner`` PML ``MultiSimilarityMiner(epsilon=0.1)``
=======================  ==========================================================================
"""
from typing import Literal, Optional, Union

import paddle

from ...errors import ConfigError
from ...inputs import compute_dtype
from ...registry import registry
from ..distances import build_distance
from . import selections as M

register_miner = registry("miner").register


def list_miners(pattern=None):
    """Sorted names of the registered miners (fnmatch ``pattern``)."""
    return registry("miner").names(pattern)


class Miner:
    """Base: computes the miner's distance on detached embeddings and label masks, then :meth:`mine`.

    Half-precision embeddings are mined in float32 (``paddle_losses.inputs.compute_dtype``).
    """

    default_distance = "LpDistance"

    def __init__(self, distance=None):
        self.distance = build_distance(distance, self.default_distance)

    def __call__(self, embeddings, labels):
        with paddle.no_grad():
            x = compute_dtype(embeddings.detach(), type(self).__name__, "embeddings")
            u = self.distance.as_distance(self.distance(x))
            pos, neg = M.label_masks(labels.reshape([-1]))
            return self.mine(u, pos, neg)

    def mine(self, u, pos, neg):
        raise NotImplementedError

    def __repr__(self):
        params = {k: v for k, v in vars(self).items()}
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in params.items())})"


@register_miner
class BatchHardMiner(Miner):
    """Hardest positive and hardest negative per anchor; anchors lacking either are dropped."""

    def __init__(self, distance: Optional[Union[str, dict]] = None):
        super().__init__(distance)

    def mine(self, u, pos, neg):
        return M.batch_hard(u, pos, neg)


@register_miner
class BatchAllMiner(Miner):
    """All valid triplets ``(a, p, n)``, kept as a window (O(N²) memory)."""

    def __init__(self, distance: Optional[Union[str, dict]] = None):
        super().__init__(distance)

    def mine(self, u, pos, neg):
        return M.all_triplets(u, pos, neg, self.distance)


@register_miner
class TripletMarginMiner(Miner):
    """PML ``TripletMarginMiner``: triplets by ``m = d_an - d_ap`` against ``margin`` (see module table)."""

    def __init__(self, margin: float = 0.2, type_of_triplets: Literal["all", "hard", "semihard", "easy"] = "all",
                 distance: Optional[Union[str, dict]] = None):
        if type_of_triplets not in M.TRIPLET_TYPES:
            raise ValueError(f"type_of_triplets must be one of {M.TRIPLET_TYPES}, got {type_of_triplets!r}")
        super().__init__(distance)
        self.margin = float(margin)
        self.type_of_triplets = type_of_triplets

    def mine(self, u, pos, neg):
        return M.margin_window(u, pos, neg, self.margin, self.type_of_triplets, self.distance)


@register_miner
class SemiHardMiner(Miner):
    """Semi-hard triplets; ``definition`` "pml" (window ``0 < m <= margin``) or "tfa" (one per pair)."""

    def __init__(self, margin: float = 0.2, definition: Literal["pml", "tfa"] = "pml",
                 distance: Optional[Union[str, dict]] = None):
        if definition not in M.SEMIHARD_DEFINITIONS:
            raise ValueError(f"definition must be one of {M.SEMIHARD_DEFINITIONS}, got {definition!r}")
        super().__init__(distance)
        self.margin = float(margin)
        self.definition = definition

    def mine(self, u, pos, neg):
        return M.semihard(u, pos, neg, self.margin, self.definition, self.distance)


@register_miner
class MultiSimilarityMiner(Miner):
    """PML ``MultiSimilarityMiner``: pairs harder than the other side's hardest, with slack ``epsilon``."""

    default_distance = "CosineSimilarity"

    def __init__(self, epsilon: float = 0.1, distance: Optional[Union[str, dict]] = None):
        super().__init__(distance)
        self.epsilon = float(epsilon)

    def __call__(self, embeddings, labels):
        with paddle.no_grad():
            mat = self.distance(compute_dtype(embeddings.detach(), type(self).__name__, "embeddings"))
            pos, neg = M.label_masks(labels.reshape([-1]))
            return M.multi_similarity(self.distance.as_distance(mat), pos, neg, self.epsilon, order=mat)


def build_miner(spec, path="miner"):
    """A miner from ``{"name": ..., **params}``, a name, an existing miner, or ``None`` (no miner).

    Parameters are validated against the constructor's annotations; errors are ConfigError naming ``path``.
    """
    if spec is None or isinstance(spec, Miner):
        return spec
    if isinstance(spec, str):
        spec = {"name": spec}
    if not isinstance(spec, dict) or "name" not in spec:
        raise ConfigError(f"{path}: a miner is a name or a mapping with a 'name' (one of "
                          f"{', '.join(list_miners())}), got {spec!r}")
    return registry("miner").build(spec["name"], {k: v for k, v in spec.items() if k != "name"}, path)


__all__ = ["build_miner", "register_miner", "list_miners", "Miner", "BatchHardMiner", "BatchAllMiner",
           "TripletMarginMiner", "SemiHardMiner", "MultiSimilarityMiner"]
