"""Shared plumbing of the cross-framework losses: reading the batch and resolving miners/distances."""
import paddle.nn as nn

from ...functional.mining import selections as M
from ...functional.distances import build_distance
from ...inputs import check_features, check_labels, pick
from ...errors import InputError
from ...functional.mining import build_miner


def embeddings_and_labels(owner, input, target, feature_from):
    """``(x [N, D], labels int64 [N])`` from the model-output dict and the label tensor, validated."""
    x = check_features(pick(input, feature_from, owner), owner, what=f"input[{feature_from!r}]")
    return x, check_labels(target, x.shape[0], owner)


def resolve(distance, default, miner, owner):
    """Build the loss's distance and its miner (``None`` = no miner) from config values."""
    return build_distance(distance, default, f"{owner}.distance"), build_miner(miner, f"{owner}.miner")


def pair_masks(miner, x, labels, owner):
    """``(pos, neg)`` pair masks: every valid pair, or the pairs a miner kept (triplets become pairs)."""
    if miner is None:
        return M.label_masks(labels)
    sel = miner(x, labels)
    if isinstance(sel, M.TripletWindow):
        sel = M.expand_window(sel)
    if isinstance(sel, M.Triplets):
        sel = M.triplets_to_pairs(sel, x.shape[0])
    return sel.pos, sel.neg


def explicit_triplets(miner, x, labels, owner):
    """Index vectors ``(a, p, n)`` from a triplet miner (windows are expanded)."""
    sel = miner(x, labels)
    if isinstance(sel, M.Pairs):
        raise InputError(f"{owner} needs triplets, but the miner {type(miner).__name__} returns pairs")
    if isinstance(sel, M.TripletWindow):
        sel = M.expand_window(sel)
    return sel.indices()


class MinedPairLoss(nn.Layer):
    """Base of the pair-based losses: a distance (``distance`` spec, else ``default_distance``), an optional
    pair miner, and the ``[N, N]`` matrix plus positive/negative pair masks of a batch."""

    default_distance = "LpDistance"

    def _setup(self, distance, miner, feature_from):
        self.distance, self.miner = resolve(distance, self.default_distance, miner, type(self).__name__)
        self.feature_from = feature_from

    def _batch(self, input, target):
        name = type(self).__name__
        x, labels = embeddings_and_labels(name, input, target, self.feature_from)
        pos, neg = pair_masks(self.miner, x, labels, name)
        return self._matrix(x), pos, neg

    def _matrix(self, x):
        return self.distance(x)
