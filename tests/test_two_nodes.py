"""Two "nodes" on the loopback address (``paddle.distributed.launch --nnodes 2`` twice, one process each):
a gathered loss equals the single-process loss of the global batch, and when one rank dies the other stops
within seconds with a message naming the lost rank."""
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WORKER = Path(__file__).resolve().parent / "two_node_worker.py"


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_loopback_nodes_agree_and_a_dead_rank_is_named_within_seconds(tmp_path):
    import paddle

    from paddle_losses import get_loss
    from two_node_worker import batch

    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    master = f"127.0.0.1:{_free_port()}"
    procs = [subprocess.Popen([sys.executable, "-m", "paddle.distributed.launch", "--nnodes", "2",
                               "--nproc_per_node", "1", "--master", master, "--rank", str(node),
                               "--log_dir", str(tmp_path / f"log{node}"), str(WORKER), str(tmp_path)],
                              cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
             for node in (0, 1)]
    deadline = time.time() + 180
    for p in procs:
        p.wait(timeout=max(1, deadline - time.time()))
    x, y = batch()
    want = float(get_loss("TripletLossV2")(margin=0.3)({"features": paddle.to_tensor(x)}, paddle.to_tensor(y))
                 ["TripletLossV2"])
    for rank in (0, 1):
        rec = json.loads((tmp_path / f"rank{rank}.json").read_text())
        assert rec["world"] == 2
        assert abs(rec["loss"] - want) <= 1e-5 * max(1.0, abs(want))
    seconds, message = (tmp_path / "lost.txt").read_text().split("\n", 1)
    assert float(seconds) < 60
    assert "lost contact with rank 1" in message
    assert procs[0].returncode != 0 and procs[1].returncode != 0
