"""PKSampler and DistributedRandomIdentitySampler: batch layout, epoch determinism, rank sharding, errors."""
from collections import Counter

import numpy as np
import pytest

from paddle_losses.engine.samplers import (DistributedRandomIdentitySampler, EvalShardSampler, PKSampler,
                                           build_sampler)
from paddle_losses.errors import ConfigError


class Labels:
    def __init__(self, labels):
        self.labels = np.asarray(labels)

    def __len__(self):
        return len(self.labels)


DATA = Labels(np.repeat(np.arange(10), [12, 3, 8, 8, 20, 5, 9, 9, 9, 7]))


def groups_of(batch, k):
    labels = DATA.labels[batch]
    return [labels[i:i + k] for i in range(0, len(labels), k)]


@pytest.mark.parametrize("method", ["sample_avg_prob", "id_avg_prob"])
def test_pk_batches_hold_p_distinct_identities_in_consecutive_groups_of_k(method):
    s = PKSampler(DATA, batch_size=12, sample_per_id=4, sample_method=method, nranks=1, rank=0)
    batches = list(s)
    assert len(batches) == len(DATA) // 12 == len(s)
    for b in batches:
        groups = groups_of(b, 4)
        assert all(len(set(g)) == 1 for g in groups)
        assert len({g[0] for g in groups}) == 3
        # identities with >= K images give K distinct images
        for g_idx, g in zip(range(0, 12, 4), groups):
            if Counter(DATA.labels)[g[0]] >= 4:
                assert len(set(b[g_idx:g_idx + 4])) == 4


def test_pk_epoch_order_is_a_function_of_seed_and_epoch():
    a = PKSampler(DATA, 12, 4, seed=3, nranks=1, rank=0)
    b = PKSampler(DATA, 12, 4, seed=3, nranks=1, rank=0)
    a.set_epoch(5)
    b.set_epoch(5)
    assert list(a) == list(b)
    b.set_epoch(6)
    assert list(a) != list(b)


@pytest.mark.parametrize("cls,kw", [(PKSampler, {"sample_per_id": 4}),
                                    (DistributedRandomIdentitySampler, {"num_instances": 4})])
def test_identity_samplers_shard_one_global_sequence_by_rank(cls, kw):
    full = cls(DATA, 8, seed=1, nranks=1, rank=0, **kw)
    r0 = cls(DATA, 8, seed=1, nranks=2, rank=0, **kw)
    r1 = cls(DATA, 8, seed=1, nranks=2, rank=1, **kw)
    b0, b1 = list(r0), list(r1)
    assert len(b0) == len(b1) == len(r0)
    assert b0 != b1
    # rank r takes batches r, r + 2, ... of one global sequence
    glob = [list(map(int, b)) for b in r0._global_batches(r0._rng())]
    assert b0 == glob[0::2][:len(b0)] and b1 == glob[1::2][:len(b1)]
    assert len(full) >= len(r0)


def test_pk_identity_ratio_boost():
    s = PKSampler(DATA, 8, 4, id_list=[0, 0], ratio=[0.9], nranks=1, rank=0, seed=0)
    assert s.prob[0] == pytest.approx(0.9)
    counts = Counter(int(DATA.labels[b[0]]) for e in range(20) for b in (s.set_epoch(e) or list(s)))
    assert counts[0] > sum(counts.values()) * 0.5


def test_random_identity_sampler_pads_small_identities_and_keeps_groups():
    s = DistributedRandomIdentitySampler(DATA, 8, 4, nranks=1, rank=0)
    for b in s:
        assert all(len(set(g)) == 1 for g in groups_of(b, 4))
    s2 = DistributedRandomIdentitySampler(DATA, 8, 4, max_iters=7, nranks=1, rank=0)
    assert len(list(s2)) == 7


def test_batch_size_not_divisible_by_k_is_a_config_error():
    with pytest.raises(ConfigError, match="not divisible"):
        PKSampler(DATA, 10, 4, nranks=1, rank=0)
    with pytest.raises(ConfigError, match="DataLoader.Train.sampler"):
        build_sampler(DATA, {"name": "DistributedRandomIdentitySampler", "batch_size": 10, "num_instances": 4},
                      "DataLoader.Train.sampler")


def test_more_identities_per_batch_than_exist_is_a_config_error():
    with pytest.raises(ConfigError, match="identities"):
        PKSampler(Labels([0, 0, 1, 1]), 6, 2, nranks=1, rank=0)


def test_build_sampler_does_not_mutate_the_config():
    cfg = {"name": "PKSampler", "batch_size": 8, "sample_per_id": 4}
    build_sampler(DATA, cfg, "x")
    build_sampler(DATA, cfg, "x")
    assert cfg["name"] == "PKSampler"


def test_eval_shards_cover_the_dataset_in_order():
    shards = [sum(EvalShardSampler(DATA, 7, rank=r, nranks=3), []) for r in range(3)]
    merged = sum(shards, [])[:len(DATA)]
    assert merged == list(range(len(DATA)))
    assert len({len(s) for s in shards}) == 1
