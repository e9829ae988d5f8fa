"""benchmarks/peers.py (``tools/bench.py --peers``): torch and pytorch-metric-learning stay optional --
without them the command says so and exits 2 -- and every case's "ours" side builds and runs."""
import importlib.util
import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)
from benchmarks import peers as bench_peers  # noqa: E402

HAVE_PEERS = all(importlib.util.find_spec(m) is not None for m in ("torch", "pytorch_metric_learning"))


@pytest.mark.skipif(HAVE_PEERS, reason="torch and pytorch-metric-learning are installed here")
def test_peers_without_torch_is_one_error_line_and_exit_2():
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "bench.py"), "--peers"], cwd=ROOT,
                          capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=ROOT))
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("error: --peers needs torch and pytorch-metric-learning")


@pytest.mark.parametrize("case", list(bench_peers.CASES))
def test_our_side_of_every_case_runs_with_its_matmul_floor(case, capsys):
    bench_peers.worker("ours", case, 16, reps=1)
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["ms"] > 0 and result["floor_ms"] > 0


def test_unknown_case_is_an_error(capsys):
    assert bench_peers.main(["--cases", "Nope"]) == 2
    assert "unknown case(s) ['Nope']" in capsys.readouterr().err
