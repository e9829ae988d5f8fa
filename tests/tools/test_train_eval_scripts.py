"""tools/train.py and tools/eval.py as a user runs them: thread setup before Paddle, PaddleClas flags,
re-evaluation of a saved checkpoint to the same metrics, and one-line config errors."""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = ROOT / "configs" / "quickstart.yaml"


def run_script(script, *args):
    # the scripts must set the thread count themselves, so none is inherited
    full_env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    return subprocess.run([sys.executable, str(ROOT / "tools" / script), *args], capture_output=True, text=True,
                          cwd=str(ROOT), env=full_env, timeout=300)


def metrics_of(stdout, epoch):
    m = re.search(rf"\[Eval\]\[Epoch {epoch}\]\[Avg\](.*)", stdout)
    assert m, stdout[-2000:]
    return dict((k, float(v)) for k, v in re.findall(r"([\w@-]+): ([\d.]+)", m.group(1)))


def test_train_then_eval_reproduces_the_metrics(tmp_path):
    out = tmp_path / "out"
    common = ["-c", str(QUICKSTART), "-o", f"Global.output_dir={out}", "-o", "Global.epochs=1",
              "-o", "Global.iter_per_epoch=3", "-o", "Global.eval_before_train=False", "-o", "Global.num_threads=1"]
    train = run_script("train.py", *common, "-p", "batch_range=[1,2]")
    assert train.returncode == 0, train.stderr[-3000:]
    assert "OMP_NUM_THREADS: 1" in train.stdout
    assert "profiler_options : batch_range=[1,2]" in train.stdout
    assert "Global : " in train.stdout and "-" * 60 in train.stdout  # resolved config printed at start
    trained = metrics_of(train.stdout, 1)
    ev = run_script("eval.py", *common, "-o", f"Global.pretrained_model={out / 'latest'}")
    assert ev.returncode == 0, ev.stderr[-3000:]
    assert metrics_of(ev.stdout, 0) == pytest.approx(trained)


def test_threads_default_to_all_cores_when_unset():
    import importlib.util
    spec = importlib.util.spec_from_file_location("cli_threads", ROOT / "paddle_losses" / "engine" / "cli.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    old = os.environ.pop("OMP_NUM_THREADS", None)
    try:
        assert mod.set_thread_env(["-c", str(QUICKSTART)]) == (os.cpu_count() or 1)
        assert mod.set_thread_env(["-c", str(QUICKSTART), "-o", "Global.num_threads=3"]) == 3
    finally:
        if old is None:
            os.environ.pop("OMP_NUM_THREADS", None)
        else:
            os.environ["OMP_NUM_THREADS"] = old


def test_a_config_mistake_exits_with_a_one_line_error(tmp_path):
    res = run_script("train.py", "-o", f"Global.output_dir={tmp_path}", "-o", "Arch.Backbone.name=DigitsConvnet")
    assert res.returncode != 0
    assert "error: Arch.Backbone.name: backbone 'DigitsConvnet' is not registered. Did you mean 'DigitsConvNet'" in res.stderr
    assert "Traceback" not in res.stderr
