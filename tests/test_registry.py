"""Registry: decorators, lookups with suggestions, fnmatch listing, entry-point plugins."""
import importlib
import subprocess
import sys

import paddle
import pytest

import paddle_losses as pl
from paddle_losses import registry
from paddle_losses.errors import ConfigError, ConfigWarning


def test_register_and_get_by_class_name(scratch_registry):
    @pl.register_loss
    class ToyAlphaLoss(paddle.nn.Layer):
        pass

    assert pl.get_loss("ToyAlphaLoss") is ToyAlphaLoss
    assert "ToyAlphaLoss" in pl.list_losses("Toy*")
    assert registry.get("ToyAlphaLoss") is ToyAlphaLoss and "ToyAlphaLoss" in registry.names()


def test_registered_name_must_equal_class_name(scratch_registry):
    class Whatever(paddle.nn.Layer):
        pass

    with pytest.raises(ValueError, match="must equal the class name"):
        pl.register_loss(Whatever, name="Other")


def test_two_classes_cannot_share_a_name(scratch_registry):
    @pl.register_loss
    class ToyDupLoss(paddle.nn.Layer):
        pass

    class ToyDupLoss(paddle.nn.Layer):  # noqa: F811 - a different class with the same name
        pass

    with pytest.raises(ValueError, match="already registered"):
        pl.register_loss(ToyDupLoss)


def test_unknown_name_lists_close_matches(scratch_registry):
    @pl.register_loss
    class ToyTripletLoss(paddle.nn.Layer):
        pass

    with pytest.raises(ConfigError) as info:
        pl.get_loss("ToyTripletLos")
    assert "'ToyTripletLos' is not registered" in str(info.value)
    assert "Did you mean 'ToyTripletLoss'" in str(info.value)
    with pytest.raises(ConfigError, match="must be a string"):
        pl.get_loss(None)


def test_heads_have_their_own_table(scratch_registry):
    @pl.register_head
    class ToyHead(paddle.nn.Layer):
        pass

    assert pl.get_head("ToyHead") is ToyHead
    assert "ToyHead" not in pl.list_losses()
    with pytest.raises(ConfigError, match="head 'ToyHeadd' is not registered"):
        pl.get_head("ToyHeadd")


def test_list_losses_filters_with_fnmatch_and_sorts(scratch_registry):
    for name in ("ToyBLoss", "ToyALoss", "OtherToy"):
        pl.register_loss(type(name, (paddle.nn.Layer,), {}))
    assert pl.list_losses("Toy*Loss") == ["ToyALoss", "ToyBLoss"]
    assert pl.list_losses("*Toy") == ["OtherToy"]


PLUGIN_SETUP = """
from setuptools import setup
setup(name="pl-toy-plugin", version="0.1", py_modules=["pl_toy_plugin", "pl_broken_plugin"],
      entry_points={"paddle_losses.losses": [
          "ToyPluginLoss = pl_toy_plugin:ToyPluginLoss",
          "BrokenPluginLoss = pl_broken_plugin:BrokenPluginLoss"]})
"""
PLUGIN_MODULE = '''
import paddle

class ToyPluginLoss(paddle.nn.Layer):
    """A third-party loss discovered through the paddle_losses.losses entry point."""
    output_keys = ("ToyPluginLoss",)

    def __init__(self, scale: float = 2.0):
        super().__init__()
        self.scale = scale

    def forward(self, input, target):
        return {"ToyPluginLoss": input["features"].sum() * self.scale}
'''


@pytest.fixture
def installed_plugin(tmp_path, scratch_registry):
    """Build and pip-install a tiny plugin distribution into a target dir that is put on sys.path."""
    src, site = tmp_path / "src", tmp_path / "site"
    src.mkdir()
    (src / "setup.py").write_text(PLUGIN_SETUP)
    (src / "pl_toy_plugin.py").write_text(PLUGIN_MODULE)
    (src / "pl_broken_plugin.py").write_text("raise ImportError('this plugin is broken on purpose')\n")
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                    "--target", str(site), str(src)], check=True, capture_output=True)
    sys.path.insert(0, str(site))
    importlib.invalidate_caches()
    try:
        yield scratch_registry
    finally:
        sys.path.remove(str(site))
        for mod in ("pl_toy_plugin", "pl_broken_plugin"):
            sys.modules.pop(mod, None)
        registry.load_plugins(reload=True)


def test_entry_point_plugin_is_discovered_and_builds_from_config(installed_plugin):
    with pytest.warns(ConfigWarning, match="BrokenPluginLoss.*failed to load"):
        registry.load_plugins(reload=True)
    cls = pl.get_loss("ToyPluginLoss")
    assert cls.__module__ == "pl_toy_plugin"
    assert "ToyPluginLoss" in pl.list_losses("ToyPlugin*")
    combined = pl.build_loss([{"ToyPluginLoss": {"weight": 0.5, "scale": 3.0}}])
    out = combined({"features": paddle.ones([2, 2])}, paddle.zeros([2, 1], "int64"))
    assert float(out["loss"]) == pytest.approx(0.5 * 3.0 * 4)
    with pytest.raises(ConfigError, match="ToyPluginLoss.scal: .*Did you mean 'scale'"):
        pl.build_loss([{"ToyPluginLoss": {"weight": 1.0, "scal": 3.0}}])
