"""The trainer's AMP and EMA sections: validation, the CPU fallback of AMP, the EMA average and its checkpoints."""
import os
import warnings

import numpy as np
import paddle
import pytest

from engine_helpers import QUICKSTART, build_engine, fast
from paddle_losses.engine.amp import AmpRunner, AmpSettings, amp_supported
from paddle_losses.engine.ema import ModelEMA, ema_decay
from paddle_losses.engine.safe_load import safe_load
from paddle_losses.errors import ConfigError, ConfigWarning


def test_amp_section_on_cpu_warns_once_and_trains_in_float32(tmp_path, capsys):
    if amp_supported("gpu") and paddle.is_compiled_with_cuda():
        pytest.skip("CUDA build: AMP is applied")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        from paddle_losses.config import load_config
        from paddle_losses.engine.trainer import Engine
        cfg = load_config(str(QUICKSTART), overrides=fast(tmp_path, extra=["AMP={'level': 'O2', 'scale_loss': 128.0}"]))
        engine = Engine(cfg)
    amp_warnings = [w for w in caught if issubclass(w.category, ConfigWarning) and "AMP" in str(w.message)]
    assert len(amp_warnings) == 1 and "float32" in str(amp_warnings[0].message)
    assert not engine.amp.enabled and engine.amp.state_dict() is None
    result = engine.train()
    assert np.isfinite(result["history"]["loss"]).all()
    assert all(p.dtype == paddle.float32 for p in engine.model.parameters())


@pytest.mark.parametrize("section,match", [
    ({"level": "O3"}, "AMP.level"), ({"scale_loss": 0}, "AMP.scale_loss"), ({"use_amp": "yes"}, "AMP.use_amp"),
    ({"dtype": "int8"}, "AMP.dtype"), ({"lvl": "O1"}, "AMP.lvl"),
])
def test_bad_amp_section_is_a_config_error_naming_the_key(section, match):
    with pytest.raises(ConfigError, match=match):
        AmpSettings(section, "cpu")


def test_amp_settings_read_paddleclas_keys():
    s = AmpSettings({"use_amp": True, "level": "o2", "scale_loss": 65536.0, "use_dynamic_loss_scaling": True,
                     "use_promote": True, "use_fp16_test": True}, "gpu:0")
    assert (s.enabled, s.level, s.scale_loss, s.dynamic, s.use_promote, s.fp16_test) == \
        (True, "O2", 65536.0, True, True, True)
    assert not AmpSettings({"use_amp": False}, "gpu:0").enabled
    assert not AmpSettings(None, "gpu:0").requested


def test_disabled_amp_runner_is_the_plain_float32_step():
    layer = paddle.nn.Linear(3, 2)
    opt = paddle.optimizer.SGD(learning_rate=0.1, parameters=layer.parameters())
    runner = AmpRunner(AmpSettings(None, "cpu"))
    before = layer.weight.numpy().copy()
    with runner.autocast():
        loss = layer(paddle.ones([4, 3])).sum()
    runner.backward(loss)
    grad = layer.weight.grad.numpy().copy()
    runner.step(opt)
    np.testing.assert_allclose(layer.weight.numpy(), before - 0.1 * grad, rtol=1e-6)


@pytest.mark.parametrize("section,match", [({"decay": 1.0}, "EMA.decay"), ({"decay": "high"}, "EMA.decay"),
                                           ({"beta": 0.9}, "EMA.beta")])
def test_bad_ema_section_is_a_config_error(section, match):
    with pytest.raises(ConfigError, match=match):
        ema_decay(section)


def test_ema_update_is_the_exponential_moving_average_and_swaps_back():
    paddle.seed(0)
    layer = paddle.nn.Linear(3, 2)
    ema = ModelEMA(layer, 0.9)
    w0 = layer.weight.numpy().copy()
    w1 = w0 + 1.0
    layer.weight.set_value(w1)
    ema.update()
    np.testing.assert_allclose(ema.state_dict()["weight"], 0.9 * w0 + 0.1 * w1, rtol=1e-6)
    with ema.swapped_in():
        np.testing.assert_allclose(layer.weight.numpy(), 0.9 * w0 + 0.1 * w1, rtol=1e-6)
    np.testing.assert_array_equal(layer.weight.numpy(), w1)


def test_ema_best_model_holds_the_averaged_weights_and_latest_the_trained_ones(tmp_path):
    engine = build_engine(QUICKSTART, fast(tmp_path, epochs=1, iters=3, extra=["EMA={'decay': 0.5}"]))
    engine.train()
    best = safe_load(os.path.join(tmp_path, "best_model.pdparams"))
    latest = safe_load(os.path.join(tmp_path, "latest.pdparams"))
    states = safe_load(os.path.join(tmp_path, "latest.pdstates"))
    averaged = engine.ema.state_dict()
    trained = {k: v.numpy() for k, v in engine.model.state_dict().items()}
    key = next(k for k in averaged if not np.allclose(averaged[k], trained[k]))  # some weight moved
    np.testing.assert_allclose(np.asarray(best[key]), averaged[key], rtol=1e-6)
    np.testing.assert_allclose(np.asarray(latest[key]), trained[key], rtol=1e-6)
    np.testing.assert_allclose(np.asarray(states["ema"][key]), averaged[key], rtol=1e-6)


@pytest.mark.skipif(not (paddle.is_compiled_with_cuda() and paddle.device.cuda.device_count() > 0),
                    reason="Paddle's GradScaler only acts on CUDA/XPU devices (run by tools/gpu_check.py)")
def test_amp_scaler_state_is_checkpointed_and_resumed_on_gpu(tmp_path):
    amp = "AMP={'level': 'O1', 'scale_loss': 1024.0, 'use_dynamic_loss_scaling': True}"
    engine = build_engine(QUICKSTART, fast(tmp_path / "run", epochs=1, iters=3,
                                           extra=[amp, "Global.device=gpu"]))
    engine.train()
    saved = safe_load(os.path.join(tmp_path, "run", "latest.pdstates"))["amp_scaler"]
    assert saved == engine.amp.state_dict() and saved
    resumed = build_engine(QUICKSTART, fast(tmp_path / "run", epochs=2, iters=3, extra=[
        amp, "Global.device=gpu", f"Global.checkpoints={tmp_path / 'run' / 'latest'}"]))
    assert resumed.amp.state_dict().keys() == saved.keys()
    for k in saved:
        np.testing.assert_allclose(np.asarray(resumed.amp.state_dict()[k]), np.asarray(saved[k]))
