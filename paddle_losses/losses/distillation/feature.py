"""Feature and relational distillation base losses: DistanceLoss, RKdAngle, RkdDistance, MGDLoss, PEFDLoss.

Gradients reach both the student and the teacher input in all of them (PaddleClas detaches neither).
"""
import math
from typing import Literal, Optional

import paddle
import paddle.nn as nn
import paddle.nn.functional as F

from ...errors import InputError
from ...inputs import is_tensor
from ...functional.distill import pool_flatten, rkd_angles, rkd_distances
from ...functional.normalize import l2_normalize
from ...registry import register_loss
from .checks import check_pair, check_rank

_REDUCTIONS = ("mean", "sum", "none")
_DISTANCE_ARGS = {
    "l1": ("reduction", "name"),
    "l2": ("reduction",),
    "smooth_l1": ("reduction", "delta", "is_huber", "name"),
}


@register_loss
class DistanceLoss(nn.Layer):
    """Elementwise distance between two tensors of equal shape (PaddleClas ``DistanceLoss``).

    Math, with ``d = x − y``: ``l1`` -> ``|d|``; ``l2`` -> ``d²``; ``smooth_l1`` -> Paddle's Huber loss
    ``0.5·d²`` if ``|d| < δ`` else ``δ·|d| − 0.5·δ²`` (not PyTorch's SmoothL1, which divides by β); then
    reduced by ``reduction``.

    Args:
        mode: ``"l1"``, ``"l2"`` or ``"smooth_l1"``.
        **kargs: the options of Paddle's matching loss layer: ``reduction`` (``mean``/``sum``/``none``) for
            all modes, ``delta`` (and ``is_huber``) for ``smooth_l1``; ``name`` is accepted and unused.
            Anything else is a ValueError listing what the mode accepts.

    Reads ``x`` and ``y``. Returns ``{"loss_<mode>": loss}`` (e.g. ``loss_l2``).
    """

    input_keys = ()
    output_keys = ("loss_<mode>",)

    def __init__(self, mode: Literal["l1", "l2", "smooth_l1"] = "l2", **kargs):
        super().__init__()
        if mode not in _DISTANCE_ARGS:
            raise ValueError(f"DistanceLoss: mode must be 'l1', 'l2' or 'smooth_l1', got {mode!r}")
        unknown = sorted(set(kargs) - set(_DISTANCE_ARGS[mode]))
        if unknown:
            raise ValueError(f"DistanceLoss(mode={mode!r}) does not accept {unknown}; it accepts "
                             f"{list(_DISTANCE_ARGS[mode])}")
        reduction = kargs.get("reduction", "mean")
        if reduction not in _REDUCTIONS:
            raise ValueError(f"DistanceLoss: reduction must be one of {_REDUCTIONS}, got {reduction!r}")
        self.mode = mode
        self.reduction = reduction
        self.delta = float(kargs.get("delta", 1.0))
        self.is_huber = bool(kargs.get("is_huber", True))

    def forward(self, x, y):
        x, y = check_pair(x, y, type(self).__name__, names=("x", "y"))
        if self.mode == "l1":
            loss = F.l1_loss(x, y, reduction=self.reduction)
        elif self.mode == "l2":
            loss = F.mse_loss(x, y, reduction=self.reduction)
        else:
            loss = F.smooth_l1_loss(x, y, reduction=self.reduction, delta=self.delta, is_huber=self.is_huber)
        return {f"loss_{self.mode}": loss}


def _rkd_embeddings(owner, student, teacher, target_size):
    hint = (f"; target_size={target_size} pools a [N, C, H, W] map, set target_size: null for flat "
            f"features") if target_size is not None else ""
    student, teacher = check_pair(student, teacher, owner, same_shape=False)
    if target_size is not None:
        check_rank(student, 4, owner, "the student input", hint)
        check_rank(teacher, 4, owner, "the teacher input", hint)
    return pool_flatten(student, target_size), pool_flatten(teacher, target_size)


@register_loss
class RKdAngle(nn.Layer):
    """Relational KD, angle-wise (PaddleClas ``RKdAngle``).

    Math: optionally adaptive-average-pool both inputs to ``target_size``, flatten to ``[N, d]`` (student and
    teacher widths may differ); for each embedding ``A[i,j,k] = ⟨u_ij, u_ik⟩`` with ``u_ij`` the unit vector
    of ``e_j − e_i`` (0 when ``j = i``); ``loss = mean over N³ of Huber₁(A_s − A_t)``.

    Args:
        target_size: pooled spatial size (None: no pooling; inputs may then have any rank >= 2).

    Reads ``student`` and ``teacher``. Returns a scalar tensor; the teacher is not detached.
    """

    input_keys = ()
    output_keys = ()

    def __init__(self, target_size: Optional[int] = None):
        super().__init__()
        self.target_size = target_size

    def forward(self, student, teacher):
        s, t = _rkd_embeddings(type(self).__name__, student, teacher, self.target_size)
        return F.smooth_l1_loss(rkd_angles(s).reshape([-1]), rkd_angles(t).reshape([-1]), reduction="mean")


@register_loss
class RkdDistance(nn.Layer):
    """Relational KD, distance-wise (PaddleClas ``RkdDistance``).

    Math: pool (default ``target_size=1``: global average pooling, so 4-D input is required) and flatten;
    ``R = sqrt(max(‖e_i‖² + ‖e_j‖² − 2 e_i·e_j, 1e-12))`` (diagonal **not** zeroed: its float32 residue
    enters the mean, as in PaddleClas); ``R̂ = R / (mean(R) + eps)`` with the mean over all N² entries;
    ``loss = mean Huber₁(R̂_s − R̂_t)``.

    Args:
        eps: added to the mean distance.
        target_size: pooled spatial size; None disables pooling (flat ``[N, d]`` features).

    Reads ``student`` and ``teacher``. Returns a scalar tensor.

    Divergence (docs/compatibility.md, DS5): 2-D input with the default ``target_size=1`` raises our
    InputError saying to set ``target_size: null`` (PaddleClas: an unpacking ValueError inside pooling).
    """

    input_keys = ()
    output_keys = ()

    def __init__(self, eps: float = 1e-12, target_size: Optional[int] = 1):
        super().__init__()
        self.eps = eps
        self.target_size = target_size

    def _relations(self, e):
        d = rkd_distances(e)
        return d / (d.mean() + self.eps)

    def forward(self, student, teacher):
        s, t = _rkd_embeddings(type(self).__name__, student, teacher, self.target_size)
        return F.smooth_l1_loss(self._relations(s), self._relations(t), reduction="mean")


def _kaiming_normal_fan_out_(conv):
    """Kaiming-normal (fan_out, ReLU gain) weights and zero bias, drawn with paddle.normal as PaddleClas.

    The draw happens after the layer's default initialisation, in the same order as PaddleClas, so the same
    ``paddle.seed`` gives the same values.
    """
    out_channels, _, kh, kw = conv.weight.shape
    std = math.sqrt(2.0) / math.sqrt(out_channels * kh * kw)
    conv.weight.set_value(paddle.normal(mean=0.0, std=std, shape=conv.weight.shape))
    conv.bias.set_value(paddle.zeros_like(conv.bias))


@register_loss
class MGDLoss(nn.Layer):
    """Masked generative distillation (PaddleClas ``MGDLoss``).

    Math: ``s' = align(s)`` (1×1 conv, only when the channel counts differ); a keep-mask
    ``M[n, c] = [U[n, c] >= λ]`` with ``U ~ Uniform[0, 1)`` of shape ``[N, Ct, 1, 1]`` drops whole channels
    (no rescaling); ``G = conv3×3(relu(conv3×3(s' ⊙ M)))``; ``loss = α · mean((G − t)²)`` over all
    ``N·Ct·H·W`` elements.

    Args:
        student_channels, teacher_channels: ``Cs`` and ``Ct``.
        alpha_mgd: ``α``.
        lambda_mgd: ``λ``, the probability of masking a channel.
        seed: None (PaddleClas) draws ``U`` from Paddle's global generator on every call, so
            ``paddle.seed(k)`` right before the forward reproduces a run; an int gives this loss its own
            stream, seeded once with it and independent of (and not advancing) the global generator.

    Parameters (state_dict): ``align.weight`` ``[Ct, Cs, 1, 1]`` / ``align.bias`` (only if ``Cs != Ct``),
    ``generation.0.weight``/``bias`` and ``generation.2.weight``/``bias`` (3×3, padding 1); weights
    Kaiming-normal (fan_out), biases 0.

    Reads ``pred_s`` ``[N, Cs, H, W]``, ``pred_t`` ``[N, Ct, H, W]`` and optionally ``mask``: a keep-mask
    ``[N, Ct, 1, 1]`` used instead of a random draw (to replay a recorded run). The mask used by the last
    call is kept in ``last_mask``. Returns a scalar tensor; gradients reach both inputs and every parameter.

    Extension (docs/compatibility.md, DS7): ``seed``, ``mask`` and ``last_mask`` are ours; the defaults draw
    exactly as PaddleClas.
    """

    input_keys = ()
    output_keys = ()

    def __init__(self, student_channels: int, teacher_channels: int, alpha_mgd: float = 1.756,
                 lambda_mgd: float = 0.15, seed: Optional[int] = None):
        super().__init__()
        for what, value in (("student_channels", student_channels), ("teacher_channels", teacher_channels)):
            if not isinstance(value, int) or value <= 0:
                raise ValueError(f"MGDLoss: {what} must be a positive int, got {value!r}")
        self.student_channels = student_channels
        self.teacher_channels = teacher_channels
        self.alpha_mgd = alpha_mgd
        self.lambda_mgd = lambda_mgd
        self.seed = seed
        self._rng_state = None
        self.last_mask = None
        if student_channels != teacher_channels:
            self.align = nn.Conv2D(student_channels, teacher_channels, kernel_size=1, stride=1, padding=0)
        else:
            self.align = None
        self.generation = nn.Sequential(
            nn.Conv2D(teacher_channels, teacher_channels, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.Conv2D(teacher_channels, teacher_channels, kernel_size=3, padding=1))
        for conv in ([self.align] if self.align is not None else []) + [self.generation[0], self.generation[2]]:
            _kaiming_normal_fan_out_(conv)

    def _draw(self, shape):
        if self.seed is None:
            return paddle.rand(shape)
        outer = paddle.get_rng_state()
        if self._rng_state is None:
            paddle.seed(self.seed)
        else:
            paddle.set_rng_state(self._rng_state)
        u = paddle.rand(shape)
        self._rng_state = paddle.get_rng_state()
        paddle.set_rng_state(outer)
        return u

    def _check(self, pred_s, pred_t, mask):
        owner = type(self).__name__
        pred_s, pred_t = check_pair(pred_s, pred_t, owner, same_shape=False, ndim=4)
        if pred_s.shape[1] != self.student_channels or pred_t.shape[1] != self.teacher_channels:
            raise InputError(f"{owner}: expected student [N, {self.student_channels}, H, W] and teacher "
                             f"[N, {self.teacher_channels}, H, W] (student_channels/teacher_channels), got "
                             f"{list(pred_s.shape)} and {list(pred_t.shape)}")
        if list(pred_s.shape[2:]) != list(pred_t.shape[2:]):
            raise InputError(f"{owner}: student and teacher feature maps must have the same spatial size, "
                             f"got {list(pred_s.shape[2:])} and {list(pred_t.shape[2:])}")
        expected = [pred_s.shape[0], self.teacher_channels, 1, 1]
        if mask is not None and (not is_tensor(mask) or list(mask.shape) != expected):
            got = list(mask.shape) if is_tensor(mask) else type(mask).__name__
            raise InputError(f"{owner}: mask must be a keep-mask of shape {expected}, got {got}")
        return pred_s, pred_t

    def forward(self, pred_s, pred_t, mask=None):
        pred_s, pred_t = self._check(pred_s, pred_t, mask)
        if self.align is not None:
            pred_s = self.align(pred_s)
        if mask is None:
            u = self._draw([pred_s.shape[0], self.teacher_channels, 1, 1])
            mask = (u >= self.lambda_mgd).astype(pred_s.dtype)
        mask = mask.astype(pred_s.dtype).detach()
        self.last_mask = mask
        generated = self.generation(pred_s * mask)
        return F.mse_loss(generated, pred_t, reduction="mean") * self.alpha_mgd


class _Projector(nn.Layer):
    """One PEFD regressor: ``relu(x·W + b)``; the Linear is named ``conv`` as in PaddleClas's checkpoints."""

    def __init__(self, in_features, out_features):
        super().__init__()
        self.conv = nn.Linear(in_features, out_features)

    def forward(self, x):
        return F.relu(self.conv(x))


@register_loss
class PEFDLoss(nn.Layer):
    """Projector-ensemble feature distillation (PaddleClas ``PEFDLoss``).

    Math: (``gap`` mode: global-average-pool both inputs first) flatten both to ``[N, ·]``;
    ``f = (1/q)·Σ_i relu(s·W_i + b_i)`` over ``q`` projectors; ``loss = mean_n(1 − cos(f_n, t_n))``.

    Args:
        student_channel: flattened student width (``flatten``) or student channels (``gap``).
        teacher_channel: flattened teacher width / teacher channels.
        num_projectors: ``q`` (> 0).
        mode: ``"flatten"`` or ``"gap"``.

    Parameters (state_dict): ``projectors.{i}.conv.weight`` ``[student_channel, teacher_channel]`` and
    ``projectors.{i}.conv.bias``; Paddle's default Linear initialisation (Xavier-uniform, zero bias).

    Reads ``student_feature`` and ``teacher_feature``. Returns a scalar tensor; gradients reach both inputs
    and all projectors.

    Divergence (docs/compatibility.md, DS6): the cosine normalises with ``max(‖v‖, 1e-12)`` instead of
    ``‖v‖``, so a projected row that the ReLU zeroes gives cosine 0 (row loss 1) instead of NaN; every other
    value is unchanged.
    """

    input_keys = ()
    output_keys = ()

    def __init__(self, student_channel: int, teacher_channel: int, num_projectors: int = 3,
                 mode: Literal["flatten", "gap"] = "flatten"):
        super().__init__()
        if not isinstance(num_projectors, int) or num_projectors <= 0:
            raise ValueError(f"PEFDLoss: num_projectors must be a positive int, got {num_projectors!r}")
        if mode not in ("flatten", "gap"):
            raise ValueError(f"PEFDLoss: mode must be 'flatten' or 'gap', got {mode!r}")
        self.student_channel = student_channel
        self.teacher_channel = teacher_channel
        self.mode = mode
        self.projectors = nn.LayerList(
            [_Projector(student_channel, teacher_channel) for _ in range(num_projectors)])

    def forward(self, student_feature, teacher_feature):
        owner = type(self).__name__
        student_feature, teacher_feature = check_pair(student_feature, teacher_feature, owner, same_shape=False)
        if self.mode == "gap":
            hint = "; mode 'gap' pools [N, C, H, W] feature maps"
            check_rank(student_feature, 4, owner, "the student feature", hint)
            check_rank(teacher_feature, 4, owner, "the teacher feature", hint)
        s = pool_flatten(student_feature, 1 if self.mode == "gap" else None)
        t = pool_flatten(teacher_feature, 1 if self.mode == "gap" else None)
        if s.shape[1] != self.student_channel or t.shape[1] != self.teacher_channel:
            raise InputError(f"{owner}: expected a student of width {self.student_channel} and a teacher of "
                             f"width {self.teacher_channel} after {self.mode!r} (student_channel/"
                             f"teacher_channel), got {s.shape[1]} and {t.shape[1]}")
        projected = paddle.stack([p(s) for p in self.projectors], axis=1).mean(axis=1)
        cos = (l2_normalize(projected, "clamp") * l2_normalize(t, "clamp")).sum(axis=1)
        return (1 - cos).mean()
