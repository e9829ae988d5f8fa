"""Shared plumbing of the cross-framework losses: reading the batch and resolving miners/distances."""
import paddle
import paddle.nn as nn

from ...functional.distances import build_distance
from ...functional.mining import build_miner
from ...functional.pair_core import CORE_REDUCERS
from ...functional.mining.targets import (read_indices_tuple, read_pair_labels, selection_pair_masks,
                                          selection_triplets)
from ...inputs import check_features, check_labels, pick


def embeddings_and_labels(owner, input, target, feature_from):
    """``(x [N, D], labels int64 [N])`` from the model-output dict and the label tensor, validated."""
    x = check_features(pick(input, feature_from, owner), owner, what=f"input[{feature_from!r}]")
    return x, check_labels(target, x.shape[0], owner)


def resolve(distance, default, miner, owner):
    """Build the loss's distance and its miner (``None`` = no miner) from config values."""
    return build_distance(distance, default, f"{owner}.distance"), build_miner(miner, f"{owner}.miner")


def read_batch(owner, input, target, feature_from, indices_tuple=None, positive_mask=None):
    """``(x [N, D], pair labels or None, selection or None)`` of a pair/triplet loss call.

    ``indices_tuple`` (PML's precomputed ``(a, p, n)`` / ``(a1, p, a2, n)``) and ``positive_mask``
    (bool ``[N, N]``) come from the keywords, else from the same keys of the ``input`` dict. With an
    ``indices_tuple`` the target may be omitted (pair labels are then None).
    """
    x = check_features(pick(input, feature_from, owner), owner, what=f"input[{feature_from!r}]")
    if isinstance(input, dict):
        indices_tuple = input.get("indices_tuple") if indices_tuple is None else indices_tuple
        positive_mask = input.get("positive_mask") if positive_mask is None else positive_mask
    n = x.shape[0]
    sel = None if indices_tuple is None else read_indices_tuple(indices_tuple, n, owner)
    if sel is not None and target is None and positive_mask is None:
        return x, None, sel
    return x, read_pair_labels(target, n, owner, positive_mask), sel


def pair_masks(miner, x, labels, owner, selection=None):
    """``(pos, neg)`` pair masks: a given selection's, a miner's (triplets become pairs), else every
    valid pair of ``labels`` (:class:`~...functional.mining.targets.PairLabels`)."""
    if selection is None:
        if miner is None:
            return labels.masks()
        selection = miner(x, labels)
    return selection_pair_masks(selection, x.shape[0])


def explicit_triplets(miner, x, labels, owner, selection=None):
    """Index vectors ``(a, p, n)`` of a given selection or of a triplet miner's (windows are expanded,
    pairs are joined on their anchor as PML's ``convert_to_triplets``)."""
    if selection is None:
        selection = miner(x, labels)
    return selection_triplets(selection).indices()


class MinedPairLoss(nn.Layer):
    """Base of the pair-based losses: a distance (``distance`` spec, else ``default_distance``), an optional
    pair miner, and the ``[N, N]`` matrix plus positive/negative pair masks of a batch (from the labels --
    class ids or multi-hot -- or a ``positive_mask``, the miner, or a given ``indices_tuple``, which
    replaces the miner)."""

    default_distance = "LpDistance"

    def _setup(self, distance, miner, feature_from):
        self.distance, self.miner = resolve(distance, self.default_distance, miner, type(self).__name__)
        self.feature_from = feature_from

    def _batch(self, input, target, indices_tuple=None, positive_mask=None):
        return self._generic(*self._read(input, target, indices_tuple, positive_mask))

    def _read(self, input, target, indices_tuple=None, positive_mask=None):
        """``(x, pair labels or None, selection or None)`` of a call (see :func:`read_batch`)."""
        return read_batch(type(self).__name__, input, target, self.feature_from, indices_tuple, positive_mask)

    def _generic(self, x, labels, sel):
        """``(matrix, pos, neg)``: the distance matrix on the autograd tape and bool pair masks."""
        pos, neg = pair_masks(self.miner, x, labels, type(self).__name__, sel)
        return self._matrix(x), pos, neg

    def _matrix(self, x):
        return self.distance(x)

    # Tests set this False on an instance to compare the closed-form core with the generic path.
    _use_core = True

    def _core_applies(self, labels, sel, distances, miner_ok=False):
        """Common part of the losses' closed-form-core predicate (``functional.pair_core``): eager mode,
        labels (no given ``indices_tuple``), no miner (unless ``miner_ok``), a core reducer, and the
        loss's distance equal to one of ``distances``."""
        return (self._use_core and paddle.in_dynamic_mode() and sel is None and labels is not None
                and (self.miner is None or miner_ok)
                and type(getattr(self, "reducer", None)) in CORE_REDUCERS
                and self.distance in distances)
