"""Mining: choosing which pairs and triplets of a batch a loss sees. The one place for it.

* :mod:`.hardest` -- the fast core of the PaddleClas batch-hard losses: per-row hardest positive and
  negative by index over a masked similarity or distance matrix, any batch composition, with PaddleClas's
  tie rules and no dense gradient.
* :mod:`.selections` -- pytorch-metric-learning's mining as pure functions over label masks and a distance
  matrix, returning selections (explicit triplets, triplet windows, pair masks).
* :mod:`.miners` -- the miner objects configs name (``miner: {name: BatchHardMiner}``), registered as the
  ``miner`` kind.
"""
from .hardest import (Candidates, LabelCandidates, hardest, hardest_pairs, hardest_positive_negative,
                      set_block_rows)
from .miners import (BatchAllMiner, BatchEasyHardMiner, BatchHardMiner, Miner, MultiSimilarityMiner, SemiHardMiner,
                     TripletMarginMiner, build_miner, list_miners, register_miner)

__all__ = ["Candidates", "LabelCandidates", "set_block_rows", "hardest", "hardest_pairs", "hardest_positive_negative", "Miner", "BatchHardMiner", "BatchEasyHardMiner",
           "BatchAllMiner", "TripletMarginMiner", "SemiHardMiner", "MultiSimilarityMiner", "build_miner",
           "list_miners", "register_miner"]
