"""Fork integration against a stand-in PaddleClas package that resolves loss names like PaddleClas."""
import importlib
import os
import sys

import paddle
import pytest

import paddle_losses as pl
from paddle_losses.integrations import ppcls as integration

FAKE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fake_ppcls")


@pytest.fixture
def fake_ppcls(scratch_registry):
    sys.path.insert(0, FAKE)
    for mod in [m for m in sys.modules if m == "ppcls" or m.startswith("ppcls.")]:
        del sys.modules[mod]
    try:
        yield importlib.import_module("ppcls.loss"), importlib.import_module("ppcls.engine.engine")
    finally:
        sys.path.remove(FAKE)
        for mod in [m for m in sys.modules if m == "ppcls" or m.startswith("ppcls.")]:
            del sys.modules[mod]


@pytest.fixture
def toy_losses(scratch_registry):
    @pl.register_loss
    class ToyScaleLoss(paddle.nn.Layer):
        def __init__(self, scale: float = 1.0):
            super().__init__()
            self.scale = scale
            self.centers = self.create_parameter([2, 2])

        def forward(self, input, target):
            return {"ToyScaleLoss": input["features"].sum() * self.scale}

    return ToyScaleLoss, pl.get_loss("CELoss")


def test_importing_paddle_losses_does_not_import_ppcls():
    code = "import sys, paddle_losses.integrations.ppcls, paddle_losses.ppcls_compat; print('ppcls' in sys.modules)"
    import subprocess
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_register_into_lets_the_forks_own_build_loss_resolve_our_names(fake_ppcls, toy_losses):
    loss_mod, engine_mod = fake_ppcls
    installed = integration.register_into(loss_mod, names=["ToyScaleLoss"])
    assert installed == ["ToyScaleLoss"]
    engine = engine_mod.Engine({"Loss": {"Train": [{"ToyScaleLoss": {"weight": 2.0, "scale": 3.0}}]}})
    out = engine.train_loss_func({"features": paddle.ones([2, 2])}, None)
    assert float(out["loss"]) == pytest.approx(2.0 * 3.0 * 4)
    assert type(engine.train_loss_func.loss_func[0]) is toy_losses[0]


def test_register_into_default_target_imports_ppcls_lazily(fake_ppcls, toy_losses):
    loss_mod, _ = fake_ppcls
    integration.register_into(names=["ToyScaleLoss"])
    assert loss_mod.ToyScaleLoss is toy_losses[0]


def test_name_clash_policies(fake_ppcls, toy_losses):
    loss_mod, _ = fake_ppcls
    forks_ce = loss_mod.CELoss
    assert integration.register_into(loss_mod, names=["CELoss"], on_conflict="keep") == []
    assert loss_mod.CELoss is forks_ce
    with pytest.raises(ValueError, match="already defined"):
        integration.register_into(loss_mod, names=["CELoss"], on_conflict="error")
    assert integration.register_into(loss_mod, names=["CELoss"]) == ["CELoss"]
    assert loss_mod.CELoss is toy_losses[1]
    with pytest.raises(ValueError, match="on_conflict"):
        integration.register_into(loss_mod, on_conflict="replace")


def test_register_into_a_dict_namespace(toy_losses):
    ns = {}
    integration.register_into(ns, names=["ToyScaleLoss"])
    assert ns == {"ToyScaleLoss": toy_losses[0]}


def test_patch_build_loss_swaps_the_engines_builder(fake_ppcls, toy_losses):
    _, engine_mod = fake_ppcls
    previous = integration.patch_build_loss(engine_mod)
    try:
        engine = engine_mod.Engine({"Loss": {"Train": [{"ToyScaleLoss": {"weight": 1.0}},
                                                       {"CELoss": {"weight": 0.5}}]}})
        loss = engine.train_loss_func
        out = loss({"features": paddle.ones([2, 2]), "logits": paddle.zeros([2, 4])},
                   paddle.to_tensor([[1], [2]]))
        assert float(out["CELoss"]) == pytest.approx(0.5 * 1.3862944, rel=1e-6)
        assert float(out["loss"]) == pytest.approx(4.0 + 0.5 * 1.3862944, rel=1e-6)
        assert isinstance(loss, pl.CombinedLoss)
        assert "loss_func.0.centers" in loss.state_dict()
        assert [type(m).__name__ for m in loss.loss_func] == ["ToyScaleLoss", "CELoss"]
        with pytest.raises(pl.ConfigError, match=r"Loss.Train\[0\].ToyScaleLoss.weight is missing"):
            engine_mod.Engine({"Loss": {"Train": [{"ToyScaleLoss": {}}]}})
    finally:
        engine_mod.build_loss = previous


def test_patch_build_loss_default_target_is_ppcls_engine(fake_ppcls, toy_losses):
    _, engine_mod = fake_ppcls
    previous = integration.patch_build_loss()
    assert engine_mod.build_loss is pl.build_loss
    engine_mod.build_loss = previous


def test_star_import_module_exports_registered_classes(toy_losses):
    import paddle_losses.ppcls_compat as compat
    compat = importlib.reload(compat)
    assert compat.ToyScaleLoss is toy_losses[0]
    assert "ToyScaleLoss" in compat.__all__
