"""pytorch-metric-learning style distance objects: one ``[N, M]`` matrix per call, plus sign conventions.

* :class:`LpDistance` (``p=2, power=1, normalize_embeddings=True``): ``‖x̂_i - ŷ_j‖_p ** power``. For
  ``p = 2`` the matrix comes from one matmul (``functional.pairwise.squared_euclidean``) and a square root
  whose gradient is 0 where the distance is 0 (torch ``cdist``'s rule); other ``p`` build the ``[N, M, D]``
  difference (O(N·M·D) memory).
* :class:`CosineSimilarity`: ``x̂_i · ŷ_j`` (always normalised).
* :class:`DotProductSimilarity` (``normalize_embeddings=True``): ``x̂_i · ŷ_j``, so cosine by default.

``x̂ = x / max(‖x‖₂, 1e-12)`` (``functional.normalize.l2_normalize`` ``clamp`` variant).

Similarities have ``is_inverted = True``: "closer" means larger. Losses and miners written once for
distances use :meth:`Distance.as_distance` (``-s`` for similarities, so "smaller is closer" everywhere) or
:meth:`Distance.margin` (``x - y`` for distances, ``y - x`` for similarities, PML's hinge convention).
"""
import paddle

from ..registry import registry
from .normalize import l2_normalize
from .pairwise import dot_similarity, squared_euclidean


def safe_sqrt(q):
    """``sqrt(q)`` for ``q >= 0`` with gradient 0 (not inf/NaN) where ``q == 0``."""
    pos = q > 0
    return paddle.where(pos, paddle.sqrt(paddle.where(pos, q, paddle.ones_like(q))), paddle.zeros_like(q))


class Distance:
    """Base class: subclasses set ``is_inverted`` and implement :meth:`_matrix`."""

    is_inverted = False
    normalize_embeddings = True

    def normalize(self, x):
        return l2_normalize(x, "clamp", axis=-1, eps=1e-12) if self.normalize_embeddings else x

    def __call__(self, x, y=None):
        """``[N, M]`` matrix between rows of ``x`` and rows of ``y`` (``y`` defaults to ``x``)."""
        xn = self.normalize(x)
        yn = None if y is None else self.normalize(y)
        return self._matrix(xn, yn)

    def _matrix(self, x, y):
        raise NotImplementedError

    def margin(self, x, y):
        """PML's ``distance.margin``: ``x - y`` for distances, ``y - x`` for similarities."""
        return y - x if self.is_inverted else x - y

    def as_distance(self, mat):
        """Return a matrix where smaller means closer (``-mat`` for similarities)."""
        return -mat if self.is_inverted else mat

    def config(self):
        """Hashable description (class and parameters), used to tell whether two distances agree."""
        return (type(self).__name__,) + tuple(sorted(vars(self).items()))

    def __eq__(self, other):
        return isinstance(other, Distance) and self.config() == other.config()

    def __hash__(self):
        return hash(self.config())

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in sorted(vars(self).items()))
        return f"{type(self).__name__}({args})"


@registry("distance").register
class LpDistance(Distance):
    """``‖x̂_i - ŷ_j‖_p ** power`` (PML ``LpDistance``); see module docstring."""

    is_inverted = False

    def __init__(self, p: float = 2, power: float = 1, normalize_embeddings: bool = True):
        if not float(p) > 0:
            raise ValueError(f"LpDistance: p must be > 0, got {p!r}")
        self.p = p
        self.power = power
        self.normalize_embeddings = bool(normalize_embeddings)

    def _matrix(self, x, y):
        if float(self.p) == 2.0:
            d = safe_sqrt(squared_euclidean(x, y))
        else:
            diff = paddle.abs(x.unsqueeze(1) - (x if y is None else y).unsqueeze(0))
            s = paddle.pow(diff, float(self.p)).sum(axis=-1)
            pos = s > 0
            d = paddle.where(pos, paddle.pow(paddle.where(pos, s, paddle.ones_like(s)), 1.0 / self.p),
                             paddle.zeros_like(s))
        return d if self.power == 1 else paddle.pow(d, float(self.power))


@registry("distance").register
class CosineSimilarity(Distance):
    """``x̂_i · ŷ_j`` (PML ``CosineSimilarity``); larger is closer."""

    is_inverted = True

    def __init__(self):
        self.normalize_embeddings = True

    def _matrix(self, x, y):
        return dot_similarity(x, y)


@registry("distance").register
class DotProductSimilarity(Distance):
    """``x̂_i · ŷ_j`` with ``normalize_embeddings=True`` by default (PML ``DotProductSimilarity``)."""

    is_inverted = True

    def __init__(self, normalize_embeddings: bool = True):
        self.normalize_embeddings = bool(normalize_embeddings)

    def _matrix(self, x, y):
        return dot_similarity(x, y)


def build_distance(spec, default=None, path="distance"):
    """A distance from a name, a ``{"name": ..., **params}`` mapping, an instance, or ``None`` (``default``).

    Names resolve through the ``distance`` registry; a mistake is a ConfigError naming ``path``.
    """
    return registry("distance").from_spec(default if spec is None else spec, path, Distance)
