"""RecModel's output dict, necks, heads from the registry, classifiers and Arch errors."""
import paddle
import pytest

from paddle_losses.engine.model import build_model, is_rec
from paddle_losses.errors import ConfigError


def test_rec_model_outputs_and_margin_head_modes():
    arch = {"name": "RecModel", "Backbone": {"name": "DigitsConvNet", "width": 4},
            "Neck": {"name": "BNNeck", "num_features": 128},
            "Head": {"name": "ArcMargin", "embedding_size": 128, "class_num": 3, "margin": 0.2, "scale": 30.0}}
    model = build_model(arch)
    assert is_rec(arch)
    x, y = paddle.rand([4, 1, 8, 8]), paddle.to_tensor([[0], [1], [2], [0]], dtype="int64")
    out = model(x, y)
    assert list(out) == ["backbone", "neck", "features", "logits"]
    assert out["backbone"].shape == [4, 128] and out["logits"].shape == [4, 3]
    assert float(paddle.abs(out["logits"]).max()) > 1.0  # training: scaled margin logits
    model.eval()
    cos = model(x, y)["logits"]
    assert float(paddle.abs(cos).max()) <= 1.0 + 1e-6  # eval: plain cosine
    bias = model.neck.feat_bn.bias
    assert bias.stop_gradient  # BNNeck's bias is frozen


def test_head_can_read_the_backbone_and_model_without_neck_or_head():
    model = build_model({"name": "RecModel", "Backbone": {"name": "DigitsMLP", "hidden": 8, "out_dim": 6},
                         "Head": {"name": "FC", "embedding_size": 6, "class_num": 2},
                         "head_feature_from": "backbone"})
    out = model(paddle.rand([2, 1, 8, 8]))
    assert "neck" not in out and out["features"] is out["backbone"] and out["logits"].shape == [2, 2]
    bare = build_model({"name": "RecModel", "Backbone": {"name": "DigitsMLP"}})
    assert list(bare(paddle.rand([2, 1, 8, 8]))) == ["backbone", "features"]
    assert not is_rec({"name": "RecModel", "Backbone": {"name": "DigitsMLP"}})


def test_plain_classifier_returns_a_logits_tensor():
    model = build_model({"name": "MobileNetV1", "class_num": 7})
    logits = model(paddle.rand([1, 3, 32, 32]))
    assert isinstance(logits, paddle.Tensor) and logits.shape == [1, 7]


def test_arch_mistakes_are_config_errors_and_pretrained_is_not_downloaded():
    with pytest.raises(ConfigError, match="Arch.Neck.name: neck 'VehicleNeck' is not registered"):
        build_model({"name": "RecModel", "Backbone": {"name": "DigitsMLP"}, "Neck": {"name": "VehicleNeck"}})
    with pytest.raises(ConfigError, match="not registered"):
        build_model({"name": "RecModel", "Backbone": {"name": "DigitsMLP"}, "Head": {"name": "ArcFace"}})
    with pytest.raises(ConfigError, match="class_num is missing"):
        build_model({"name": "ResNet18"})
    with pytest.warns(Warning, match="not downloaded"):
        build_model({"name": "RecModel", "Backbone": {"name": "ResNet18", "pretrained": True}})


def test_neck_parameter_typo_names_the_config_path_and_the_parameter():
    with pytest.raises(ConfigError, match=r"Arch\.Neck\.num_featurs: BNNeck has no parameter 'num_featurs'\. "
                                          r"Did you mean 'num_features'\?"):
        build_model({"name": "RecModel", "Backbone": {"name": "DigitsMLP"},
                     "Neck": {"name": "BNNeck", "num_featurs": 128}})


def test_backbone_parameter_typo_is_an_error_and_unknown_extras_are_accepted():
    with pytest.raises(ConfigError, match=r"Arch\.Backbone\.widht: .*Did you mean 'width'"):
        build_model({"name": "RecModel", "Backbone": {"name": "DigitsConvNet", "widht": 8}})
    model = build_model({"name": "RecModel", "Backbone": {"name": "DigitsConvNet", "width": 4, "use_ssld": True}})
    assert model.backbone.out_dim == 2 * 4 * 16
