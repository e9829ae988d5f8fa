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
          "BrokenPluginLoss = pl_broken_plugin:BrokenPluginLoss"],
                    "paddle_losses.miners": ["ToyPluginMiner = pl_toy_plugin:ToyPluginMiner"],
                    "paddle_losses.lrs": ["ToyPluginLR = pl_toy_plugin:toy_plugin_lr"]})
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


from paddle_losses.functional.mining import BatchHardMiner


class ToyPluginMiner(BatchHardMiner):
    def __init__(self, strength: float = 1.0):
        super().__init__()
        self.strength = strength


def toy_plugin_lr(schedule, floor: float = 0.0):
    from paddle.optimizer.lr import CosineAnnealingDecay
    return CosineAnnealingDecay(schedule.learning_rate, schedule.decay_steps, eta_min=floor)
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


def test_entry_point_groups_exist_for_every_kind_and_load_miners_and_schedules(installed_plugin):
    from paddle_losses.engine.optim import build_lr
    from paddle_losses.functional.mining import build_miner

    with pytest.warns(ConfigWarning):
        registry.load_plugins(reload=True)
    assert registry.registry("miner").entry_point_group == "paddle_losses.miners"
    assert registry.registry("lr").entry_point_group == "paddle_losses.lrs"
    assert type(build_miner({"name": "ToyPluginMiner", "strength": 2.0})).__name__ == "ToyPluginMiner"
    with pytest.raises(ConfigError, match=r"miner\.strenght: .*Did you mean 'strength'"):
        build_miner({"name": "ToyPluginMiner", "strenght": 2.0})
    sched = build_lr({"name": "ToyPluginLR", "learning_rate": 0.1, "floor": 0.01}, 2, 3)
    assert sched.last_lr == pytest.approx(0.1)


KINDS = ("loss", "head", "miner", "distance", "reducer", "neck", "dataset", "sampler", "metric", "transform",
         "optimizer", "lr")


def test_kinds_cover_every_config_selectable_part_and_each_has_builtins():
    assert set(KINDS) <= set(registry.kinds())
    for kind in registry.kinds():
        assert registry.registry(kind).names(), kind
        assert registry.registry(kind).entry_point_group.startswith("paddle_losses.")
    with pytest.raises(ConfigError, match="unknown kind of part 'necks'. Did you mean 'neck'"):
        registry.registry("necks")


@pytest.mark.parametrize("kind", registry.kinds())
def test_every_kind_suggests_close_names_for_a_typo(kind):
    reg = registry.registry(kind)
    name = reg.names()[0]
    typo = name[:-1] + ("x" if name[-1] != "x" else "y")
    with pytest.raises(ConfigError) as info:
        reg.get(typo, f"Some.{kind}.name")
    text = str(info.value)
    assert text.startswith(f"Some.{kind}.name: {kind} {typo!r} is not registered.")
    assert f"Did you mean {name!r}" in text


@pytest.mark.parametrize("kind", registry.kinds())
def test_every_kind_refuses_a_second_object_under_a_taken_name(kind, scratch_registry):
    reg = registry.registry(kind)
    name = reg.names()[0]
    impostor = type(name, (paddle.nn.Layer,), {})
    with pytest.raises(ValueError, match="already registered"):
        reg.register(impostor)
    reg.register(reg.get(name))  # the same object again is a no-op
    assert reg.get(name) is not impostor


def test_registering_a_new_part_makes_it_buildable_with_validation(scratch_registry):
    @registry.registry("neck").register
    class ToyNeck(paddle.nn.Layer):
        def __init__(self, width: int = 4):
            super().__init__()
            self.width = width

    from paddle_losses.engine.model import build_neck
    assert build_neck({"name": "ToyNeck", "width": 8}).width == 8
    with pytest.raises(ConfigError, match=r"Arch\.Neck\.width: expected int, got str"):
        build_neck({"name": "ToyNeck", "width": "wide"})


@pytest.mark.parametrize("build,match", [
    (lambda: __import__("paddle_losses.engine.samplers", fromlist=["x"]).build_sampler(
        list(range(8)), {"name": "PKSamplr", "batch_size": 4}, "DataLoader.Train.sampler"),
     r"DataLoader\.Train\.sampler\.name: sampler 'PKSamplr' is not registered\. Did you mean 'PKSampler'"),
    (lambda: __import__("paddle_losses.engine.samplers", fromlist=["x"]).build_sampler(
        list(range(8)), {"name": "PKSampler", "batch_size": 4, "sample_per_idd": 2}, "DataLoader.Train.sampler"),
     r"DataLoader\.Train\.sampler\.sample_per_idd: .*Did you mean 'sample_per_id'"),
    (lambda: __import__("paddle_losses.engine.metrics", fromlist=["x"]).build_retrieval_metrics(
        [{"Recallk": {"topk": [1]}}, {"mAp": {}}]),
     r"Metric\.Eval\[1\]\.mAp: metric 'mAp' is not registered\. Did you mean 'mAP'"),
    (lambda: __import__("paddle_losses.engine.transforms", fromlist=["x"]).build_transforms(
        [{"ResizeImage": {"sise": 8}}]),
     r"transform_ops\[0\]\.ResizeImage\.sise: .*Did you mean 'size'"),
    (lambda: __import__("paddle_losses.engine.data", fromlist=["x"]).build_dataset(
        {"name": "DigitsDataset", "mdoe": "train"}, "DataLoader.Train.dataset"),
     r"DataLoader\.Train\.dataset\.mdoe: .*Did you mean 'mode'"),
    (lambda: __import__("paddle_losses.functional.distances", fromlist=["x"]).build_distance(
        {"name": "LpDistance", "powr": 2}, path="miner.distance"),
     r"miner\.distance\.powr: .*Did you mean 'power'"),
    (lambda: __import__("paddle_losses.functional.reduction", fromlist=["x"]).build_reducer("MeanReduce"),
     r"reducer\.name: reducer 'MeanReduce' is not registered\. Did you mean 'MeanReducer'"),
])
def test_config_built_parts_get_the_loss_style_errors(build, match):
    with pytest.raises(ConfigError, match=match):
        build()


def test_input_keys_are_data_naming_keys_and_constructor_parameters():
    from paddle_losses.validation import constructor_params

    for kind in ("loss", "head"):
        for name in registry.registry(kind).names():
            cls = registry.registry(kind).get(name)
            keys = getattr(cls, "input_keys", ())
            assert isinstance(keys, tuple) and all(isinstance(k, str) and k.isidentifier() for k in keys), name
            params, _ = constructor_params(cls)
            for p in getattr(cls, "input_key_params", ()):
                assert p in params, (name, p)
            assert all(isinstance(k, str) and k.isidentifier() for k in getattr(cls, "target_keys", ())), name
