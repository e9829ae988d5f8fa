"""AFDLoss: attention-based feature distillation over every (student stage, teacher stage) pair."""
import math
from typing import List

import paddle
import paddle.nn as nn
import paddle.nn.functional as F

from ...errors import InputError
from ...inputs import check_features, pick
from ...registry import register_loss
from .selection import model_output, reported_as


# PaddleClas's defaults (never mutated: the constructor copies them)
_S_SHAPES = [[64, 16, 160], [128, 8, 160], [256, 4, 160], [512, 2, 160]]
_T_SHAPES = [[640, 48], [320, 96], [160, 192]]


def unique_shape_index(shapes):
    """``(unique, index)``: distinct shapes in order of first appearance and, per shape, its unique index.

    PaddleClas instead takes a running count of new shapes as the index, which is right only when equal
    shapes are contiguous (``[A, B, A]`` maps the third stage to ``B``).
    """
    unique, index = [], []
    for shape in shapes:
        shape = list(shape)
        if shape not in unique:
            unique.append(shape)
        index.append(unique.index(shape))
    return unique, index


class _Attention(nn.Layer):
    """Holds the stage embeddings ``p_t`` ``[T, qk]`` and ``p_s`` ``[S, qk]`` (Xavier-normal)."""

    def __init__(self, qk_dim, num_student, num_teacher):
        super().__init__()
        init = nn.initializer.XavierNormal()
        self.p_t = self.create_parameter([num_teacher, qk_dim], default_initializer=init)
        self.p_s = self.create_parameter([num_student, qk_dim], default_initializer=init)


@register_loss
class AFDLoss(nn.Layer):
    """Attention-based feature distillation (PaddleClas ``AFDLoss``).

    Math, for a batch ``b``, teacher stage ``t`` and student stage ``s``::

        logit[b,t,s] = (Σ_q K[b,s,t,q]·Q[b,t,q] + (p_t·p_sᵀ)[t,s]) / sqrt(qk_dim)
        att = softmax over s of logit
        d_i[b,s] = mean over positions of (V_s[u(i)][b,s,:] − V_t[i][b,:])²
        loss = Σ_i mean_b Σ_s d_i[b,s]·att[b,i,s]

    where ``u(i)`` is the index of teacher stage ``i``'s shape among the distinct teacher shapes.

    Args:
        model_name_pair: ``[student model, teacher model]`` in the input dict.
        student_keys: ``[bilinear key K [B,S,T,qk], values V_s]``; ``V_s`` is a list with one
            ``[B, S, H_u·W_u]`` tensor per distinct teacher shape.
        teacher_keys: ``[query Q [B,T,qk], values V_t]``; ``V_t`` is a list of ``T`` tensors ``[B, H_i·W_i]``.
        s_shapes, t_shapes: per-stage ``[C, H, W]`` of the student (S stages) and teacher (T stages).
        qk_dim: attention width.
        name: output key.

    Parameters (state_dict): ``attention.p_t`` ``[T, qk_dim]``, ``attention.p_s`` ``[S, qk_dim]``.

    Reads ``input[model_name_pair[0]][student_keys[*]]`` and ``input[model_name_pair[1]][teacher_keys[*]]``
    (the output of PaddleClas's AFD ``AttentionModel``); the second argument (labels) is unused. Called by
    DistillationPairLoss with ``s_key = t_key = None``, it receives the student and the teacher output
    directly and reads the same keys from them. Returns ``{name: loss}``.

    Divergence (docs/compatibility.md, DS4): teacher stage ``i`` is compared with the student values of
    *its own* shape (PaddleClas's running-count index breaks on non-contiguous repeated shapes, raising a
    broadcast error or silently comparing the wrong stage).
    """

    input_keys = ()
    input_key_params = ("model_name_pair", "student_keys", "teacher_keys")
    output_keys = ("<name> (loss_afd)",)

    def __init__(self, model_name_pair: List[str] = ["Student", "Teacher"],  # noqa: B006 - PaddleClas default
                 student_keys: List[str] = ["bilinear_key", "value"],  # noqa: B006
                 teacher_keys: List[str] = ["query", "value"],  # noqa: B006
                 s_shapes: List[List[int]] = _S_SHAPES,
                 t_shapes: List[List[int]] = _T_SHAPES,
                 qk_dim: int = 128, name: str = "loss_afd"):
        super().__init__()
        if not isinstance(model_name_pair, list) or len(model_name_pair) != 2:
            raise ValueError(f"AFDLoss: model_name_pair must be a list [student, teacher], got "
                             f"{model_name_pair!r}")
        for what, keys in (("student_keys", student_keys), ("teacher_keys", teacher_keys)):
            if not isinstance(keys, (list, tuple)) or len(keys) != 2:
                raise ValueError(f"AFDLoss: {what} must be two keys [attention input, values], got {keys!r}")
        if not s_shapes or not t_shapes:
            raise ValueError("AFDLoss: s_shapes and t_shapes must each list at least one stage shape")
        self.model_name_pair = list(model_name_pair)
        self.student_keys = list(student_keys)
        self.teacher_keys = list(teacher_keys)
        self.s_shapes = [[1] + list(s) for s in s_shapes]
        self.t_shapes = [[1] + list(t) for t in t_shapes]
        self.qk_dim = qk_dim
        self.name = name
        self.unique_t_shapes, self.n_t = unique_shape_index(self.t_shapes)
        self.attention = _Attention(qk_dim, len(s_shapes), len(t_shapes))

    def _outputs(self, predicts, batch):
        owner = type(self).__name__
        student, teacher = self.model_name_pair
        if isinstance(predicts, dict) and student not in predicts and isinstance(batch, dict) \
                and all(k in predicts for k in self.student_keys):
            return predicts, batch  # DistillationPairLoss passes (student output, teacher output)
        with reported_as(owner, f"model_name_pair {self.model_name_pair}"):
            return (model_output(predicts, student, accept_dict=True),
                    model_output(predicts, teacher, accept_dict=True))

    def _read(self, out, keys, model):
        owner = type(self).__name__
        if not isinstance(out, dict):
            raise InputError(f"{owner}: the output of model {model!r} must be a dict with keys {keys}, got "
                             f"{type(out).__name__}")
        return [pick(out, k, f"{owner} (model {model!r})", allow_tensor=False) for k in keys]

    def _check(self, key, values_s, query, values_t):
        """Validate the inputs; returns them in their compute dtype (half precision as float32)."""
        owner = type(self).__name__
        S, T, U, qk = len(self.s_shapes), len(self.t_shapes), len(self.unique_t_shapes), self.qk_dim
        key = check_features(key, owner, "bilinear key", ndim=4)
        b = key.shape[0]

        def expect(t, shape, what):
            t = check_features(t, owner, what, ndim=len(shape))
            if list(t.shape) != shape:
                raise InputError(f"{owner}: {what} must have shape {shape}, got {list(t.shape)}")
            return t

        key = expect(key, [b, S, T, qk], "bilinear key [B, S, T, qk_dim]")
        query = expect(query, [b, T, qk], "teacher query [B, T, qk_dim]")
        for what, values, n in (("student values", values_s, U), ("teacher values", values_t, T)):
            if not isinstance(values, (list, tuple)) or len(values) != n:
                got = len(values) if isinstance(values, (list, tuple)) else type(values).__name__
                raise InputError(f"{owner}: {what} must be a list of {n} tensors "
                                 f"({'one per distinct teacher shape' if n == U else 'one per teacher stage'})"
                                 f", got {got}")
        values_s = [expect(values_s[u], [b, S, math.prod(shape[2:])], f"student values[{u}]")
                    for u, shape in enumerate(self.unique_t_shapes)]
        values_t = [expect(values_t[i], [b, math.prod(shape[2:])], f"teacher values[{i}]")
                    for i, shape in enumerate(self.t_shapes)]
        return key, values_s, query, values_t

    def forward(self, predicts, batch=None):
        s_out, t_out = self._outputs(predicts, batch)
        student, teacher = self.model_name_pair
        key, values_s = self._read(s_out, self.student_keys, student)
        query, values_t = self._read(t_out, self.teacher_keys, teacher)
        key, values_s, query, values_t = self._check(key, values_s, query, values_t)
        # K[b,s,t,:]·Q[b,t,:] for every (t, s): batched over (b, t) as [S, qk] x [qk, 1]
        scores = paddle.matmul(key.transpose([0, 2, 1, 3]), query.unsqueeze(-1)).squeeze(-1)
        bias = paddle.matmul(self.attention.p_t, self.attention.p_s, transpose_y=True)
        att = F.softmax((scores + bias) / math.sqrt(self.qk_dim), axis=2)
        loss = 0.0
        for i, u in enumerate(self.n_t):
            d = (values_s[u] - values_t[i].unsqueeze(1)).pow(2).mean(axis=2)
            loss = loss + (d * att[:, i]).sum(axis=1).mean()
        return {self.name: loss}
