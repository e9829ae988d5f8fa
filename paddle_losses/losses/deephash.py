"""Deep-hashing losses of PaddleClas: DSHSDLoss, LCDSHLoss and DCHLoss.

Each reads hash-bit features ``input["features"]`` ``[N, K]`` and class labels, which become a label
matrix ``Y [N, n_class]`` (one-hot of int ids ``[N]``/``[N, 1]``, or a multi-hot ``[N, n_class]`` given
directly); pairs are similar when their label rows share a class. Output keys are lower-case, as in
PaddleClas.
"""
import paddle
import paddle.nn as nn
import paddle.nn.functional as F

from ..errors import InputError
from ..functional.pairwise import dot_similarity, squared_euclidean
from ..functional.softmax_ce import log_softmax
from ..inputs import check_features, check_finite, check_labels, pick
from ..registry import register_loss
from .ce import check_class_ids


def label_matrix(label, n, n_class, owner, dtype):
    """``Y [N, n_class]``: one-hot of class ids, or a multi-hot ``[N, n_class]`` label used as given.

    PaddleClas one-hot encodes whatever it gets, so a multi-hot label becomes ``[N, C, C]`` and crashes;
    here a 2-D label whose width is ``n_class`` (> 1) is taken as multi-hot.
    """
    if isinstance(label, paddle.Tensor) and label.ndim == 2 and n_class > 1 and label.shape[1] == n_class:
        if label.shape[0] != n:
            raise InputError(f"{owner}: multi-hot label has {label.shape[0]} rows but the batch has {n} samples")
        y = label.astype(dtype)
        check_finite(y, owner, "multi-hot label")
        return y
    if isinstance(label, paddle.Tensor) and paddle.is_floating_point(label):
        raise InputError(f"{owner}: label must be int64 class ids [N] or [N, 1], or a multi-hot [N, {n_class}] "
                         f"tensor; got float {list(label.shape)}")
    ids = check_labels(label, n, owner)
    check_class_ids(ids, n_class, owner)
    return F.one_hot(ids, n_class).astype(dtype)


def _features(input, owner):
    return check_features(pick(input, "features", owner, allow_tensor=False), owner, "input['features']")


def _similar(y):
    """``[N, N]`` float: 1 where two label rows share a class."""
    return (dot_similarity(y) > 0).astype(y.dtype)


@register_loss
class DSHSDLoss(nn.Layer):
    """Deep supervised hashing with self-distillation-style classification (DSHSD).

    Math, with hash features ``F [N, K]``, logits ``Z [N, C]`` and label matrix ``Y [N, C]``::

        D_ij = ||F_i − F_j||²                S_ij = [Y_i·Y_j == 0]   (1 = different classes)
        Ld   = mean_ij ( (1 − S_ij)/2 · D_ij + S_ij/2 · max(2K − D_ij, 0) )
        Lc   = mean_i Σ_c −Y_ic · log_softmax(Z)_ic                       (default)
             = mean_i Σ_c ( max(Z,0) − Y·Z + log(1 + e^(−|Z|)) )            (multi_label=True)
        loss = Lc + alpha · Ld

    Args:
        alpha: weight of the pairwise hashing term.
        multi_label: use per-class BCE instead of softmax CE for the classification term.

    Reads ``input["features"]`` and ``input["logits"]``; ``label``: int class ids ``[N]``/``[N, 1]`` or a
    multi-hot ``[N, C]``. Returns ``{"dshsdloss": scalar}``.

    PaddleClas takes ``log(softmax(Z))``; Paddle's CPU softmax and log_softmax both floor the log-probability
    at −64, so ``log_softmax`` used here gives the same values, extreme logits included.

    Divergences: ``D`` comes from the Gram form (equal up to rounding to PaddleClas's broadcast
    differences, O(N·K) memory instead of O(N²·K)); the ``multi_label`` term uses the stable BCE form, finite
    where PaddleClas's naive ``log(1 + e^(−Z))`` overflows to inf (``Z < −88`` in float32); multi-hot labels
    work (PaddleClas crashes).
    """

    input_keys = ("features", "logits")
    output_keys = ("dshsdloss",)

    def __init__(self, alpha: float, multi_label: bool = False):
        super().__init__()
        self.alpha = alpha
        self.multi_label = multi_label

    def forward(self, input, label):
        owner = type(self).__name__
        feats = _features(input, owner)
        logits = check_features(pick(input, "logits", owner, allow_tensor=False), owner, "input['logits']")
        n, k = feats.shape
        if logits.shape[0] != n:
            raise InputError(f"{owner}: logits have {logits.shape[0]} rows but features have {n}")
        y = label_matrix(label, n, logits.shape[1], owner, feats.dtype)

        dist = squared_euclidean(feats)
        different = 1.0 - _similar(y)
        margin = 2.0 * k
        pair = (1.0 - different) / 2 * dist + different / 2 * F.relu(margin - dist)
        hash_loss = pair.mean()

        y = y.astype(logits.dtype)
        if self.multi_label:
            cls = F.binary_cross_entropy_with_logits(logits, y, reduction="none")
        else:
            cls = -y * log_softmax(logits, axis=1)
        return {"dshsdloss": cls.sum(axis=1).mean() + self.alpha * hash_loss}


@register_loss
class LCDSHLoss(nn.Layer):
    """Locality-constrained deep supervised hashing (LCDSH).

    Math, with ``F [N, K]`` and similarity ``S_ij = +1`` if samples share a class else ``−1``::

        Ip   = clip(F·Fᵀ / 2, −50, 50)
        L1   = mean_ij log(1 + exp(−S_ij · Ip_ij))
        Ib   = sign(F)·sign(F)ᵀ / 2
        L2   = mean_ij (sigmoid(Ip_ij) − sigmoid(Ib_ij))²
        loss = L1 + _lambda · L2

    The gradient flows only through ``Ip`` (``sign`` has none) and stops where ``|F·Fᵀ/2| > 50``.

    Args:
        n_class: number of classes (labels are one-hot encoded to this width).
        _lambda: weight of the quantisation term ``L2``.

    Reads ``input["features"]``; ``label``: int ids ``[N]``/``[N, 1]`` in ``[0, n_class)`` or a multi-hot
    ``[N, n_class]``. Returns ``{"lcdshloss": scalar}``.
    """

    input_keys = ("features",)
    output_keys = ("lcdshloss",)

    def __init__(self, n_class: int, _lambda: float):
        super().__init__()
        if n_class < 1:
            raise ValueError(f"LCDSHLoss: n_class must be a positive number of classes, got {n_class!r}")
        self.n_class = n_class
        self._lambda = _lambda

    def forward(self, input, label):
        owner = type(self).__name__
        feats = _features(input, owner)
        y = label_matrix(label, feats.shape[0], self.n_class, owner, feats.dtype)
        s = 2.0 * _similar(y) - 1.0
        ip = paddle.clip(0.5 * dot_similarity(feats), min=-50.0, max=50.0)
        pair_loss = paddle.log(1.0 + paddle.exp(-s * ip)).mean()
        bits = paddle.sign(feats)
        ib = 0.5 * dot_similarity(bits)
        quant_loss = ((F.sigmoid(ip) - F.sigmoid(ib)) ** 2).mean()
        return {"lcdshloss": pair_loss + self._lambda * quant_loss}


def _cauchy_distance(a, b, bits):
    """DCH's cosine-based Hamming-distance surrogate ``(1 − min(cos, 0.99))·K/2``, ``[N, M]``.

    ``cos = a·bᵀ / max(||a_i||·||b_j||, 1e−4)``; the 0.99 cap also stops the gradient of near-identical pairs.
    """
    norms = paddle.linalg.norm(a, axis=1, keepdim=True) * paddle.linalg.norm(b, axis=1, keepdim=True).t()
    cos = dot_similarity(a, b) / paddle.clip(norms, min=1e-4)
    return (1.0 - paddle.clip(cos, max=0.99)) * bits / 2.0


@register_loss
class DCHLoss(nn.Layer):
    """Deep Cauchy hashing (DCH).

    Math, with ``F [N, K]``, ``S_ij = [samples i, j share a class]`` and the distance
    ``d(a, b) = (1 − min(cos(a, b), 0.99))·K/2``::

        W    = S·N²/ΣS + (1 − S)·N²/Σ(1 − S)     (W = 1 when S is all ones or all zeros)
        Lc   = mean_ij W_ij · ( S_ij · log(d(F_i, F_j)/γ) + log(1 + γ/d(F_i, F_j)) )
        Lq   = mean_i log(1 + d(|F_i|, 1_K)/γ)
        loss = Lc + _lambda · Lq

    Args:
        gamma: Cauchy scale γ (> 0).
        _lambda: weight of the quantisation term ``Lq``.
        n_class: number of classes (labels are one-hot encoded to this width).

    Reads ``input["features"]``; ``label``: int ids ``[N]``/``[N, 1]`` in ``[0, n_class)`` or a multi-hot
    ``[N, n_class]``. Returns ``{"dchloss": scalar}``.

    PaddleClas computes ``Lq`` over an ``[N, N]`` matrix whose columns are identical; its mean equals the
    mean over the ``N`` rows used here. ``gamma <= 0`` is rejected (PaddleClas returns NaN).
    """

    input_keys = ("features",)
    output_keys = ("dchloss",)

    def __init__(self, gamma: float, _lambda: float, n_class: int):
        super().__init__()
        if not gamma > 0:
            raise ValueError(f"DCHLoss: gamma must be > 0 (it is the Cauchy scale inside log(d/gamma)), got {gamma!r}")
        if n_class < 1:
            raise ValueError(f"DCHLoss: n_class must be a positive number of classes, got {n_class!r}")
        self.gamma = gamma
        self._lambda = _lambda
        self.n_class = n_class

    def forward(self, input, label):
        owner = type(self).__name__
        feats = _features(input, owner)
        n, k = feats.shape
        s = _similar(label_matrix(label, n, self.n_class, owner, feats.dtype))

        pos, neg, pairs = s.sum(), (1.0 - s).sum(), float(n * n)
        balanced = s * (pairs / paddle.clip(pos, min=1.0)) + (1.0 - s) * (pairs / paddle.clip(neg, min=1.0))
        weight = paddle.where(paddle.logical_and(pos > 0, neg > 0), balanced, paddle.ones_like(balanced))

        dist = _cauchy_distance(feats, feats, k)
        cauchy = s * paddle.log(dist / self.gamma) + paddle.log(1.0 + self.gamma / dist)
        pair_loss = (weight * cauchy).mean()

        quant = _cauchy_distance(paddle.abs(feats), paddle.ones([1, k], dtype=feats.dtype), k)
        quant_loss = paddle.log(1.0 + quant / self.gamma).mean()
        return {"dchloss": pair_loss + self._lambda * quant_loss}
