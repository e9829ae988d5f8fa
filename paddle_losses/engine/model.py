"""``RecModel``: backbone -> neck -> head, returning PaddleClas's output dict.

``Arch`` section::

    Arch:
      name: RecModel
      Backbone: {name: DigitsConvNet, width: 32}        # or ResNet50, MobileNetV1, ... (no pretrained download)
      BackboneStopLayer: {name: flatten}                 # accepted; backbones here always end flattened
      Neck: {name: FC, embedding_size: 128, class_num: 64}   # or BNNeck {num_features}
      Head: {name: ArcMargin, embedding_size: 64, class_num: 5, margin: 0.15, scale: 30}   # any registered head
      head_feature_from: neck                            # or backbone

``RecModel(x, label)`` returns ``{"backbone", "neck" (if a neck), "features", "logits" (if a head)}``;
the head receives ``label`` (margin heads need it while training). ``Arch.name`` may also be a backbone
name with ``class_num``: a plain classifier returning a logits Tensor, as PaddleClas's classifiers do.
"""
import warnings

import paddle
import paddle.nn as nn

from ..errors import ConfigError, ConfigWarning
from ..registry import registry


# ----------------------------------------------------------------------------------------- backbones
@registry("backbone").register
class DigitsConvNet(nn.Layer):
    """Two 3×3 conv blocks and a 2×2 max-pool for 8×8 single-channel digits.

    ``pool: flatten`` (default) keeps the 4×4 layout (output ``[B, 32·width]``): digit identity lives in
    where strokes are, and a global average (``pool: avg``, output ``[B, 2·width]``) throws that away.
    """

    def __init__(self, width=16, in_channels=1, pool="flatten", **unused):
        super().__init__()
        w = int(width)
        if pool not in ("flatten", "avg"):
            raise ConfigError(f"DigitsConvNet.pool must be flatten or avg, got {pool!r}")
        layers = [nn.Conv2D(in_channels, w, 3, padding=1), nn.BatchNorm2D(w), nn.ReLU(),
                  nn.Conv2D(w, 2 * w, 3, padding=1), nn.BatchNorm2D(2 * w), nn.ReLU(),
                  nn.MaxPool2D(2)]
        if pool == "avg":
            layers.append(nn.AdaptiveAvgPool2D(1))
        layers.append(nn.Flatten())
        self.features = nn.Sequential(*layers)
        self.out_dim = 2 * w * (16 if pool == "flatten" else 1)

    def forward(self, x):
        return self.features(x)


@registry("backbone").register
class DigitsMLP(nn.Layer):
    """Flatten -> Linear -> ReLU -> Linear, for 8×8 digits; output ``[B, out_dim]``."""

    def __init__(self, hidden=256, out_dim=128, in_dim=64, **unused):
        super().__init__()
        self.features = nn.Sequential(nn.Flatten(), nn.Linear(in_dim, hidden), nn.ReLU(),
                                      nn.Linear(hidden, out_dim), nn.ReLU())
        self.out_dim = out_dim

    def forward(self, x):
        return self.features(x)


class VisionBackbone(nn.Layer):
    """A ``paddle.vision.models`` network without its classifier, pooled and flattened to ``[B, C]``."""

    def __init__(self, factory, out_dim, **kwargs):
        super().__init__()
        self.net = factory(num_classes=0, **kwargs)
        self.flatten = nn.Flatten()
        self.out_dim = out_dim

    def forward(self, x):
        return self.flatten(self.net(x))


# name -> (paddle.vision.models constructor name, output width)
_VISION = {"ResNet18": ("resnet18", 512), "ResNet34": ("resnet34", 512), "ResNet50": ("resnet50", 2048),
           "ResNet101": ("resnet101", 2048), "MobileNetV1": ("MobileNetV1", 1024),
           "MobileNetV2": ("MobileNetV2", 1280), "MobileNetV3_small_x1_0": ("mobilenet_v3_small", 576),
           "MobileNetV3_large_x1_0": ("mobilenet_v3_large", 960)}


def _vision_backbone(name, factory_name, out_dim):
    def build(**ignored):
        from paddle.vision import models
        return VisionBackbone(getattr(models, factory_name), out_dim)

    build.__name__ = build.__qualname__ = name
    build.__doc__ = (f"paddle.vision's {factory_name} without its classifier (output width {out_dim}); built with "
                     f"its defaults, random weights.")
    build.ignores_params = True
    return build


for _name, (_factory, _width) in _VISION.items():
    registry("backbone").register(_vision_backbone(_name, _factory, _width))


def build_backbone(cfg, path="Arch.Backbone"):
    """The backbone named by ``cfg["name"]`` (see ``paddle-losses list --kind backbone``)."""
    if not isinstance(cfg, dict) or "name" not in cfg:
        raise ConfigError(f"{path} must be a mapping with a `name` (one of "
                          f"{', '.join(registry('backbone').names())})")
    params = {k: v for k, v in cfg.items() if k != "name"}
    if params.pop("pretrained", False):
        warnings.warn(f"{path}.pretrained: pretrained weights are not downloaded; the backbone starts from "
                      f"random weights. Load a local checkpoint with Global.pretrained_model instead.",
                      ConfigWarning, stacklevel=2)
    factory = registry("backbone").get(cfg["name"], f"{path}.name")
    if getattr(factory, "ignores_params", False):
        params.pop("class_num", None)
        if params:
            warnings.warn(f"{path}: parameters {sorted(params)} are ignored for {cfg['name']} (the paddle.vision "
                          f"model is built with its defaults)", ConfigWarning, stacklevel=2)
        return factory()
    return registry("backbone").build(cfg["name"], params, path)


# ----------------------------------------------------------------------------------------- necks
@registry("neck").register
class FC(nn.Layer):
    """Linear embedding ``embedding_size -> class_num`` (PaddleClas's ``FC`` gear used as a neck)."""

    def __init__(self, embedding_size: int, class_num: int, **unused):
        super().__init__()
        self.fc = nn.Linear(embedding_size, class_num,
                            weight_attr=paddle.ParamAttr(initializer=nn.initializer.XavierNormal()))

    def forward(self, x, label=None):
        return self.fc(x)


@registry("neck").register
class BNNeck(nn.Layer):
    """BatchNorm1D over the features with a frozen zero bias (the reid "BNNeck")."""

    def __init__(self, num_features: int, **unused):
        super().__init__()
        self.feat_bn = nn.BatchNorm1D(
            num_features, momentum=0.9, epsilon=1e-5,
            weight_attr=paddle.ParamAttr(initializer=nn.initializer.Constant(1.0)),
            bias_attr=paddle.ParamAttr(initializer=nn.initializer.Constant(0.0), trainable=False))
        self.flatten = nn.Flatten()

    def forward(self, x):
        return self.feat_bn(self.flatten(x))


def build_neck(cfg, path="Arch.Neck"):
    """The neck named by ``cfg["name"]`` (FC, BNNeck or a registered plugin), parameters validated."""
    if not isinstance(cfg, dict) or "name" not in cfg:
        raise ConfigError(f"{path} must be a mapping with a `name` (one of {', '.join(registry('neck').names())})"
                          f", got {cfg!r}")
    return registry("neck").build(cfg["name"], {k: v for k, v in cfg.items() if k != "name"}, path)


def build_head(cfg, path="Arch.Head"):
    """The head named by ``cfg["name"]`` (a registered head such as ArcMargin or FC), parameters validated."""
    if not isinstance(cfg, dict) or "name" not in cfg:
        raise ConfigError(f"{path} must be a mapping with a `name` (a registered head such as ArcMargin or FC)")
    return registry("head").build(cfg["name"], {k: v for k, v in cfg.items() if k != "name"}, path)


# ----------------------------------------------------------------------------------------- models
class RecModel(nn.Layer):
    """Backbone -> optional neck -> optional head (see the module docstring for the output dict)."""

    def __init__(self, Backbone, Neck=None, Head=None, BackboneStopLayer=None, head_feature_from="neck",
                 **unused):
        super().__init__()
        if BackboneStopLayer is not None and (BackboneStopLayer or {}).get("name") not in ("flatten", None):
            warnings.warn(f"Arch.BackboneStopLayer {BackboneStopLayer!r} is ignored: backbones here always end "
                          f"at the pooled, flattened features", ConfigWarning, stacklevel=2)
        if head_feature_from not in ("neck", "backbone"):
            raise ConfigError(f"Arch.head_feature_from must be neck or backbone, got {head_feature_from!r}")
        self.backbone = build_backbone(Backbone)
        self.neck = build_neck(Neck) if Neck else None
        self.head = build_head(Head) if Head else None
        self.head_feature_from = head_feature_from

    def forward(self, x, label=None):
        out = {}
        x = self.backbone(x)
        out["backbone"] = x
        if self.neck is not None:
            x = self.neck(x)
            out["neck"] = x
        out["features"] = x
        if self.head is not None:
            feat = out["features"] if self.head_feature_from == "neck" else out["backbone"]
            out["logits"] = self.head(feat, label)
        return out


class Classifier(nn.Layer):
    """A backbone with a linear classifier; returns the logits Tensor (PaddleClas classifiers' contract)."""

    def __init__(self, name, class_num, **params):
        super().__init__()
        self.backbone = build_backbone({"name": name, **params}, "Arch")
        self.fc = nn.Linear(self.backbone.out_dim, class_num)

    def forward(self, x, label=None):
        return self.fc(self.backbone(x))


def build_model(arch):
    """Build ``Arch`` into a RecModel (``name: RecModel``) or a plain classifier (backbone name)."""
    if not isinstance(arch, dict) or "name" not in arch:
        raise ConfigError("Arch must be a mapping with a `name` (RecModel or a backbone name)")
    params = {k: v for k, v in arch.items() if k not in ("name", "use_sync_bn", "is_rec", "class_num_")}
    if arch["name"] == "RecModel":
        if "Backbone" not in params:
            raise ConfigError("Arch.Backbone is missing (e.g. {name: DigitsConvNet})")
        return RecModel(**params)
    if "class_num" not in params:
        raise ConfigError(f"Arch.class_num is missing for the classifier {arch['name']!r}")
    return Classifier(arch["name"], **params)


def is_rec(arch):
    """PaddleClas's rule: the model gets labels when Arch has a Head or ``is_rec: True``."""
    return bool(arch.get("Head")) or bool(arch.get("is_rec", False))
