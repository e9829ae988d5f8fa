"""Config validation before any tensor exists: each bad config names its path and the fix."""
from typing import List, Literal, Optional

import paddle
import pytest

import paddle_losses as pl
from paddle_losses.errors import ConfigError
from paddle_losses.validation import describe_type, type_matches, validate_config, validate_loss_list


@pytest.fixture
def losses(scratch_registry):
    @pl.register_loss
    class ToyMarginLoss(paddle.nn.Layer):
        """A stand-in with typed parameters."""
        input_keys = ("input['features']",)
        output_keys = ("ToyMarginLoss",)

        def __init__(self, margin: float = 0.5, reduction: Literal["mean", "sum", "none"] = "mean",
                     feature_from: str = "features", normalize_feature: bool = True,
                     topk: Optional[int] = None, names: List[str] = ()):
            super().__init__()
            self.margin = margin

        def forward(self, input, target):
            return {"ToyMarginLoss": input["features"].sum() * self.margin}

    @pl.register_loss
    class ToyRequiredLoss(paddle.nn.Layer):
        def __init__(self, num_classes: int, feat_dim: int = 2):
            super().__init__()

        def forward(self, input, target):
            return {"ToyRequiredLoss": input["features"].mean()}

    return scratch_registry


def err(config, path="Loss.Train"):
    with pytest.raises(ConfigError) as info:
        validate_loss_list(config, path)
    return str(info.value)


def test_valid_list_passes(losses):
    out = validate_loss_list([{"ToyMarginLoss": {"weight": 1.0, "margin": 0.3}},
                              {"ToyRequiredLoss": {"weight": 2, "num_classes": 3}}])
    assert [(n, w) for n, w, _, _ in out] == [("ToyMarginLoss", 1.0), ("ToyRequiredLoss", 2.0)]


def test_misspelled_parameter_names_path_suggestion_and_valid_parameters(losses):
    msg = err([{"ToyMarginLoss": {"weight": 1.0}}, {"ToyMarginLoss": {"weight": 1.0, "margn": 0.3}}])
    assert msg.startswith("Loss.Train[1].ToyMarginLoss.margn:")
    assert "Did you mean 'margin'" in msg
    assert "Valid parameters: margin, reduction, feature_from, normalize_feature, topk, names" in msg


def test_wrong_parameter_type_names_expected_type_and_value(losses):
    msg = err([{"ToyMarginLoss": {"weight": 1.0, "margin": "0.3x"}}])
    assert msg.startswith("Loss.Train[0].ToyMarginLoss.margin: expected float, got str '0.3x'")
    msg = err([{"ToyMarginLoss": {"weight": 1.0, "reduction": "avg"}}])
    assert "expected 'mean' | 'sum' | 'none', got str 'avg'" in msg
    msg = err([{"ToyMarginLoss": {"weight": 1.0, "normalize_feature": "false"}}])
    assert "ToyMarginLoss.normalize_feature: expected bool" in msg


def test_missing_required_parameter_is_named(losses):
    msg = err([{"ToyRequiredLoss": {"weight": 1.0}}])
    assert msg.startswith("Loss.Train[0].ToyRequiredLoss: ToyRequiredLoss needs the parameter(s) num_classes")
    assert "ToyRequiredLoss(num_classes, feat_dim=2)" in msg


def test_missing_weight(losses):
    msg = err([{"ToyMarginLoss": {"margin": 0.3}}])
    assert msg.startswith("Loss.Train[0].ToyMarginLoss.weight is missing; add `weight: 1.0`")


def test_string_weight(losses):
    msg = err([{"ToyMarginLoss": {"weight": "5e-4x"}}])
    assert msg.startswith("Loss.Train[0].ToyMarginLoss.weight must be a number, got str '5e-4x'")


def test_entry_with_nothing_under_it(losses):
    # PaddleClas: TypeError: argument of type 'NoneType' is not iterable
    msg = err([{"ToyMarginLoss": None}])
    assert msg.startswith("Loss.Train[0].ToyMarginLoss has no parameters; every loss needs at least a weight")


def test_entry_with_two_keys(losses):
    msg = err([{"ToyMarginLoss": {"weight": 1.0}, "ToyRequiredLoss": {"weight": 1.0}}])
    assert msg.startswith("Loss.Train[0]: each loss entry must be a mapping with exactly one key")
    assert "Start each loss with its own `- `" in msg


def test_non_list_loss_train(losses):
    msg = err({"ToyMarginLoss": {"weight": 1.0}})
    assert msg.startswith("Loss.Train must be a list of loss entries")


def test_empty_list(losses):
    assert "empty list" in err([])


def test_unknown_loss_lists_close_matches(losses):
    msg = err([{"ToyMarginLos": {"weight": 1.0}}])
    assert msg.startswith("Loss.Train[0].ToyMarginLos: loss 'ToyMarginLos' is not registered.")
    assert "Did you mean 'ToyMarginLoss'" in msg


def test_params_not_a_mapping(losses):
    assert "the parameters must be a mapping" in err([{"ToyMarginLoss": [1, 2]}])


def test_validate_config_checks_train_and_eval_with_their_paths(losses):
    cfg = pl.config.parse_config("Loss:\n  Train:\n    - ToyMarginLoss: {weight: 1.0}\n"
                                 "  Eval:\n    - ToyMarginLoss: {weight: 1.0, margn: 1}\n")
    with pytest.raises(ConfigError, match=r"^Loss.Eval\[0\].ToyMarginLoss.margn"):
        validate_config(cfg)


def test_load_config_validates_loss_sections(losses, tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("Loss:\n  Train:\n    - ToyMarginLoss:\n        weight: 1.0\n        margin: 0.2\n")
    assert pl.load_config(str(p)).Loss.Train[0].ToyMarginLoss.margin == 0.2
    with pytest.raises(ConfigError, match=r"Loss.Train\[0\].ToyMarginLoss.margn"):
        pl.load_config(str(p), overrides=["Loss.Train.0.ToyMarginLoss.margn=0.3"])


def test_build_loss_raises_config_errors_before_any_tensor(losses):
    with pytest.raises(ConfigError, match=r"Loss.Train\[0\].ToyMarginLoss.weight is missing"):
        pl.build_loss([{"ToyMarginLoss": {}}])


def test_constructor_value_errors_are_prefixed_with_the_path(scratch_registry):
    @pl.register_loss
    class ToyCheckedLoss(paddle.nn.Layer):
        def __init__(self, margin: float = 0.5):
            super().__init__()
            if margin < 0:
                raise ValueError(f"margin must be >= 0, got {margin}")

    with pytest.raises(ConfigError, match=r"^Loss.Train\[0\].ToyCheckedLoss: margin must be >= 0, got -1"):
        pl.build_loss([{"ToyCheckedLoss": {"weight": 1.0, "margin": -1}}])


@pytest.mark.parametrize("value, tp, ok", [
    (1, float, True), (1.5, float, True), (True, float, False), ("1", float, False),
    (3, int, True), (3.0, int, False), (False, int, False), (True, bool, True), (1, bool, False),
    (None, Optional[float], True), (0.1, Optional[float], True), ("x", Optional[float], False),
    ("mean", Literal["mean", "sum"], True), ("avg", Literal["mean", "sum"], False),
    (["a", "b"], List[str], True), (["a", 1], List[str], False), ((1, 2), List[int], True),
])
def test_type_matching_rules(value, tp, ok):
    assert type_matches(value, tp) is ok


def test_describe_type_is_readable():
    assert describe_type(Optional[float]) == "float | null"
    assert describe_type(Literal["mean", "sum"]) == "'mean' | 'sum'"
    assert describe_type(List[str]) == "list of str"


def test_gather_is_an_entry_flag_beside_weight_and_must_be_boolean(losses):
    out = validate_loss_list([{"ToyMarginLoss": {"weight": 1.0, "gather": True, "margin": 0.3}}])
    assert out[0].gather is True and out[0][2] == {"margin": 0.3}
    assert validate_loss_list([{"ToyMarginLoss": {"weight": 1.0}}])[0].gather is False
    msg = err([{"ToyMarginLoss": {"weight": 1.0, "gather": "yes"}}])
    assert msg.startswith("Loss.Train[0].ToyMarginLoss.gather must be true or false")
