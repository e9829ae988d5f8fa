"""The paddle-losses console script: list and describe."""
import subprocess
import sys

import paddle
import pytest

import paddle_losses as pl
from paddle_losses.cli import main


@pytest.fixture
def toy(scratch_registry):
    @pl.register_loss
    class ToyDescribedLoss(paddle.nn.Layer):
        """Toy loss.

        Math: mean(x) * margin.
        """
        input_keys = ("input[feature_from]",)
        output_keys = ("ToyDescribedLoss",)

        def __init__(self, margin: float = 0.5, feature_from: str = "features"):
            super().__init__()

    return ToyDescribedLoss


def test_list_with_pattern(toy, capsys):
    assert main(["list", "ToyDesc*"]) == 0
    assert capsys.readouterr().out.strip() == "ToyDescribedLoss"


def test_list_no_match(toy, capsys):
    assert main(["list", "NoSuch*"]) == 0
    assert "no loss matches" in capsys.readouterr().out


def test_describe_shows_parameters_inputs_outputs_and_docstring(toy, capsys):
    assert main(["describe", "ToyDescribedLoss"]) == 0
    out = capsys.readouterr().out
    assert "margin: float (default 0.5)" in out
    assert "feature_from: str (default 'features')" in out
    assert "weight: float (required in YAML" in out
    assert "Reads from the input dict: input[feature_from]" in out
    assert "Output keys: ToyDescribedLoss" in out
    assert "Math: mean(x) * margin." in out


def test_describe_unknown_name_exits_2_with_suggestion(toy, capsys):
    assert main(["describe", "ToyDescribedLos"]) == 2
    assert "Did you mean 'ToyDescribedLoss'" in capsys.readouterr().err


def test_console_script_describes_celoss():
    # The installed entry point, as a user runs it.
    res = subprocess.run([sys.executable, "-m", "paddle_losses.cli", "describe", "CELoss"],
                         capture_output=True, text=True, check=True)
    assert "epsilon" in res.stdout and "reduction" in res.stdout


def test_console_script_train_dispatches_to_the_trainer_with_threads_set(tmp_path):
    code = ("import os, sys; from paddle_losses.cli import main; "
            "sys.exit(main(['train', '-o', 'Global.epochs=1', '-o', 'Global.eval_before_train=False', "
            f"'-o', 'Global.output_dir={tmp_path}', '-o', 'Global.num_threads=2']))")
    env = {k: v for k, v in __import__("os").environ.items() if k != "OMP_NUM_THREADS"}
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    log = res.stdout + res.stderr
    assert "[Eval][Epoch 1][Avg]recall1" in log
    assert "CPU threads: 2" in log
    assert "OMP_NUM_THREADS" not in log  # Paddle's thread warning
    assert (tmp_path / "latest.pdparams").exists()
