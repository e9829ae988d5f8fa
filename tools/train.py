"""PaddleClas-style training script: ``python tools/train.py -c CONFIG -o KEY=VALUE ...``.

With no arguments it trains ``configs/quickstart.yaml`` (zero-shot retrieval on scikit-learn's digits).
Runs unchanged under ``python -m paddle.distributed.launch --nproc_per_node 2 tools/train.py ...``.
"""
import importlib.util
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def _set_threads(argv):
    # Paddle reads OMP_NUM_THREADS once, at import, and otherwise runs its CPU math on one thread. Importing
    # the paddle_losses package would import Paddle, so the (Paddle-free) cli module is loaded by path.
    spec = importlib.util.spec_from_file_location(
        "_paddle_losses_cli_threads", os.path.join(ROOT, "paddle_losses", "engine", "cli.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    mod.set_thread_env(argv)


def main(mode="train", argv=None):
    argv = sys.argv[1:] if argv is None else argv
    _set_threads(argv)
    from paddle_losses.engine.cli import run
    return run(argv, mode)


if __name__ == "__main__":
    sys.exit(main("train"))
