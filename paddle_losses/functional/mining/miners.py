"""Miner objects that configs name: ``miner: {name: BatchHardMiner, ...}``.

A miner is called as ``miner(embeddings [N, D], labels [N])`` and returns a selection from
:mod:`.selections` (``Triplets``, ``TripletWindow`` or ``Pairs``); ``selection.indices()`` gives
pytorch-metric-learning's index tuple. Miners run without gradient and use their own distance
(default ``LpDistance()``: L2 on normalised embeddings, or ``CosineSimilarity()`` for the
multi-similarity miner), exactly as PML's.

=======================  ==========================================================================
``BatchHardMiner``       farthest positive + closest negative per anchor (PML ``BatchHardMiner``)
``BatchEasyHardMiner``   PML ``BatchEasyHardMiner(pos_strategy, neg_strategy, allowed_*_range)``
``BatchAllMiner``        every valid triplet (what PML losses use when no miner is given)
``TripletMarginMiner``   PML ``TripletMarginMiner(margin=0.2, type_of_triplets=all|hard|semihard|easy)``
``SemiHardMiner``        semi-hard with ``definition="pml"`` (default, = TripletMarginMiner semihard) or
                         ``"tfa"`` (TF-Addons/FaceNet: per positive pair the closest negative farther
                         than the positive, else the farthest negative)
``MultiSimilarityMiner`` PML ``MultiSimilarityMiner(epsilon=0.1)``
=======================  ==========================================================================
"""
from typing import Literal, Optional, Sequence, Union

import paddle

from ...errors import ConfigError
from ...inputs import compute_dtype
from ...registry import registry
from ..distances import build_distance
from . import selections as M
from .targets import read_pair_labels

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

    def __call__(self, embeddings, labels=None, positive_mask=None):
        """Mine a batch: ``labels`` are class ids ``[N]``/``[N, 1]`` or multi-hot ``[N, K]``; or give an
        explicit bool ``positive_mask`` ``[N, N]`` instead (see :mod:`.targets`)."""
        pos, neg = self._masks(embeddings, labels, positive_mask)
        with paddle.no_grad():
            x = compute_dtype(embeddings.detach(), type(self).__name__, "embeddings")
            u = self.distance.as_distance(self.distance(x))
            return self.mine(u, pos, neg)

    def _masks(self, embeddings, labels, positive_mask):
        pairs = read_pair_labels(labels, embeddings.shape[0], type(self).__name__, positive_mask)
        return pairs.masks()

    def mine(self, u, pos, neg):
        raise NotImplementedError

    def __repr__(self):
        params = {k: v for k, v in vars(self).items()}
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in params.items())})"


_Strategy = Literal["hard", "semihard", "easy", "all"]
_Range = Optional[Sequence[float]]


def _check_range(value, what):
    if value is None:
        return None
    if (not isinstance(value, (list, tuple)) or len(value) != 2
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)):
        raise ConfigError(f"{what} must be null or a pair [low, high] of numbers, got {value!r}")
    lo, hi = float(value[0]), float(value[1])
    if lo > hi:
        raise ConfigError(f"{what} must have low <= high, got {value!r}")
    return lo, hi


class _EasyHardMiner(Miner):
    """Shared body of BatchEasyHardMiner and BatchHardMiner (strategies and allowed ranges as PML 2.x)."""

    def __init__(self, pos_strategy, neg_strategy, allowed_pos_range, allowed_neg_range, distance):
        name = type(self).__name__
        for what, value in (("pos_strategy", pos_strategy), ("neg_strategy", neg_strategy)):
            if value not in M.BATCH_STRATEGIES:
                raise ConfigError(f"{name}.{what} must be one of {M.BATCH_STRATEGIES}, got {value!r}")
        if pos_strategy == neg_strategy == "semihard":
            raise ConfigError(f"{name}: pos_strategy and neg_strategy cannot both be 'semihard'")
        if {pos_strategy, neg_strategy} == {"semihard", "all"}:
            raise ConfigError(f"{name}: 'semihard' cannot be combined with 'all'")
        super().__init__(distance)
        self.pos_strategy, self.neg_strategy = pos_strategy, neg_strategy
        self.allowed_pos_range = _check_range(allowed_pos_range, f"{name}.allowed_pos_range")
        self.allowed_neg_range = _check_range(allowed_neg_range, f"{name}.allowed_neg_range")

    def _u_range(self, allowed):
        # ranges are in the distance's own units; u is the negated similarity for similarities
        if allowed is None or not self.distance.is_inverted:
            return allowed
        return -allowed[1], -allowed[0]

    def mine(self, u, pos, neg):
        if (self.pos_strategy, self.neg_strategy) == ("hard", "hard") and self.allowed_pos_range is None \
                and self.allowed_neg_range is None:
            return M.batch_hard(u, pos, neg)
        return M.batch_easy_hard(u, pos, neg, self.pos_strategy, self.neg_strategy,
                                 self._u_range(self.allowed_pos_range), self._u_range(self.allowed_neg_range))


@register_miner
class BatchHardMiner(_EasyHardMiner):
    """Hardest positive and hardest negative per anchor; anchors lacking either are dropped.

    ``pos_strategy`` / ``neg_strategy`` (default "hard") and ``allowed_pos_range`` /
    ``allowed_neg_range`` work as in :class:`BatchEasyHardMiner`; with the defaults this is PML's
    ``BatchHardMiner`` (which accepts the ranges too).
    """

    def __init__(self, pos_strategy: _Strategy = "hard", neg_strategy: _Strategy = "hard",
                 allowed_pos_range: _Range = None, allowed_neg_range: _Range = None,
                 distance: Optional[Union[str, dict]] = None):
        super().__init__(pos_strategy, neg_strategy, allowed_pos_range, allowed_neg_range, distance)


@register_miner
class BatchEasyHardMiner(_EasyHardMiner):
    """PML ``BatchEasyHardMiner``: per anchor one positive and one negative chosen by strategy.

    Strategies ("hard", "semihard", "easy", "all"): a hard positive is the farthest, an easy one the
    closest; a hard negative is the closest, an easy one the farthest; "semihard" picks the hard one
    among those on the right side of the other side's pick (not both sides, not with "all"); "all" keeps
    every pair of that side (the result is then pairs). ``allowed_pos_range`` / ``allowed_neg_range``
    (``[low, high]``, inclusive, in the distance's units -- similarities for ``CosineSimilarity``) limit
    the candidates of a picked side (an "all" side keeps every pair, as PML). Anchors lacking a pick are
    dropped. Returns triplets, or pairs when a side is "all" (triplet losses join pairs on the anchor).
    """

    def __init__(self, pos_strategy: _Strategy = "easy", neg_strategy: _Strategy = "semihard",
                 allowed_pos_range: _Range = None, allowed_neg_range: _Range = None,
                 distance: Optional[Union[str, dict]] = None):
        super().__init__(pos_strategy, neg_strategy, allowed_pos_range, allowed_neg_range, distance)


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

    def __call__(self, embeddings, labels=None, positive_mask=None):
        pos, neg = self._masks(embeddings, labels, positive_mask)
        with paddle.no_grad():
            mat = self.distance(compute_dtype(embeddings.detach(), type(self).__name__, "embeddings"))
            return M.multi_similarity(self.distance.as_distance(mat), pos, neg, self.epsilon, order=mat)

    def similarity_pairs(self, s, pos, neg):
        """The kept ``(pos, neg)`` pairs as float 0/1 masks, mined on a given similarity matrix ``s`` of the
        miner's own similarity (``CosineSimilarity`` / normalised ``DotProductSimilarity``, which the
        caller checks) and float label masks: the same pairs as :meth:`__call__` without a second matmul
        (``s − ε < max_neg s`` and ``s + ε > min_pos s`` on the same values; an empty side keeps nothing)."""
        masked = 1e30  # beyond any similarity: masked-out entries never win a row's max / min
        hardest_neg = (s + paddle.scale(neg, masked, -masked)).max(axis=1, keepdim=True)
        hardest_pos = (s - paddle.scale(pos, masked, -masked)).min(axis=1, keepdim=True)
        # [a < b] as the 0/1 float [b − a > 0] (exact: a float difference is > 0 iff a < b): a compare and a
        # cast to float cost several times these in-place passes on Paddle's CPU kernels
        below = paddle.scale(s, 1.0, -self.epsilon).scale_(-1.0).add_(hardest_neg)
        above = paddle.scale(s, 1.0, self.epsilon).subtract_(hardest_pos)
        return below.clip_(0.0, 1.0).ceil_().multiply_(pos), above.clip_(0.0, 1.0).ceil_().multiply_(neg)


def build_miner(spec, path="miner"):
    """A miner from ``{"name": ..., **params}``, a name, an existing miner, or ``None`` (no miner).

    Parameters are validated against the constructor's annotations; errors are ConfigError naming ``path``.
    """
    if spec is None:
        return None
    return registry("miner").from_spec(spec, path, Miner)


__all__ = ["build_miner", "register_miner", "list_miners", "Miner", "BatchHardMiner", "BatchEasyHardMiner", "BatchAllMiner",
           "TripletMarginMiner", "SemiHardMiner", "MultiSimilarityMiner"]
