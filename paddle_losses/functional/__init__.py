"""Pure tensor math shared by the losses, miners, benchmark and tests (no state, no config)."""
from .masks import positive_negative, same_label
from .mining.hardest import hardest, hardest_positive_negative
from .normalize import l2_normalize
from .pairwise import dot_similarity, gram_euclidean, squared_euclidean
from .reduction import masked_mean, reduce

__all__ = [
    "l2_normalize", "dot_similarity", "gram_euclidean", "squared_euclidean", "same_label",
    "positive_negative", "hardest", "hardest_positive_negative", "masked_mean", "reduce",
]
