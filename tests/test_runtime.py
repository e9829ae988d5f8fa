"""paddle_losses.runtime: the thread count every entry point uses, set without Paddle's thread warning."""
import os
import subprocess
import sys

import pytest

from paddle_losses import runtime
from paddle_losses.errors import ConfigError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_config_value_wins_over_the_environment(monkeypatch):
    monkeypatch.setenv(runtime.THREADS_ENV, "3")
    assert runtime.requested_threads(5) == 5
    assert runtime.requested_threads("4") == 4


def test_environment_variable_overrides_all_cores(monkeypatch):
    monkeypatch.setenv(runtime.THREADS_ENV, "3")
    assert runtime.requested_threads(None) == 3
    monkeypatch.delenv(runtime.THREADS_ENV)
    assert runtime.requested_threads(None) == runtime.available_cores() >= 1


@pytest.mark.parametrize("bad", [0, -2, "abc", 1.5, True])
def test_a_bad_thread_count_is_a_config_error_naming_the_key(bad):
    with pytest.raises(ConfigError, match=r"Global.num_threads must be a positive integer"):
        runtime.requested_threads(bad)


def test_a_bad_environment_value_names_the_variable(monkeypatch):
    monkeypatch.setenv(runtime.THREADS_ENV, "many")
    with pytest.raises(ConfigError, match=runtime.THREADS_ENV):
        runtime.requested_threads(None)


def test_setting_threads_prints_neither_paddles_thread_warning_nor_the_ccache_warning():
    # A fresh process with no OMP_NUM_THREADS, as a user's shell: Paddle warns when the variable is above 1
    # at import, and about ccache on import; neither may reach the output.
    code = ("from paddle_losses import runtime; n = runtime.set_threads(2); "
            "import paddle; x = paddle.ones([64, 64]); print(n, float(paddle.matmul(x, x).sum()))")
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    env["PYTHONPATH"] = ROOT
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == ["2", str(64.0 ** 3)]
    assert res.stderr == ""


def test_importing_the_package_does_not_import_paddle():
    code = "import sys, paddle_losses, paddle_losses.cli; print('paddle' in sys.modules)"
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "PYTHONPATH": ROOT})
    assert res.stdout.strip() == "False", res.stderr


def test_the_lazy_package_still_exposes_its_names_and_submodules():
    import paddle_losses as pl
    assert pl.build_loss is __import__("paddle_losses.combined", fromlist=["x"]).build_loss
    assert pl.registry.is_loss("CELoss")
    assert "get_loss" in dir(pl)
    with pytest.raises(AttributeError, match="no attribute 'no_such_name'"):
        pl.no_such_name
