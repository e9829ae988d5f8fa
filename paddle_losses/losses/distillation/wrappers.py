"""The twelve Distillation* wrappers of PaddleClas: run a base loss on model outputs picked by name.

All of them read ``input = {model_name: output}`` (a DistillationModel's output) and the labels, pick
outputs through :mod:`.selection` and return one entry per pair (or model), in list order, under
PaddleClas's key pattern. The base losses are composed, not inherited; CELoss and MultiLabelLoss come from
the registry. None of the wrappers except DistillationPairLoss owns parameters, so state_dict keys match
PaddleClas (which subclasses the base losses).
"""
import warnings
from typing import List, Literal, Optional, Union

import paddle.nn as nn
import paddle.nn.functional as F

from ...errors import ConfigError, ConfigWarning
from ...registry import get_loss, register_loss
from ...validation import check_params
from .feature import DistanceLoss, RkdDistance, RKdAngle
from .logit import DISTLoss, DKDLoss, DMLLoss, KLDivLoss, SKDLoss, WSLLoss
from .selection import (ModelDistillation, PairDistillation, check_model_pairs, model_output,
                        named_results, reported_as)

_ACTIVATIONS = {None: None, "softmax": lambda x: F.softmax(x, axis=-1), "sigmoid": F.sigmoid}


@register_loss
class DistillationCELoss(PairDistillation):
    """Cross entropy of the first model of each pair against the second model's output (PaddleClas).

    Math: ``CELoss(out_a, out_b)`` with ``out_b`` as the label. Without ``epsilon`` a float ``[N, C]`` label is
    softmaxed: ``−mean_i Σ_c softmax(out_b)·log_softmax(out_a)``, and ``out_b`` gets no gradient. With
    ``epsilon`` the **raw** teacher logits are label-smoothed, ``(1 − ε)·out_b + ε/C`` (not softmaxed), and
    ``out_b`` does get a gradient. Both kept from PaddleClas.

    Args:
        model_name_pairs: ``[[student, teacher], ...]``.
        epsilon: CELoss's label smoothing.
        key: entry of each model output to use (None: the output itself; a student dict gives ``"logits"``).
        name: unused (PaddleClas accepts it too).

    Reads ``input[a][key]``, ``input[b][key]``. Returns ``{"CELoss_<a>_<b>": loss, ...}``.
    """

    input_keys = ()
    input_key_params = ("model_name_pairs", "key")
    output_keys = ("CELoss_<a>_<b>",)
    key_template = "{inner}_{a}_{b}"
    student_accepts_dict = True

    def __init__(self, model_name_pairs: List[List[str]] = [], epsilon: Optional[float] = None,  # noqa: B006
                 key: Optional[str] = None, name: str = "loss_ce"):
        super().__init__(model_name_pairs, key, name)
        self.loss_func = get_loss("CELoss")(epsilon=epsilon)

    def pair_loss(self, student, teacher, batch):
        return self.loss_func(student, teacher)


@register_loss
class DistillationGTCELoss(ModelDistillation):
    """Cross entropy of each named model against the ground-truth labels (PaddleClas).

    Args:
        model_names: models to train on the labels.
        epsilon: CELoss's label smoothing.
        key: entry of each model output (None: the output itself; a dict gives ``"logits"``).
        name: unused.

    Reads ``input[m][key]`` and the labels. Returns ``{"CELoss_<m>": loss, ...}``.
    """

    input_keys = ()
    input_key_params = ("model_names", "key")
    output_keys = ("CELoss_<m>",)

    def __init__(self, model_names: List[str] = [], epsilon: Optional[float] = None,  # noqa: B006
                 key: Optional[str] = None, name: str = "loss_gt_ce"):
        super().__init__(model_names, key, name)
        self.loss_func = get_loss("CELoss")(epsilon=epsilon)

    def model_loss(self, output, batch):
        return self.loss_func(output, batch)


@register_loss
class DistillationDMLLoss(PairDistillation):
    """Deep mutual learning between the models of each pair (PaddleClas).

    Math: ``DMLLoss(out_a, out_b)`` (symmetric KL, gradients to both); with ``weight_ratio`` the labels
    ``[N, 2, C]`` weight it per attribute (see DMLLoss; this crashes in PaddleClas on Paddle >= 2.6 and
    works here, compatibility DS1).

    Args:
        model_name_pairs: ``[[a, b], ...]``.
        act: ``"softmax"``, ``"sigmoid"`` or None.
        weight_ratio: pass the batch labels as DMLLoss's ``gt_label``.
        sum_across_class_dim: see DMLLoss.
        key: entry of each model output.
        name: unused.

    Reads ``input[a][key]``, ``input[b][key]`` (and the labels with ``weight_ratio``). Returns
    ``{"DMLLoss_<a>_<b>_<idx>": loss, ...}``.
    """

    input_keys = ()
    input_key_params = ("model_name_pairs", "key")
    output_keys = ("DMLLoss_<a>_<b>_<idx>",)
    key_template = "{inner}_{a}_{b}_{idx}"

    def __init__(self, model_name_pairs: List[List[str]] = [],  # noqa: B006
                 act: Optional[Literal["softmax", "sigmoid"]] = "softmax", weight_ratio: bool = False,
                 sum_across_class_dim: bool = False, key: Optional[str] = None, name: str = "loss_dml"):
        super().__init__(model_name_pairs, key, name)
        self.weight_ratio = weight_ratio
        self.loss_func = DMLLoss(act=act, sum_across_class_dim=sum_across_class_dim)

    def pair_loss(self, student, teacher, batch):
        if self.weight_ratio:
            return self.loss_func(student, teacher, batch)
        return self.loss_func(student, teacher)


@register_loss
class DistillationDistanceLoss(PairDistillation):
    """Elementwise distance between the (optionally activated) outputs of each pair (PaddleClas).

    Math: ``DistanceLoss(mode)(act(out_a), act(out_b))``.

    Args:
        mode: ``"l1"``, ``"l2"`` or ``"smooth_l1"``.
        model_name_pairs: ``[[a, b], ...]``.
        act: None, ``"sigmoid"`` or ``"softmax"`` (last axis), applied to both outputs first.
        key: entry of each model output.
        name: key prefix.
        **kargs: DistanceLoss options (``reduction``, ``delta``).

    Reads ``input[a][key]``, ``input[b][key]``. Returns ``{"<name><mode>_loss_<mode>_<idx>": loss, ...}``
    (the mode appears twice, as in PaddleClas: ``loss_l2_loss_l2_0``).
    """

    input_keys = ()
    input_key_params = ("model_name_pairs", "key")
    output_keys = ("<name><mode>_loss_<mode>_<idx>",)
    key_template = "{name}{mode}_{inner}_{idx}"

    def __init__(self, mode: Literal["l1", "l2", "smooth_l1"] = "l2",
                 model_name_pairs: List[List[str]] = [],  # noqa: B006
                 act: Optional[Literal["sigmoid", "softmax"]] = None, key: Optional[str] = None,
                 name: str = "loss_", **kargs):
        super().__init__(model_name_pairs, key, name)
        if act not in _ACTIVATIONS:
            raise ValueError(f"DistillationDistanceLoss: act must be None, 'sigmoid' or 'softmax', got {act!r}")
        self.act = act
        self.mode = mode
        self.loss_func = DistanceLoss(mode=mode, **kargs)

    def key_fields(self):
        return {"mode": self.mode}

    def pair_loss(self, student, teacher, batch):
        if self.act is not None:
            student, teacher = _ACTIVATIONS[self.act](student), _ACTIVATIONS[self.act](teacher)
        return self.loss_func(student, teacher)


@register_loss
class DistillationRKDLoss(nn.Layer):
    """Relational KD (angle and distance) between paired entries of two models (PaddleClas).

    For each model pair ``(a, b)`` and each position ``idx`` of the two keep-key lists (walked in parallel):
    ``RKdAngle(input[a][sk], input[b][tk])`` and ``RkdDistance(...)``, both with ``target_size`` (which
    defaults to None here, so RkdDistance does **not** pool, unlike its standalone default).

    Args:
        target_size: pooling size for both relational losses (None: flat features).
        model_name_pairs: ``[[a, b], ...]``.
        student_keepkeys, teacher_keepkeys: equally long lists of output keys.

    Returns ``{"loss_angle_<idx>_<a>_<b>": ..., "loss_dist_<idx>_<a>_<b>": ..., ...}`` (empty with the default
    empty keep-keys, as in PaddleClas).
    """

    input_keys = ()
    input_key_params = ("model_name_pairs", "student_keepkeys", "teacher_keepkeys")
    output_keys = ("loss_angle_<idx>_<a>_<b>", "loss_dist_<idx>_<a>_<b>")

    def __init__(self, target_size: Optional[int] = None,
                 model_name_pairs: List[List[str]] = (["Student", "Teacher"],),
                 student_keepkeys: List[str] = [], teacher_keepkeys: List[str] = []):  # noqa: B006
        super().__init__()
        owner = type(self).__name__
        if len(student_keepkeys) != len(teacher_keepkeys):
            raise ValueError(f"{owner}: student_keepkeys and teacher_keepkeys must have the same length, got "
                             f"{list(student_keepkeys)} and {list(teacher_keepkeys)}")
        if not student_keepkeys:
            warnings.warn(f"{owner}: student_keepkeys is empty, so this loss returns no values",
                          ConfigWarning, stacklevel=2)
        self.model_name_pairs = check_model_pairs(owner, model_name_pairs)
        self.student_keepkeys = list(student_keepkeys)
        self.teacher_keepkeys = list(teacher_keepkeys)
        self.rkd_angle_loss_func = RKdAngle(target_size)
        self.rkd_dist_loss_func = RkdDistance(target_size=target_size)

    def forward(self, predicts, batch=None):
        owner = type(self).__name__
        results = {}
        for a, b in self.model_name_pairs:
            for idx, (sk, tk) in enumerate(zip(self.student_keepkeys, self.teacher_keepkeys)):
                fields = {"idx": idx, "a": a, "b": b}
                with reported_as(owner, f"pair {[a, b]}, keys {[sk, tk]}"):
                    student, teacher = model_output(predicts, a, sk), model_output(predicts, b, tk)
                    angle = self.rkd_angle_loss_func(student, teacher)
                    dist = self.rkd_dist_loss_func(student, teacher)
                results.update(named_results(angle, "loss_angle_{idx}_{a}_{b}", **fields))
                results.update(named_results(dist, "loss_dist_{idx}_{a}_{b}", **fields))
        return results


@register_loss
class DistillationKLDivLoss(PairDistillation):
    """Temperature KL from the second model of each pair to the first (PaddleClas); no teacher gradient.

    Args:
        model_name_pairs: ``[[student, teacher], ...]``.
        temperature: ``T``.
        key: entry of each model output.
        name: unused.

    Returns ``{"loss_kldiv_<a>_<b>": loss, ...}``.
    """

    input_keys = ()
    input_key_params = ("model_name_pairs", "key")
    output_keys = ("loss_kldiv_<a>_<b>",)
    key_template = "{inner}_{a}_{b}"

    def __init__(self, model_name_pairs: List[List[str]] = [], temperature: float = 4,  # noqa: B006
                 key: Optional[str] = None, name: str = "loss_kl"):
        super().__init__(model_name_pairs, key, name)
        self.loss_func = KLDivLoss(temperature=temperature)

    def pair_loss(self, student, teacher, batch):
        return self.loss_func(student, teacher)


@register_loss
class DistillationDKDLoss(PairDistillation):
    """Decoupled KD on each pair, with the batch labels as target (PaddleClas).

    Args:
        model_name_pairs: ``[[student, teacher], ...]``.
        key: entry of each model output.
        temperature, alpha, beta, use_target_as_gt: see DKDLoss.
        name: key prefix.

    Reads the outputs and the labels. Returns ``{"<name>_<a>_<b>": loss, ...}``.
    """

    input_keys = ()
    input_key_params = ("model_name_pairs", "key")
    output_keys = ("<name>_<a>_<b>",)

    def __init__(self, model_name_pairs: List[List[str]] = [], key: Optional[str] = None,  # noqa: B006
                 temperature: float = 1.0, alpha: float = 1.0, beta: float = 1.0,
                 use_target_as_gt: bool = False, name: str = "loss_dkd"):
        super().__init__(model_name_pairs, key, name)
        self.loss_func = DKDLoss(temperature=temperature, alpha=alpha, beta=beta,
                                 use_target_as_gt=use_target_as_gt)

    def pair_loss(self, student, teacher, batch):
        return self.loss_func(student, teacher, batch)


@register_loss
class DistillationWSLLoss(PairDistillation):
    """Weighted soft labels on each pair, with the batch labels as target (PaddleClas).

    Args:
        model_name_pairs: ``[[student, teacher], ...]``.
        key: entry of each model output.
        temperature: ``T`` (``use_target_as_gt`` is not exposed and stays False, as in PaddleClas).
        name: key prefix.

    Returns ``{"<name>_<a>_<b>": loss, ...}``.
    """

    input_keys = ()
    input_key_params = ("model_name_pairs", "key")
    output_keys = ("<name>_<a>_<b>",)

    def __init__(self, model_name_pairs: List[List[str]] = [], key: Optional[str] = None,  # noqa: B006
                 temperature: float = 2.0, name: str = "wsl_loss"):
        super().__init__(model_name_pairs, key, name)
        self.loss_func = WSLLoss(temperature=temperature)

    def pair_loss(self, student, teacher, batch):
        return self.loss_func(student, teacher, batch)


@register_loss
class DistillationSKDLoss(PairDistillation):
    """Spherical KD on each pair, with the batch labels as target (PaddleClas).

    Args:
        model_name_pairs: ``[[student, teacher], ...]``.
        key: entry of each model output.
        temperature, multiplier, alpha, use_target_as_gt: see SKDLoss (temperature defaults to 1.0 here).
        name: key prefix.

    Returns ``{"<name>_<a>_<b>": loss, ...}``.
    """

    input_keys = ()
    input_key_params = ("model_name_pairs", "key")
    output_keys = ("<name>_<a>_<b>",)

    def __init__(self, model_name_pairs: List[List[str]] = [], key: Optional[str] = None,  # noqa: B006
                 temperature: float = 1.0, multiplier: float = 2.0, alpha: float = 0.9,
                 use_target_as_gt: bool = False, name: str = "skd_loss"):
        super().__init__(model_name_pairs, key, name)
        self.loss_func = SKDLoss(temperature=temperature, multiplier=multiplier, alpha=alpha,
                                 use_target_as_gt=use_target_as_gt)

    def pair_loss(self, student, teacher, batch):
        return self.loss_func(student, teacher, batch)


@register_loss
class DistillationMultiLabelLoss(ModelDistillation):
    """Multi-label BCE of each named model against the labels (PaddleClas).

    Args:
        model_names: models to train on the labels.
        epsilon, size_sum, weight_ratio: see MultiLabelLoss.
        key: entry of each model output (None: the output itself; a dict gives ``"logits"``).
        name: unused.

    Returns ``{"MultiLabelLoss_<m>": loss, ...}``.
    """

    input_keys = ()
    input_key_params = ("model_names", "key")
    output_keys = ("MultiLabelLoss_<m>",)

    def __init__(self, model_names: List[str] = [], epsilon: Optional[float] = None,  # noqa: B006
                 size_sum: bool = False, weight_ratio: bool = False, key: Optional[str] = None,
                 name: str = "loss_mll"):
        super().__init__(model_names, key, name)
        self.loss_func = get_loss("MultiLabelLoss")(epsilon=epsilon, size_sum=size_sum,
                                                    weight_ratio=weight_ratio)

    def model_loss(self, output, batch):
        return self.loss_func(output, batch)


@register_loss
class DistillationDISTLoss(PairDistillation):
    """DIST (inter/intra-class Pearson relations) on each pair (PaddleClas); labels unused.

    Args:
        model_name_pairs: ``[[student, teacher], ...]``.
        key: entry of each model output.
        beta, gamma: see DISTLoss.
        name: key prefix.

    Returns ``{"<name>_<a>_<b>": loss, ...}``.
    """

    input_keys = ()
    input_key_params = ("model_name_pairs", "key")
    output_keys = ("<name>_<a>_<b>",)

    def __init__(self, model_name_pairs: List[List[str]] = [], key: Optional[str] = None,  # noqa: B006
                 beta: float = 1.0, gamma: float = 1.0, name: str = "loss_dist"):
        super().__init__(model_name_pairs, key, name)
        self.loss_func = DISTLoss(beta=beta, gamma=gamma)

    def pair_loss(self, student, teacher, batch):
        return self.loss_func(student, teacher)


def resolve_base_loss(owner, base_loss_name, kwargs):
    """Build the base loss named ``base_loss_name`` with ``kwargs``.

    Registered losses (every PaddleClas loss, plugins included) are found by name and their parameters are
    validated like a config entry; ``nn.<Layer>`` / ``paddle.nn.<Layer>`` name a Paddle loss layer (PaddleClas
    evaluates such expressions). Nothing is evaluated.
    """
    for prefix in ("paddle.nn.", "nn."):
        if isinstance(base_loss_name, str) and base_loss_name.startswith(prefix):
            cls = getattr(nn, base_loss_name[len(prefix):], None)
            if isinstance(cls, type) and issubclass(cls, nn.Layer):
                return cls(**kwargs)
            raise ConfigError(f"{owner}: base_loss_name {base_loss_name!r} is not a paddle.nn Layer class")
    try:
        cls = get_loss(base_loss_name)
    except ConfigError as exc:
        raise ConfigError(f"{owner}: base_loss_name: {exc}") from None
    check_params(cls, kwargs, f"{owner}(base_loss_name={base_loss_name!r})")
    return cls(**kwargs)


@register_loss
class DistillationPairLoss(nn.Layer):
    """Any base loss applied to chosen entries of each model pair (PaddleClas).

    For each pair ``(a, b)`` at position ``idx``: ``loss_func(out1, out2)`` where ``out1`` is
    ``input[a][s_key]`` for a string key, the list ``[input[a][k] for k in s_key]`` for a list (a ``None`` item
    taking ``input[a]`` itself), and ``input[a]`` itself for ``s_key=None``; ``out2`` likewise with ``t_key``.
    The labels are **not** passed to the base loss (PaddleClas quirk, kept: DKD/WSL/SKD then use the
    teacher's argmax as target).

    Args:
        base_loss_name: a registered loss name (``MGDLoss``, ``PEFDLoss``, ``DKDLoss``, ``AFDLoss``, plugins,
            ...) or ``nn.<Layer>``; built with ``**kwargs`` (validated against its constructor).
        model_name_pairs: ``[[a, b], ...]``.
        s_key, t_key: a key, a list of keys, or None; both must be of the same kind.
        name: key prefix.
        **kwargs: the base loss's parameters.

    The base loss is the sub-layer ``loss_func`` (state_dict ``loss_func.*``, as PaddleClas).
    Returns ``{"<name>_<idx>_<a>_<b>": loss}`` for a Tensor result and
    ``{"<name>_<idx>_<a>_<b>_<inner key>": ...}`` for a dict result.

    Divergences (docs/compatibility.md): ``s_key = t_key = None`` uses the whole model outputs (DS2;
    PaddleClas crashes iterating None); ``base_loss_name`` is resolved through the registry, so losses
    PaddleClas's eval namespace misses (AFDLoss) work (DS3).
    """

    input_keys = ()
    input_key_params = ("model_name_pairs", "s_key", "t_key")
    output_keys = ("<name>_<idx>_<a>_<b>", "<name>_<idx>_<a>_<b>_<inner key>")

    def __init__(self, base_loss_name: str, model_name_pairs: List[List[str]] = [],  # noqa: B006
                 s_key: Optional[Union[str, List[Optional[str]]]] = None,
                 t_key: Optional[Union[str, List[Optional[str]]]] = None, name: str = "loss", **kwargs):
        super().__init__()
        owner = type(self).__name__
        if type(s_key) is not type(t_key) and not (isinstance(s_key, (list, tuple))
                                                   and isinstance(t_key, (list, tuple))):
            raise ValueError(f"{owner}: s_key and t_key must be of the same kind (both keys, both lists of "
                             f"keys, or both None), got {s_key!r} and {t_key!r}")
        self.loss_func = resolve_base_loss(owner, base_loss_name, kwargs)
        self.model_name_pairs = check_model_pairs(owner, model_name_pairs)
        self.s_key = s_key
        self.t_key = t_key
        self.name = name

    @staticmethod
    def _select(predicts, model, key):
        if isinstance(key, (list, tuple)):
            return [model_output(predicts, model, k, accept_dict=True) for k in key]
        return model_output(predicts, model, key, accept_dict=True)

    def forward(self, predicts, batch=None):
        owner = type(self).__name__
        results = {}
        for idx, (a, b) in enumerate(self.model_name_pairs):
            with reported_as(owner, f"pair {idx} {[a, b]} (s_key {self.s_key!r}, t_key {self.t_key!r})"):
                out1 = self._select(predicts, a, self.s_key)
                out2 = self._select(predicts, b, self.t_key)
                result = self.loss_func(out1, out2)
            results.update(named_results(result, "{name}_{idx}_{a}_{b}", "{name}_{idx}_{a}_{b}_{inner}",
                                         name=self.name, idx=idx, a=a, b=b))
        return results
