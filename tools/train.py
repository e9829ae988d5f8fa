"""PaddleClas-style training script: ``python tools/train.py -c CONFIG -o KEY=VALUE ...``.

With no arguments it trains ``configs/quickstart.yaml`` (zero-shot retrieval on scikit-learn's digits).
Runs unchanged under ``python -m paddle.distributed.launch --nproc_per_node 2 tools/train.py ...``.
The thread count (all cores unless ``Global.num_threads`` or ``$PADDLE_LOSSES_NUM_THREADS`` is set) is
set by the trainer's command line, ``paddle_losses.engine.cli``, as for ``paddle-losses train``.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main(mode="train", argv=None):
    from paddle_losses.engine.cli import run
    return run(sys.argv[1:] if argv is None else argv, mode)


if __name__ == "__main__":
    sys.exit(main("train"))
