"""Plain linear classification head, PaddleClas's ``FC`` gear."""
from typing import Optional, Union

import paddle
import paddle.nn as nn

from ..errors import InputError
from ..inputs import check_features
from ..registry import register_head


def param_attr_from_config(config, what):
    """A ``paddle.ParamAttr`` (or None / False) from a YAML ``weight_attr``/``bias_attr`` entry.

    Accepted: None (Paddle's default), a bool (``False`` drops a bias), or a mapping with any of
    ``initializer: {name: <paddle.nn.initializer class>, **kwargs}``, ``learning_rate``, ``trainable``,
    ``name``.
    """
    if config is None or isinstance(config, bool):
        return config
    if not isinstance(config, dict):
        raise ValueError(f"FC: {what} must be null, a bool or a mapping, got {type(config).__name__} {config!r}")
    unknown = set(config) - {"initializer", "learning_rate", "trainable", "name"}
    if unknown:
        raise ValueError(f"FC: {what} has unknown keys {sorted(unknown)}; allowed: initializer, learning_rate, "
                         f"trainable, name")
    kwargs = {k: config[k] for k in ("learning_rate", "trainable", "name") if k in config}
    init = config.get("initializer")
    if init is not None:
        if not isinstance(init, dict) or "name" not in init:
            raise ValueError(f"FC: {what}.initializer must be a mapping with a name (e.g. Normal), got {init!r}")
        init_kwargs = {k: v for k, v in init.items() if k != "name"}
        cls = getattr(nn.initializer, str(init["name"]), None)
        if not isinstance(cls, type):
            raise ValueError(f"FC: {what}.initializer.name {init['name']!r} is not a paddle.nn.initializer class")
        kwargs["initializer"] = cls(**init_kwargs)
    return paddle.ParamAttr(**kwargs)


@register_head
class FC(nn.Layer):
    """Linear head ``logits = x·W + b`` (PaddleClas ``FC(embedding_size, class_num)``).

    Args:
        embedding_size: input size D. class_num: number of classes C.
        weight_attr / bias_attr: optional ParamAttr configs (see :func:`param_attr_from_config`); by default
            W is XavierNormal and b starts at 0; ``bias_attr: false`` removes the bias.

    Parameters ``fc.weight [D, C]`` and ``fc.bias [C]`` (the state-dict names of PaddleClas checkpoints).
    ``forward(input, label=None)``: the label is ignored. Returns logits ``[N, C]``.
    """

    input_keys = ("features",)
    output_keys = ("logits",)

    def __init__(self, embedding_size: int, class_num: int, weight_attr: Optional[dict] = None,
                 bias_attr: Optional[Union[bool, dict]] = None):
        super().__init__()
        if embedding_size < 1 or class_num < 1:
            raise ValueError(f"FC: embedding_size and class_num must be positive, got {embedding_size} and "
                             f"{class_num}")
        self.embedding_size = embedding_size
        self.class_num = class_num
        weight = param_attr_from_config(weight_attr, "weight_attr")
        if weight is None:
            weight = paddle.ParamAttr(initializer=nn.initializer.XavierNormal())
        self.fc = nn.Linear(embedding_size, class_num, weight_attr=weight,
                            bias_attr=param_attr_from_config(bias_attr, "bias_attr"))

    def forward(self, input, label=None):
        x = check_features(input, "FC", what="embeddings")
        if x.shape[1] != self.embedding_size:
            raise InputError(f"FC: embeddings have size {x.shape[1]} but the head was built with "
                             f"embedding_size={self.embedding_size}")
        return self.fc(x)
