"""Checkpoint layout, model + loss state, atomic writes under failure, and loading errors."""
import os

import numpy as np
import paddle
import pytest

from paddle_losses import build_loss
from paddle_losses.engine import checkpoint as ckpt
from paddle_losses.engine.model import build_model
from paddle_losses.errors import ConfigError

ARCH = {"name": "RecModel", "Backbone": {"name": "DigitsMLP", "hidden": 8, "out_dim": 6},
        "Neck": {"name": "FC", "embedding_size": 6, "class_num": 4},
        "Head": {"name": "FC", "embedding_size": 4, "class_num": 3}}


def parts():
    model = build_model(ARCH)
    loss = build_loss([{"CELoss": {"weight": 1.0}},
                       {"CenterLoss": {"weight": 0.0005, "num_classes": 3, "feat_dim": 4}}])
    opt = paddle.optimizer.Momentum(0.1, parameters=model.parameters() + loss.parameters())
    return model, loss, opt


def test_layout_and_contents(tmp_path):
    model, loss, opt = parts()
    ckpt.save_checkpoint(str(tmp_path), "best_model", model, loss, [opt], {"metric": 0.5, "epoch": 3})
    names = sorted(os.listdir(tmp_path))
    assert names == ["best_model", "best_model.manifest.json", "best_model.pdopt", "best_model.pdparams",
                     "best_model.pdstates"]
    assert os.listdir(tmp_path / "best_model") == ["model.pdparams"]
    params = paddle.load(str(tmp_path / "best_model.pdparams"))
    assert "loss_func.1.centers" in params and "neck.fc.weight" in params
    assert isinstance(paddle.load(str(tmp_path / "best_model.pdopt")), list)
    states = paddle.load(str(tmp_path / "best_model.pdstates"))
    assert states["metric"] == 0.5 and states["epoch"] == 3


def test_a_failure_while_saving_leaves_the_previous_checkpoint_intact(tmp_path, monkeypatch):
    model, loss, opt = parts()
    ckpt.save_checkpoint(str(tmp_path), "latest", model, loss, [opt], {"metric": 0.1, "epoch": 1})
    before = {n: (tmp_path / n).read_bytes() for n in os.listdir(tmp_path)}
    with paddle.no_grad():
        model.neck.fc.weight.set_value(model.neck.fc.weight + 1.0)
    real_write = ckpt._write_durably

    def failing_write(path, data):
        if ".pdopt" in str(path):
            with open(path, "wb") as fh:
                fh.write(data[:10])  # a partial write, then the crash
            raise OSError("disk full")
        return real_write(path, data)

    monkeypatch.setattr(ckpt, "_write_durably", failing_write)
    with pytest.raises(OSError, match="disk full"):
        ckpt.save_checkpoint(str(tmp_path), "latest", model, loss, [opt], {"metric": 0.2, "epoch": 2})
    monkeypatch.setattr(ckpt, "_write_durably", real_write)
    ckpt.remove_stale_temporaries(str(tmp_path))
    after = {n: (tmp_path / n).read_bytes() for n in os.listdir(tmp_path)}
    assert after == before  # same files, same bytes, no temporary leftovers after the start-up clean-up


def test_load_restores_model_and_loss_state(tmp_path):
    model, loss, opt = parts()
    ckpt.save_checkpoint(str(tmp_path), "latest", model, loss, [opt], {"metric": 0.7, "epoch": 4})
    model2, loss2, opt2 = parts()
    states = ckpt.load_checkpoint(str(tmp_path / "latest"), model2, loss2, [opt2])
    assert states["metric"] == 0.7 and states["epoch"] == 4
    for (k, a), (_, b) in zip(ckpt.merged_state(model, loss).items(), ckpt.merged_state(model2, loss2).items()):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=k)


def test_missing_files_and_weights_are_config_errors(tmp_path):
    model, loss, opt = parts()
    with pytest.raises(ConfigError, match=r"latest.pdparams does not exist"):
        ckpt.load_checkpoint(str(tmp_path / "latest"), model, loss, [opt])
    paddle.save({"unrelated.weight": paddle.zeros([1])}, str(tmp_path / "w.pdparams"))
    with pytest.raises(ConfigError, match="lacks the weights"):
        ckpt.load_weights(str(tmp_path / "w"), model, None)
