"""Plain linear classification head, PaddleClas's ``FC`` gear."""
from typing import Optional, Union

import paddle
import paddle.nn as nn

from ..errors import InputError
from ..inputs import check_features, check_labels
from ..registry import register_head
from . import class_parallel as cp


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

        class_parallel: hold only this rank's slice of the classes (:mod:`paddle_losses.heads.class_parallel`);
            the embeddings and labels of every rank are gathered and the logits are ``[N_global, C_r]``.

    Parameters ``fc.weight [D, C]`` and ``fc.bias [C]`` (the state-dict names of PaddleClas checkpoints;
    ``[D, C_r]``/``[C_r]`` when class-parallel). ``forward(input, label=None)``: the label is ignored
    (gathered with the embeddings when class-parallel). Returns logits ``[N, C]``.
    """

    input_keys = ("features",)
    output_keys = ("logits",)

    def __init__(self, embedding_size: int, class_num: int, weight_attr: Optional[dict] = None,
                 bias_attr: Optional[Union[bool, dict]] = None, class_parallel: bool = False):
        super().__init__()
        if embedding_size < 1 or class_num < 1:
            raise ValueError(f"FC: embedding_size and class_num must be positive, got {embedding_size} and "
                             f"{class_num}")
        self.embedding_size = embedding_size
        self.class_num = class_num
        width = cp.setup(self, class_num, class_parallel)
        weight = param_attr_from_config(weight_attr, "weight_attr")
        if weight is None:
            weight = paddle.ParamAttr(initializer=cp.xavier_normal_shard(embedding_size, class_num, width)
                                      if self.class_parallel else nn.initializer.XavierNormal())
        self.fc = nn.Linear(embedding_size, width, weight_attr=weight,
                            bias_attr=param_attr_from_config(bias_attr, "bias_attr"))
        if self.class_parallel:
            cp.keep_out_of_data_parallel(self.fc.weight, self.fc.bias)

    def forward(self, input, label=None):
        x = check_features(input, "FC", what="embeddings")
        if x.shape[1] != self.embedding_size:
            raise InputError(f"FC: embeddings have size {x.shape[1]} but the head was built with "
                             f"embedding_size={self.embedding_size}")
        if not self.class_parallel:
            return self.fc(x)
        x, label = cp.gather_inputs(self, x, label)
        ids = check_labels(label, x.shape[0], "FC").unsqueeze(1) if isinstance(label, paddle.Tensor) else None
        return cp.mark(self, self.fc(x), ids)
