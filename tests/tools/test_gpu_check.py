"""tools/gpu_check.py: on a CPU-only Paddle it says why it skips and exits 0."""
import os
import subprocess
import sys

import paddle
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.mark.skipif(paddle.is_compiled_with_cuda(), reason="a CUDA build runs the check instead of skipping")
def test_gpu_check_skips_with_a_clear_message_on_cpu_only_paddle():
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "gpu_check.py")], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0
    assert "gpu_check: skipped" in proc.stdout and "no CUDA" in proc.stdout
