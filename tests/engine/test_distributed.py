"""Two CPU processes (gloo): rank-sharded PK batches, the global embedding gather, identical weights."""
import json

import paddle.distributed as dist
import pytest

from engine_helpers import distributed_worker


def test_two_process_data_parallel_training_with_embedding_gather(tmp_path):
    dist.spawn(distributed_worker, args=(str(tmp_path),), nprocs=2, backend="gloo")
    r0 = json.loads((tmp_path / "rank0.json").read_text())
    r1 = json.loads((tmp_path / "rank1.json").read_text())
    assert r0["world"] == r1["world"] == 2
    # each rank draws its own shard of the epoch's batches
    assert r0["batches"] != r1["batches"]
    assert not set(map(tuple, r0["batches"])) & set(map(tuple, r1["batches"]))
    # the loss saw the global batch (2 ranks x 40) at every step
    assert r0["loss_batch_sizes"] == r1["loss_batch_sizes"] == [80, 80, 80]
    # data parallelism keeps the replicas identical, and eval (sharded + gathered) agrees
    assert r0["weights"] == pytest.approx(r1["weights"], rel=1e-6)
    assert r0["metrics"] == pytest.approx(r1["metrics"])
