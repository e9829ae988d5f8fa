"""Batch samplers: PaddleClas's ``PKSampler`` and ``DistributedRandomIdentitySampler``, Paddle's
``DistributedBatchSampler``, and a contiguous eval sharder.

Determinism and sharding (both fixes over PaddleClas, see docs/compatibility.md):

* the batch sequence of an epoch is a pure function of ``(seed, epoch)``; ``set_epoch`` selects it, so a
  resumed run draws exactly the batches the uninterrupted run would have drawn;
* the identity samplers draw one global sequence of ``nranks × len`` batches and give rank ``r`` batches
  ``r, r + nranks, ...``. PaddleClas's ``DistributedRandomIdentitySampler`` does not shard at all (every
  rank samples the whole dataset independently).

All batches hold labels in groups of K consecutive indices (identity by identity), the layout the
PaddleClas losses (SupConLoss's views, the P×K triplet losses) expect.
"""
import itertools
import math

import numpy as np
import paddle
from paddle.io import BatchSampler, DistributedBatchSampler

from ..errors import ConfigError
from ..registry import registry


def _rank_world(rank=None, nranks=None):
    if nranks is None:
        nranks = paddle.distributed.get_world_size()
    if rank is None:
        rank = paddle.distributed.get_rank()
    return rank, nranks


def _labels_of(dataset):
    labels = getattr(dataset, "labels", None)
    if labels is None:
        raise ConfigError(f"{type(dataset).__name__} has no `labels` attribute; identity samplers need one")
    return np.asarray(labels).reshape(-1)


class _IdentitySampler(BatchSampler):
    """Shared machinery: epoch-seeded global batch sequence, sharded by rank."""

    def __init__(self, dataset, batch_size, k, seed=0, rank=None, nranks=None):
        if not isinstance(batch_size, int) or batch_size <= 0:
            raise ConfigError(f"{type(self).__name__}.batch_size must be a positive int, got {batch_size!r}")
        if not isinstance(k, int) or k <= 0:
            raise ConfigError(f"{type(self).__name__}: samples per identity must be a positive int, got {k!r}")
        if batch_size % k:
            raise ConfigError(f"{type(self).__name__}: batch_size {batch_size} is not divisible by the "
                              f"samples per identity {k}; use a multiple of {k}")
        self.dataset = dataset
        self.batch_size, self.k = batch_size, k
        self.p = batch_size // k
        self.labels = _labels_of(dataset)
        self.ids, inverse = np.unique(self.labels, return_inverse=True)
        # Indices of each identity, ascending: one stable sort (a scan per identity is quadratic, minutes at
        # PP-ShiTuV2's 192,612 classes).
        order = np.argsort(inverse, kind="stable")
        self.index_of = np.split(order, np.cumsum(np.bincount(inverse, minlength=len(self.ids)))[:-1])
        self.seed = 0 if seed is None else int(seed)
        self.epoch = 0
        self.rank, self.nranks = _rank_world(rank, nranks)

    def set_epoch(self, epoch):
        self.epoch = int(epoch)

    def _rng(self):
        return np.random.RandomState((self.seed * 1_000_003 + self.epoch) % (2 ** 32))

    def _global_batches(self, rng):
        raise NotImplementedError

    def __iter__(self):
        # Global batch j belongs to rank j % nranks. Batches are drawn as they are consumed, so a run of a few
        # steps (Global.iter_per_epoch) does not pay for drawing the whole epoch first.
        mine = itertools.islice(self._global_batches(self._rng()), self.rank, None, self.nranks)
        for b in itertools.islice(mine, len(self)):
            yield [int(i) for i in b]

    def _take_k(self, rng, cls):
        idx = self.index_of[cls]
        return rng.choice(idx, self.k, replace=len(idx) < self.k)


@registry("sampler").register
class PKSampler(_IdentitySampler):
    """P identities × K samples per batch (PaddleClas's ``PKSampler``).

    Args:
        batch_size: P·K (must be divisible by ``sample_per_id``).
        sample_per_id: K.
        shuffle, drop_last: accepted for config compatibility (batches are always random and full).
        sample_method: ``sample_avg_prob`` (identities drawn with probability ∝ their sample count) or
            ``id_avg_prob`` (uniform over identities).
        id_list, ratio: boost the probability of label ranges: ``id_list = [lo0, hi0, lo1, hi1, ...]`` and
            ``ratio = [r0, r1, ...]``; identities in ``[lo_i, hi_i]`` get their probability scaled so that
            their total mass is ``r_i``.
        seed: epoch sequence seed (the trainer passes ``Global.seed``).

    Length per rank: ``ceil(N / nranks) // batch_size`` (as PaddleClas). Each batch draws P distinct
    identities without replacement and K images of each, without replacement when the identity has K.
    """

    def __init__(self, dataset, batch_size, sample_per_id, shuffle=True, drop_last=True, id_list=None,
                 ratio=None, sample_method="sample_avg_prob", total_epochs=0, seed=0, rank=None, nranks=None):
        super().__init__(dataset, batch_size, sample_per_id, seed, rank, nranks)
        if self.p > len(self.ids):
            raise ConfigError(f"PKSampler: a batch needs {self.p} identities (batch_size {batch_size} / "
                              f"sample_per_id {sample_per_id}) but the dataset has only {len(self.ids)}")
        if sample_method == "id_avg_prob":
            prob = np.ones(len(self.ids))
        elif sample_method == "sample_avg_prob":
            prob = np.array([len(i) for i in self.index_of], dtype=np.float64)
        else:
            raise ConfigError(f"PKSampler.sample_method must be sample_avg_prob or id_avg_prob, "
                              f"got {sample_method!r}")
        prob = prob / prob.sum()
        if id_list is not None or ratio is not None:
            id_list, ratio = list(id_list or []), list(ratio or [])
            if len(id_list) != 2 * len(ratio):
                raise ConfigError("PKSampler: id_list must hold two bounds per entry of ratio")
            if sum(ratio) > 1.0 or min(ratio, default=0) < 0:
                raise ConfigError(f"PKSampler: ratio {ratio} must be non-negative and sum to at most 1")
            boosted = np.zeros(len(self.ids), dtype=bool)
            new = np.zeros_like(prob)
            for (lo, hi), r in zip(zip(id_list[::2], id_list[1::2]), ratio):
                sel = (self.ids >= lo) & (self.ids <= hi) & ~boosted
                if sel.any():
                    new[sel] = r * prob[sel] / prob[sel].sum()
                    boosted |= sel
            rest = ~boosted
            if rest.any():
                new[rest] = (1.0 - new.sum()) * prob[rest] / prob[rest].sum()
            prob = new / new.sum()
        self.prob = prob
        self.num_batches = math.ceil(len(self.labels) / self.nranks) // batch_size
        if self.num_batches == 0:
            raise ConfigError(f"PKSampler: the dataset ({len(self.labels)} samples over {self.nranks} rank(s)) "
                              f"is smaller than one batch of {batch_size}")

    def __len__(self):
        return self.num_batches

    def _global_batches(self, rng):
        for _ in range(self.num_batches * self.nranks):
            chosen = rng.choice(len(self.ids), self.p, replace=False, p=self.prob)
            yield np.concatenate([self._take_k(rng, c) for c in chosen])


@registry("sampler").register
class DistributedRandomIdentitySampler(_IdentitySampler):
    """PaddleClas's identity sampler: every identity's images in shuffled K-groups, P groups per batch.

    Identities with fewer than ``num_instances`` images are padded by sampling with replacement. Batches
    are formed by repeatedly drawing P identities that still have a K-group left, until fewer than P
    remain. With ``max_iters`` the epoch has that many batches instead, drawn with count-proportional
    probability and refilling groups as needed. Divergence: sharded by rank (see the module docstring).
    """

    def __init__(self, dataset, batch_size, num_instances, drop_last=True, max_iters=None, seed=0,
                 rank=None, nranks=None):
        super().__init__(dataset, batch_size, num_instances, seed, rank, nranks)
        if self.p > len(self.ids):
            raise ConfigError(f"DistributedRandomIdentitySampler: a batch needs {self.p} identities but the "
                              f"dataset has only {len(self.ids)}")
        self.max_iters = max_iters
        groups = sum(max(len(i), self.k) // self.k for i in self.index_of)
        est = groups // self.p if max_iters is None else int(max_iters)
        self.num_batches = max(1, est // self.nranks)

    def __len__(self):
        return self.num_batches

    def _groups(self, rng, cls):
        idx = self.index_of[cls]
        if len(idx) < self.k:
            idx = rng.choice(idx, self.k, replace=True)
        idx = rng.permutation(idx)
        n = len(idx) // self.k
        return [idx[i * self.k:(i + 1) * self.k] for i in range(n)]

    def _global_batches(self, rng):
        need = self.num_batches * self.nranks
        pools = {c: self._groups(rng, c) for c in range(len(self.ids))}
        counts = np.array([len(i) for i in self.index_of], dtype=np.float64)
        out = []
        while len(out) < need:
            alive = [c for c in pools if pools[c]]
            if len(alive) < self.p:
                # too few identities left for a batch: refill the exhausted ones (a new pass over the data)
                pools = {c: (pools[c] or self._groups(rng, c)) for c in pools}
                alive = list(pools)
            if self.max_iters is None:
                chosen = rng.choice(alive, self.p, replace=False)
            else:
                p = counts[alive] / counts[alive].sum()
                chosen = rng.choice(alive, self.p, replace=False, p=p)
            out.append(np.concatenate([pools[c].pop() for c in chosen]))
        return out


class EvalShardSampler(BatchSampler):
    """Contiguous, padded shards of the dataset in order (rank r gets ``[r·n, (r+1)·n)``), for eval.

    Each batch is a list of dataset indices; the trainer gathers features and indices from all ranks and
    restores the original order, dropping the padding.
    """

    def __init__(self, dataset, batch_size, rank=None, nranks=None):
        self.n = len(dataset)
        self.batch_size = int(batch_size)
        self.rank, self.nranks = _rank_world(rank, nranks)
        self.per_rank = math.ceil(self.n / self.nranks)

    def _indices(self):
        start = self.rank * self.per_rank
        return [i % self.n for i in range(start, start + self.per_rank)]

    def __iter__(self):
        idx = self._indices()
        for s in range(0, len(idx), self.batch_size):
            yield idx[s:s + self.batch_size]

    def __len__(self):
        return math.ceil(self.per_rank / self.batch_size)

    def set_epoch(self, epoch):
        pass


registry("sampler").register(DistributedBatchSampler)


def build_sampler(dataset, cfg, path, seed=0):
    """Build the batch sampler of a ``sampler`` section (a copy is used; the config is not mutated).

    Without ``name`` a plain shuffled/non-shuffled batch sampler is built, as PaddleClas does.
    """
    cfg = dict(cfg or {})
    name = cfg.pop("name", None)
    if "batch_size" not in cfg:
        raise ConfigError(f"{path}.batch_size is missing")
    if name is None or name == "DistributedBatchSampler":
        cfg.pop("total_epochs", None)
        return registry("sampler").build("DistributedBatchSampler", cfg, path, dataset=dataset)
    return registry("sampler").build(name, cfg, path, dataset=dataset, seed=seed)
