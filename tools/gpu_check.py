#!/usr/bin/env python
"""GPU check: ``python tools/gpu_check.py`` on a machine with a CUDA build of Paddle (under 8 minutes).

Three parts, one summary line each:

1. golden replays: every test named ``golden`` (the recorded PaddleClas / peer-framework cases) and the AMP
   scaler checkpoint test, run with
   ``PADDLE_LOSSES_TEST_DEVICE=gpu`` so that every tensor lives on the GPU;
2. AMP: the quick-start training (configs/quickstart.yaml, 2 short epochs) with ``AMP.level`` O1 and O2,
   asserting finite losses and metrics;
3. ``tools/bench.py --quick`` on the GPU.

Each part runs in its own process with a time limit. On a CPU-only Paddle it prints why it skips and exits 0.
Exit status: 0 when every part passed (or skipped), 1 otherwise.
"""
import json
import math
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LIMITS = {"golden": 240, "amp": 90, "bench": 120}  # seconds; 240 + 2 * 90 + 120 = 9 min worst case is
# never reached: the AMP runs take seconds on a GPU, and the whole check stays under 8 minutes


def cuda_available():
    import paddle
    return paddle.is_compiled_with_cuda() and paddle.device.cuda.device_count() > 0


def _run(cmd, limit, env=None):
    start = time.time()
    try:
        proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=limit)
        return proc.returncode, proc.stdout + proc.stderr, time.time() - start
    except subprocess.TimeoutExpired as exc:
        out = (exc.stdout or b"").decode(errors="replace") if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        return None, out, time.time() - start


def _last_line(text, needle=""):
    lines = [ln for ln in text.strip().splitlines() if needle in ln]
    return lines[-1].strip() if lines else ""


def part_golden():
    env = dict(os.environ, PADDLE_LOSSES_TEST_DEVICE="gpu")
    cmd = [sys.executable, "-m", "pytest", "tests", "-q", "-k", "golden or amp_scaler"]
    rc, out, secs = _run(cmd, LIMITS["golden"], env)
    status = "timed out" if rc is None else ("ok" if rc == 0 else "FAILED")
    return rc == 0, f"golden replays on gpu: {status}, {_last_line(out, ' in ') or 'no summary'} ({secs:.0f}s)"


def part_amp(level):
    rc, out, secs = _run([sys.executable, os.path.abspath(__file__), "--amp-run", level], LIMITS["amp"])
    line = _last_line(out, "AMP_RESULT ")
    if rc != 0 or not line:
        return False, f"AMP {level} quick start: FAILED ({secs:.0f}s): {_last_line(out) or 'no output'}"
    res = json.loads(line[len("AMP_RESULT "):])
    ok = all(math.isfinite(v) for v in res["losses"] + list(res["metrics"].values()))
    metrics = ", ".join(f"{k} {v:.4f}" for k, v in res["metrics"].items())
    return ok, (f"AMP {level} quick start: {'ok' if ok else 'NON-FINITE'}, losses "
                f"{', '.join(f'{v:.4f}' for v in res['losses'])}, {metrics} ({secs:.0f}s)")


def amp_run(level, out_dir):
    """One quick-start training with ``AMP.level=level`` on the GPU; prints ``AMP_RESULT {json}``."""
    sys.path.insert(0, ROOT)
    from paddle_losses.config import load_config
    from paddle_losses.engine.trainer import Engine
    overrides = [f"Global.output_dir={out_dir}", "Global.device=gpu", "Global.epochs=2", "Global.iter_per_epoch=20",
                 "Global.seed=0", "Global.progress_bar=False", "Global.plot_curves=False",
                 f"AMP={{'level': '{level}', 'scale_loss': 1024.0, 'use_dynamic_loss_scaling': True}}"]
    engine = Engine(load_config(os.path.join(ROOT, "configs", "quickstart.yaml"), overrides=overrides))
    if not engine.amp.enabled:
        raise SystemExit(f"AMP was not enabled on device {engine.device}")
    result = engine.train()
    print("AMP_RESULT " + json.dumps({"losses": [float(v) for v in result["history"]["loss"]],
                                      "metrics": {k: float(v) for k, v in (result["last_metrics"] or {}).items()}}))


def part_bench():
    rc, out, secs = _run([sys.executable, os.path.join("tools", "bench.py"), "--quick"], LIMITS["bench"])
    status = "timed out" if rc is None else ("ok" if rc == 0 else "FAILED")
    return rc == 0, f"bench --quick on gpu: {status} ({secs:.0f}s); output in the lines above"


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--amp-run"]:
        import tempfile
        with tempfile.TemporaryDirectory() as out_dir:
            amp_run(argv[1], out_dir)
        return 0
    if not cuda_available():
        print("gpu_check: skipped: this Paddle build has no CUDA device (CPU-only Paddle or no GPU visible); "
              "nothing was run. Run it on a machine with paddlepaddle-gpu.")
        return 0
    results = []
    for name, fn in (("golden", part_golden), ("amp O1", lambda: part_amp("O1")),
                     ("amp O2", lambda: part_amp("O2")), ("bench", part_bench)):
        ok, line = fn()
        results.append(ok)
        print(line, flush=True)
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
