"""PaddleClas-style evaluation script: ``python tools/eval.py -c CONFIG -o Global.pretrained_model=PREFIX``.

Builds the model and the eval sets of the config, loads the weights (``Global.pretrained_model``, or
``Global.checkpoints``) and logs the metrics in PaddleClas's ``[Eval][Epoch 0][Avg]...`` format.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from train import main  # noqa: E402  (the same entry)

if __name__ == "__main__":
    sys.exit(main("eval"))
