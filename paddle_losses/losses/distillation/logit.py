"""Logit-distillation base losses: DMLLoss, KLDivLoss, DKDLoss, WSLLoss, SKDLoss, DISTLoss.

Each takes the student logits ``s`` and teacher logits ``t`` (both ``[N, C]``). Which side receives a
gradient follows PaddleClas exactly: KLDiv and DKD stop the teacher (it enters ``kl_div`` as the
label); DML, WSL, SKD and DIST let it through.
"""
from typing import Literal, Optional

import paddle
import paddle.nn as nn
import paddle.nn.functional as F

from ...errors import InputError
from ...functional.distill import (kl_to_teacher, pearson_rows, soft_cross_entropy,
                                   target_onehot)
from ...functional.multilabel import ratio2weight
from ...functional.softmax_ce import log_softmax
from ...inputs import check_finite, is_tensor
from ...registry import register_loss
from .checks import check_pair, optional_labels

_ACTS = {"softmax": lambda x: F.softmax(x, axis=-1), "sigmoid": F.sigmoid, None: lambda x: x}


def _check_act(owner, act):
    if act not in _ACTS:
        raise ValueError(f"{owner}: act must be 'softmax', 'sigmoid' or None, got {act!r}")
    return act


@register_loss
class DMLLoss(nn.Layer):
    """Deep mutual learning: symmetric KL between two activated outputs (PaddleClas ``DMLLoss``).

    Math, with ``P = act(x)``, ``Q = act(target)`` and ``C`` the size of the last axis::

        k(A, B) = B · log((B + eps) / (A + eps)) · C          (elementwise)
        L = (k(P, Q) + k(Q, P)) / 2
        loss = mean(L)                 (default: the per-sample symmetric KL averaged over the batch)
        loss = mean_i Σ_c L_ic         (sum_across_class_dim=True: C times larger)

    With ``gt_label`` (float ``[N, 2, C]``: multi-hot labels ``g`` in row 0, positive ratios ``r`` in row
    1), ``L`` is first weighted by ``ratio2weight([g > 0.5], r) · [g > -1]`` (entries labelled ``-1`` are
    ignored).

    Args:
        act: ``"softmax"`` (last axis), ``"sigmoid"`` or None (inputs already probabilities).
        sum_across_class_dim: sum over classes before averaging over samples.
        eps: added inside the log ratio.

    Reads two tensors ``x`` (student) and ``target`` (teacher) of equal shape; gradients reach both.
    Returns ``{"DMLLoss": loss}``.

    Divergence (docs/compatibility.md, DS1): PaddleClas multiplies a float tensor by the bool mask
    ``[g > -1]``, which raises TypeError on Paddle >= 2.6; we multiply by the float mask (the intended
    weighting).
    """

    input_keys = ()
    output_keys = ("DMLLoss",)

    def __init__(self, act: Optional[Literal["softmax", "sigmoid"]] = "softmax",
                 sum_across_class_dim: bool = False, eps: float = 1e-12):
        super().__init__()
        self.act = _check_act("DMLLoss", act)
        self.sum_across_class_dim = sum_across_class_dim
        self.eps = eps

    def _kl(self, a, b):
        return b * paddle.log((b + self.eps) / (a + self.eps)) * a.shape[-1]

    def forward(self, x, target, gt_label=None):
        owner = type(self).__name__
        x, target = check_pair(x, target, owner)
        p, q = _ACTS[self.act](x), _ACTS[self.act](target)
        loss = (self._kl(p, q) + self._kl(q, p)) / 2
        if gt_label is not None:
            loss = loss * self._label_weight(gt_label, x, owner)
        return {"DMLLoss": loss.sum(axis=1).mean() if self.sum_across_class_dim else loss.mean()}

    @staticmethod
    def _label_weight(gt_label, x, owner):
        expected = [x.shape[0], 2, x.shape[-1]]
        if (not is_tensor(gt_label) or not paddle.is_floating_point(gt_label)
                or list(gt_label.shape) != expected or x.ndim != 2):
            got = (f"{gt_label.dtype} {list(gt_label.shape)}" if is_tensor(gt_label)
                   else type(gt_label).__name__)
            raise InputError(f"{owner}: gt_label must be a float tensor of shape [N, 2, C] = {expected} "
                             f"(labels in row 0, positive ratios in row 1), got {got}")
        check_finite(gt_label, owner, "gt_label")
        labels, ratios = gt_label[:, 0, :], gt_label[:, 1, :]
        weight = ratio2weight((labels > 0.5).astype(x.dtype), ratios)
        return weight * (labels > -1).astype(x.dtype)


@register_loss
class KLDivLoss(nn.Layer):
    """Temperature-scaled KL divergence from teacher to student (PaddleClas ``KLDivLoss``).

    Math: ``loss = T²/N · Σ_{i,c} p_t·(log p_t − log_softmax(s/T))`` with ``p_t = softmax(t/T)``; the
    softmax runs over axis 1. The teacher receives no gradient (it is ``kl_div``'s label).

    Args:
        temperature: ``T``.

    Reads ``y_s`` and ``y_t`` (``[N, C]``). Returns ``{"loss_kldiv": loss}``.
    """

    input_keys = ()
    output_keys = ("loss_kldiv",)

    def __init__(self, temperature: float = 4):
        super().__init__()
        self.T = temperature

    def forward(self, y_s, y_t):
        y_s, y_t = check_pair(y_s, y_t, type(self).__name__)
        log_s = log_softmax(y_s / self.T, axis=1)
        p_t = F.softmax(y_t / self.T, axis=1)
        return {"loss_kldiv": kl_to_teacher(log_s, p_t) * self.T ** 2 / y_s.shape[0]}


@register_loss
class DKDLoss(nn.Layer):
    """Decoupled knowledge distillation (PaddleClas ``DKDLoss``; no warm-up factor).

    Math, with ``G`` the one-hot target, ``p = softmax(·/T)`` over axis 1 and ``N`` the batch::

        b = [Σ_c p·G, Σ_c p·(1 − G)]                         (binary target/non-target split, [N, 2])
        tckd = T²/N · Σ b_t·(log b_t − log b_s)
        nckd = T²/N · Σ q_t·(log q_t − log_softmax(s/T − 1000·G))   with q_t = softmax(t/T − 1000·G)
        loss = α·tckd + β·nckd

    Args:
        temperature: ``T``.
        alpha, beta: weights of the target and non-target terms.
        use_target_as_gt: use the teacher's argmax as the target even when labels are given.

    Reads ``logits_student``, ``logits_teacher`` (``[N, C]``) and optional int ``target`` (``[N]``/``[N, 1]``;
    None -> teacher argmax, first index on ties). Returns a scalar tensor. The teacher gets no gradient.
    """

    input_keys = ()
    output_keys = ()

    def __init__(self, temperature: float = 1.0, alpha: float = 1.0, beta: float = 1.0,
                 use_target_as_gt: bool = False):
        super().__init__()
        self.temperature = temperature
        self.alpha = alpha
        self.beta = beta
        self.use_target_as_gt = use_target_as_gt

    def forward(self, logits_student, logits_teacher, target=None):
        owner = type(self).__name__
        logits_student, logits_teacher = check_pair(logits_student, logits_teacher, owner, ndim=2)
        n, c = logits_student.shape
        target = optional_labels(target, n, c, owner)
        g = target_onehot(target, logits_teacher, c, self.use_target_as_gt)
        T = self.temperature
        s, t = logits_student / T, logits_teacher / T
        p_s, p_t = F.softmax(s, axis=1), F.softmax(t, axis=1)

        def split(p):
            return paddle.concat([(p * g).sum(axis=1, keepdim=True),
                                  (p * (1 - g)).sum(axis=1, keepdim=True)], axis=1)

        tckd = kl_to_teacher(paddle.log(split(p_s)), split(p_t)) * T ** 2 / n
        q_t = F.softmax(t - 1000.0 * g, axis=1)
        log_q_s = log_softmax(s - 1000.0 * g, axis=1)
        nckd = kl_to_teacher(log_q_s, q_t) * T ** 2 / n
        return self.alpha * tckd + self.beta * nckd


@register_loss
class WSLLoss(nn.Layer):
    """Weighted soft labels (PaddleClas ``WSLLoss``).

    Math, with ``Y`` the one-hot target::

        ce_s = −Σ_c Y·log_softmax(s),  ce_t = −Σ_c Y·log_softmax(t)        (no temperature, detached)
        w = 1 − exp(−max(ce_s / (ce_t + 1e-7), 0))                          (per sample, a constant)
        loss = T² · mean_i( w_i · (−Σ_c softmax(t/T)·log_softmax(s/T)) )

    Args:
        temperature: ``T``.
        use_target_as_gt: use the teacher's argmax as the target even when labels are given.

    Reads ``logits_student``, ``logits_teacher`` (``[N, C]``) and optional int ``target``. Returns a scalar
    tensor. Both logits receive a gradient through the soft term (the teacher is not detached there).
    """

    input_keys = ()
    output_keys = ()

    def __init__(self, temperature: float = 2.0, use_target_as_gt: bool = False):
        super().__init__()
        self.temperature = temperature
        self.use_target_as_gt = use_target_as_gt

    def forward(self, logits_student, logits_teacher, target=None):
        owner = type(self).__name__
        logits_student, logits_teacher = check_pair(logits_student, logits_teacher, owner, ndim=2)
        n, c = logits_student.shape
        target = optional_labels(target, n, c, owner)
        y = target_onehot(target, logits_teacher, c, self.use_target_as_gt)
        with paddle.no_grad():
            ce_s = soft_cross_entropy(y, log_softmax(logits_student.detach(), axis=-1))
            ce_t = soft_cross_entropy(y, log_softmax(logits_teacher.detach(), axis=-1))
            weight = 1 - paddle.exp(-F.relu(ce_s / (ce_t + 1e-7)))
        T = self.temperature
        kd = soft_cross_entropy(F.softmax(logits_teacher / T, axis=-1),
                                log_softmax(logits_student / T, axis=-1))
        return T ** 2 * (kd * weight).mean()


@register_loss
class SKDLoss(nn.Layer):
    """Spherical knowledge distillation (PaddleClas ``SKDLoss``).

    Math, with ``LN`` a layer norm over all non-batch dims (eps 1e-7, no affine) and ``Y`` the one-hot
    target::

        s' = LN(s)·multiplier,  t' = LN(t)·multiplier
        kd = T² · mean_i(−Σ_c softmax(t'/T)·log_softmax(s'/T))
        ce = mean_i(−Σ_c Y·log_softmax(s'))                       (no temperature)
        loss = α·kd + (1 − α)·ce

    Args:
        temperature: ``T`` (required, as in PaddleClas's base class).
        multiplier: scale after normalisation.
        alpha: weight of the KD term.
        use_target_as_gt: use the teacher's argmax as the target even when labels are given.

    Reads ``logits_student``, ``logits_teacher`` (``[N, C]``) and optional int ``target``. Returns a scalar
    tensor; gradients reach both logits.
    """

    input_keys = ()
    output_keys = ()

    def __init__(self, temperature: float, multiplier: float = 2.0, alpha: float = 0.9,
                 use_target_as_gt: bool = False):
        super().__init__()
        self.temperature = temperature
        self.multiplier = multiplier
        self.alpha = alpha
        self.use_target_as_gt = use_target_as_gt

    def forward(self, logits_student, logits_teacher, target=None):
        owner = type(self).__name__
        logits_student, logits_teacher = check_pair(logits_student, logits_teacher, owner, ndim=2)
        n, c = logits_student.shape
        target = optional_labels(target, n, c, owner)
        y = target_onehot(target, logits_teacher, c, self.use_target_as_gt)
        s = F.layer_norm(logits_student, logits_student.shape[1:], epsilon=1e-7) * self.multiplier
        t = F.layer_norm(logits_teacher, logits_teacher.shape[1:], epsilon=1e-7) * self.multiplier
        T = self.temperature
        kd = T ** 2 * soft_cross_entropy(F.softmax(t / T, axis=-1), log_softmax(s / T, axis=-1)).mean()
        ce = soft_cross_entropy(y, log_softmax(s, axis=-1)).mean()
        return self.alpha * kd + (1 - self.alpha) * ce


@register_loss
class DISTLoss(nn.Layer):
    """Distillation from a stronger teacher: inter- and intra-class Pearson relations (PaddleClas ``DISTLoss``).

    Math, with ``Y = softmax(·)`` over the last axis (no temperature) and Pearson correlation computed as
    the cosine of row-centred vectors with ``eps = 1e-8`` added to the product of the norms::

        inter = 1 − mean_i pearson(Y_s[i, :], Y_t[i, :])      (over classes, per sample)
        intra = 1 − mean_c pearson(Y_s[:, c], Y_t[:, c])      (over the batch, per class)
        loss = β·inter + γ·intra

    Args:
        beta, gamma: weights of the inter- and intra-class terms.

    Reads ``z_s``, ``z_t`` (``[N, C]``). Returns a scalar tensor; gradients reach both.
    """

    input_keys = ()
    output_keys = ()

    def __init__(self, beta: float = 1.0, gamma: float = 1.0):
        super().__init__()
        self.beta = beta
        self.gamma = gamma

    def forward(self, z_s, z_t):
        z_s, z_t = check_pair(z_s, z_t, type(self).__name__, ndim=2)
        y_s, y_t = F.softmax(z_s, axis=-1), F.softmax(z_t, axis=-1)
        inter = 1 - pearson_rows(y_s, y_t).mean()
        intra = 1 - pearson_rows(y_s.t(), y_t.t()).mean()
        return self.beta * inter + self.gamma * intra
