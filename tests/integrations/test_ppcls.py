"""Fork integration against a stand-in PaddleClas package (tests/integrations/fake_ppcls: our own minimal
modules with PaddleClas's import structure: ppcls.loss resolves loss names in its namespace, the Engine,
MetaBIN's trainer and the static program each import build_loss themselves, ppcls.arch.gears resolves
head names in its namespace)."""
import importlib
import os
import shutil
import sys

import paddle
import pytest

import paddle_losses as pl
from paddle_losses.integrations import ppcls as integration

FAKE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fake_ppcls")


def _forget_ppcls():
    for mod in [m for m in sys.modules if m == "ppcls" or m.startswith("ppcls.")]:
        del sys.modules[mod]


@pytest.fixture
def fake_ppcls_path(scratch_registry):
    """The stand-in package on sys.path, nothing of it imported yet."""
    def use(path=FAKE):
        sys.path.insert(0, str(path))
        used.append(str(path))
    used = []
    _forget_ppcls()
    try:
        yield use
    finally:
        for path in used:
            sys.path.remove(path)
        _forget_ppcls()


@pytest.fixture
def fake_ppcls(fake_ppcls_path):
    fake_ppcls_path()
    return importlib.import_module("ppcls.loss"), importlib.import_module("ppcls.engine.engine")


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
    assert engine_mod.build_loss is integration.ppcls_build_loss
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


def test_patch_build_loss_default_target_is_every_ppcls_module(fake_ppcls, toy_losses):
    loss_mod, engine_mod = fake_ppcls
    forks = loss_mod.build_loss
    assert integration.patch_build_loss() is forks
    assert engine_mod.build_loss is integration.ppcls_build_loss
    assert loss_mod.build_loss is integration.ppcls_build_loss
    assert integration.patch_build_loss() is forks  # idempotent: still hands back PaddleClas's builder


def test_star_import_module_exports_registered_classes(toy_losses):
    import paddle_losses.ppcls_compat as compat
    compat = importlib.reload(compat)
    assert compat.ToyScaleLoss is toy_losses[0]
    assert "ToyScaleLoss" in compat.__all__


METABIN = {"Loss": {"Basic": [{"CELoss": {"weight": 1.0}}],
                    "MetaTrain": [{"CELoss": {"weight": 1.0}}, {"TripletLossV2": {"weight": 1.0, "margin": 0.3}}],
                    "MetaTest": [{"TripletLossV2": {"weight": 1.0}}]}}
ARCH = {"Head": {"name": "ArcMargin", "embedding_size": 8, "class_num": 4, "margin": 0.2, "scale": 30.0}}
TRAIN_PATHS = ("ppcls.engine.engine", "ppcls.engine.train.train_metabin", "ppcls.static.program")


def assert_every_path_builds_ours(modules):
    engine = modules["ppcls.engine.engine"].Engine({"Loss": {"Train": [{"CELoss": {"weight": 1.0}}],
                                                             "Eval": [{"CELoss": {"weight": 1.0}}]}})
    assert isinstance(engine.train_loss_func, pl.CombinedLoss)
    assert isinstance(engine.eval_loss_func, pl.CombinedLoss)
    metabin = modules["ppcls.engine.train.train_metabin"].build_metabin_losses(METABIN)
    assert {k: [type(m) for m in v.loss_func] for k, v in metabin.items()} == {
        "Basic": [pl.get_loss("CELoss")], "MetaTrain": [pl.get_loss("CELoss"), pl.get_loss("TripletLossV2")],
        "MetaTest": [pl.get_loss("TripletLossV2")]}
    static = modules["ppcls.static.program"].create_loss({"Loss": {"Train": [{"CELoss": {"weight": 1.0}}]}})
    assert isinstance(static, pl.CombinedLoss)
    head = modules["ppcls.arch"].RecModel({"Head": dict(ARCH["Head"])}).head
    assert type(head) is pl.get_head("ArcMargin")


def test_install_after_every_ppcls_module_was_imported_hooks_every_training_path(fake_ppcls_path):
    fake_ppcls_path()
    modules = {m: importlib.import_module(m) for m in TRAIN_PATHS + ("ppcls.arch",)}
    report = integration.install()
    assert report["build_loss"] == sorted(TRAIN_PATHS + ("ppcls.loss",))
    assert "TripletLossV2" in report["losses"] and "CELoss" in report["losses"]
    assert report["heads"] == pl.list_heads()
    assert_every_path_builds_ours(modules)


def test_install_before_the_training_modules_are_imported_hooks_them_too(fake_ppcls_path):
    fake_ppcls_path()
    integration.install()  # imports only ppcls.loss and ppcls.arch.gears
    assert not any(m in sys.modules for m in TRAIN_PATHS)
    modules = {m: importlib.import_module(m) for m in TRAIN_PATHS + ("ppcls.arch",)}
    assert_every_path_builds_ours(modules)


def test_a_mistake_in_an_eval_or_metabin_list_is_labelled_with_that_list(fake_ppcls_path):
    fake_ppcls_path()
    integration.install()
    engine_mod = importlib.import_module("ppcls.engine.engine")
    bad = {"Loss": {"Train": [{"CELoss": {"weight": 1.0}}], "Eval": [{"CELoss": {"weight": 1.0, "epsilom": 0.1}}]}}
    with pytest.raises(pl.ConfigError, match=r"^Loss\.Eval\[0\]\.CELoss\.epsilom"):
        engine_mod.Engine(bad)
    metabin = importlib.import_module("ppcls.engine.train.train_metabin")
    bad = {"Loss": dict(METABIN["Loss"], MetaTest=[{"TripletLossV2": {"weight": 1.0, "margn": 0.3}}])}
    with pytest.raises(pl.ConfigError, match=r"^Loss\.MetaTest\[0\]\.TripletLossV2\.margn"):
        metabin.build_metabin_losses(bad)


def test_a_forks_own_loss_is_still_built_by_the_forks_builder_after_install(fake_ppcls_path):
    fake_ppcls_path()
    loss_mod = importlib.import_module("ppcls.loss")

    class ForkOnlyLoss(paddle.nn.Layer):
        def forward(self, input, target):
            return {"ForkOnlyLoss": input["features"].sum()}

    loss_mod.ForkOnlyLoss = ForkOnlyLoss
    integration.install()
    engine = importlib.import_module("ppcls.engine.engine").Engine(
        {"Loss": {"Train": [{"ForkOnlyLoss": {"weight": 1.0}}, {"CELoss": {"weight": 1.0}}]}})
    assert [type(m) for m in engine.train_loss_func.loss_func] == [ForkOnlyLoss, pl.get_loss("CELoss")]


def star_imported_copy(tmp_path, at_top):
    copy = tmp_path / "fork"
    shutil.copytree(FAKE, copy)
    init = copy / "ppcls" / "loss" / "__init__.py"
    text = init.read_text()
    line = "from paddle_losses.ppcls_compat import *  # noqa: F401,F403\n"
    if at_top:
        head, sep, rest = text.partition("import copy\n")
        init.write_text(head + line + sep + rest)
    else:
        init.write_text(text + "\n" + line)
    return copy


def test_star_import_as_the_last_line_of_ppcls_loss_resolves_our_classes(fake_ppcls_path, tmp_path):
    fake_ppcls_path(star_imported_copy(tmp_path, at_top=False))
    loss_mod = importlib.import_module("ppcls.loss")
    assert loss_mod.CELoss is pl.get_loss("CELoss")
    assert type(loss_mod.build_loss([{"TripletLossV2": {"weight": 1.0}}]).loss_func[0]) is pl.get_loss("TripletLossV2")


def test_star_import_at_the_top_is_overridden_by_the_forks_own_definitions(fake_ppcls_path, tmp_path):
    # why the README says "last line": names the fork defines or imports after the star import win
    fake_ppcls_path(star_imported_copy(tmp_path, at_top=True))
    loss_mod = importlib.import_module("ppcls.loss")
    assert loss_mod.CELoss is not pl.get_loss("CELoss")
    assert loss_mod.TripletLossV2 is pl.get_loss("TripletLossV2")  # a name the fork does not define
