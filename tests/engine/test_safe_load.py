"""The restricted checkpoint unpickler: everything paddle.save writes loads unchanged, nothing else loads."""
import os
import pickle

import numpy as np
import paddle
import pytest

from paddle_losses.engine.safe_load import UnsafeCheckpointError, safe_load
from paddle_losses.errors import ConfigError


def _trained():
    model = paddle.nn.Sequential(paddle.nn.Linear(4, 3), paddle.nn.BatchNorm1D(3))
    sched = paddle.optimizer.lr.StepDecay(0.1, 2)
    opts = [paddle.optimizer.Adam(sched, parameters=model.parameters()),
            paddle.optimizer.Momentum(0.1, parameters=model.parameters())]
    model(paddle.randn([5, 4])).sum().backward()
    for opt in opts:
        opt.step()
    sched.step()
    return model, opts


def _equal(a, b):
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b))
    if isinstance(a, paddle.Tensor):
        return a.dtype == b.dtype and np.array_equal(a.numpy(), b.numpy())
    return type(a) is type(b) and a == b


def test_what_paddle_save_writes_loads_exactly_as_paddle_load_does(tmp_path):
    model, opts = _trained()
    objects = {"w.pdparams": model.state_dict(), "w.pdopt": [opt.state_dict() for opt in opts],
               "w.pdstates": {"metric": np.float64(0.5), "epoch": 3, "history": {"eval": {"r1": [(1, 0.5)]}},
                              "names": [["linear_0.w_0"]], "none": None, "flag": True}}
    for name, obj in objects.items():
        paddle.save(obj, str(tmp_path / name))
        assert _equal(safe_load(str(tmp_path / name)), paddle.load(str(tmp_path / name))), name


class _Calls:
    def __init__(self, fn, *args):
        self.fn, self.args = fn, args

    def __reduce__(self):
        return (self.fn, self.args)


@pytest.mark.parametrize("payload,refused", [
    (_Calls(os.system, "true"), "posix.system"),
    (_Calls(eval, "1"), "builtins.eval"),
    (_Calls(getattr, np.ones(1), "tofile"), "builtins.getattr"),
])
def test_any_other_global_is_refused_naming_the_file(tmp_path, payload, refused):
    path = tmp_path / "evil.pdparams"
    path.write_bytes(pickle.dumps({"w": np.ones(2, np.float32), "x": payload}))
    with pytest.raises(UnsafeCheckpointError, match=rf"evil\.pdparams references {refused}"):
        safe_load(str(path))


def test_trust_loads_with_plain_paddle_load(tmp_path):
    import datetime
    path = tmp_path / "d.pdstates"
    path.write_bytes(pickle.dumps({"when": datetime.date(2024, 1, 2)}))
    with pytest.raises(UnsafeCheckpointError):
        safe_load(str(path))
    assert safe_load(str(path), trust=True)["when"] == datetime.date(2024, 1, 2)


def test_unreadable_files_are_config_errors_naming_the_file(tmp_path):
    (tmp_path / "text.pdparams").write_text("not a pickle")
    with pytest.raises(ConfigError, match=r"text\.pdparams is not a readable Paddle checkpoint"):
        safe_load(str(tmp_path / "text.pdparams"))
    with pytest.raises(ConfigError, match="is a directory"):
        safe_load(str(tmp_path))
