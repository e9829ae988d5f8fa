"""The trainer's command line (tools/*.py, paddle-losses train|eval): refusals before anything is built."""
import pytest

from engine_helpers import QUICKSTART
from paddle_losses.engine.cli import run


def test_eval_without_weights_refuses_with_one_line_naming_the_fix(tmp_path):
    with pytest.raises(SystemExit) as exc:
        run(["-c", str(QUICKSTART), "-o", f"Global.output_dir={tmp_path}/q"], mode="eval")
    message = str(exc.value)
    assert message.startswith("error: nothing to evaluate: Global.pretrained_model is not set")
    assert f"-o Global.pretrained_model={tmp_path}/q/best_model" in message and "--untrained" in message
    assert "\n" not in message
    assert not (tmp_path / "q").exists()  # refused before anything was built or written


def test_eval_of_the_untrained_model_on_purpose(tmp_path, capsys):
    assert run(["-c", str(QUICKSTART), "-o", f"Global.output_dir={tmp_path}", "--untrained"], mode="eval") == 0
    assert "[Eval][Epoch 0][Avg]recall1" in capsys.readouterr().out


def test_untrained_is_an_eval_only_flag():
    with pytest.raises(SystemExit):
        run(["-c", str(QUICKSTART), "--untrained"], mode="train")
