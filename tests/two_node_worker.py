"""One process of the two-"node" loopback test, started by ``paddle.distributed.launch --nnodes 2``.

Computes a ``gathered`` triplet loss on its half of a seeded batch (written to ``<out>/rank<r>.json``);
then rank 1 exits and rank 0 calls the loss again, recording how long the lost rank took to be reported
and the message (``<out>/lost.txt``).
"""
import json
import os
import sys
import time

import numpy as np
import paddle
import paddle.distributed as dist

from paddle_losses import get_loss
from paddle_losses.distributed import LostRankError, gathered


def batch():
    rng = np.random.RandomState(0)
    return rng.randn(8, 4).astype("float32"), np.array([0, 1, 2, 0, 1, 2, 0, 1], "int64")


def main(out):
    dist.init_parallel_env()
    rank = dist.get_rank()
    x, y = batch()
    rows = slice(4 * rank, 4 * rank + 4)
    loss = gathered(get_loss("TripletLossV2")(margin=0.3))
    value = float(loss({"features": paddle.to_tensor(x[rows])}, paddle.to_tensor(y[rows]))["TripletLossV2"])
    with open(os.path.join(out, f"rank{rank}.json"), "w") as fh:
        json.dump({"world": dist.get_world_size(), "loss": value}, fh)
    if rank == 1:
        os._exit(3)  # a rank that dies without a word
    time.sleep(0.5)
    start = time.time()
    try:
        loss({"features": paddle.to_tensor(x[rows])}, paddle.to_tensor(y[rows]))
    except LostRankError as exc:
        with open(os.path.join(out, "lost.txt"), "w") as fh:
            fh.write(f"{time.time() - start:.3f}\n{exc}")
        raise


if __name__ == "__main__":
    main(sys.argv[1])
