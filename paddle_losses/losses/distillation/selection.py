"""How every Distillation* wrapper picks model outputs and names its results (one mechanism, no copies).

A distillation model returns ``{model_name: output}``, where an output is a Tensor or a dict such as
``{"logits": ..., "backbone": ...}``. A wrapper names the models to compare (``model_name_pairs`` or
``model_names``), optionally a ``key`` inside each output, and runs its base loss on each pair (or model),
in list order. Result keys follow PaddleClas's per-wrapper patterns, written here as format templates over
the fields ``name``, ``a``/``b`` (the pair's model names), ``m`` (a single model), ``idx`` (position in the
list), ``mode`` and ``inner`` (the key a dict-returning base loss used).

Bad input is reported as :class:`~paddle_losses.errors.InputError` prefixed with the wrapper and the pair,
e.g. ``DistillationKLDivLoss, pair 0 ['Student', 'Teacher'] (key 'logits'): model 'Teacher' is not in
the input; models present: ['Student']``.
"""
import contextlib
import warnings

import paddle.nn as nn

from ...errors import ConfigWarning, InputError
from ...inputs import is_tensor


def check_model_pairs(owner, pairs, what="model_name_pairs"):
    """Validate a list of ``[student, teacher]`` model-name pairs; returns a list of 2-tuples."""
    if not isinstance(pairs, (list, tuple)) or not all(
            isinstance(p, (list, tuple)) and len(p) == 2 and all(isinstance(m, str) for m in p) for p in pairs):
        raise ValueError(f"{owner}: {what} must be a list of [student, teacher] model-name pairs, e.g. "
                         f"[['Student', 'Teacher']], got {pairs!r}")
    if not pairs:
        warnings.warn(f"{owner}: {what} is empty, so this loss returns no values", ConfigWarning, stacklevel=3)
    return [tuple(p) for p in pairs]


def check_model_names(owner, names, what="model_names"):
    """Validate a list of model names; returns it as a list."""
    if not isinstance(names, (list, tuple)) or not all(isinstance(m, str) for m in names):
        raise ValueError(f"{owner}: {what} must be a list of model names, e.g. ['Student'], got {names!r}")
    if not names:
        warnings.warn(f"{owner}: {what} is empty, so this loss returns no values", ConfigWarning, stacklevel=3)
    return list(names)


def model_output(predicts, model, key=None, accept_dict=False):
    """``predicts[model]``, then ``[key]`` when ``key`` is not None.

    With ``key`` None a dict output is passed on only when ``accept_dict`` (the base loss reads its own
    entry, as CELoss reads ``"logits"``); otherwise InputError asks for a ``key``.
    """
    if not isinstance(predicts, dict):
        raise InputError(f"expected the output of a distillation model, a dict {{model_name: output}}, got "
                         f"{type(predicts).__name__}")
    if model not in predicts:
        raise InputError(f"model {model!r} is not in the input; models present: {sorted(map(str, predicts))}")
    out = predicts[model]
    if key is not None:
        if not isinstance(out, dict):
            raise InputError(f"key {key!r} selects an entry of the output of model {model!r}, but that "
                             f"output is a {type(out).__name__}, not a dict")
        if key not in out:
            raise InputError(f"the output of model {model!r} has no key {key!r}; its keys are "
                             f"{sorted(map(str, out))}")
        return out[key]
    if isinstance(out, dict) and not accept_dict:
        raise InputError(f"model {model!r} returns a dict with keys {sorted(map(str, out))}; set `key` to "
                         f"the entry to distil (e.g. key: logits)")
    return out


@contextlib.contextmanager
def reported_as(owner, where):
    """Prefix any InputError raised inside with the wrapper and the pair/model being computed."""
    try:
        yield
    except InputError as exc:
        raise InputError(f"{owner}, {where}: {exc}") from None


def named_results(result, template, dict_template=None, **fields):
    """Name a base loss's result: a Tensor -> ``{template: value}``; a dict -> one entry per inner key,
    named with ``dict_template`` (default ``template``) and ``inner`` = the base loss's key."""
    if isinstance(result, dict):
        pattern = dict_template or template
        return {pattern.format(inner=k, **fields): v for k, v in result.items()}
    if not is_tensor(result):
        raise TypeError(f"a base loss must return a Tensor or a dict of Tensors, got {type(result).__name__}")
    return {template.format(**fields): result}


class PairDistillation(nn.Layer):
    """Base of the wrappers over ``model_name_pairs``: for each ``(a, b)`` in order, select
    ``predicts[a][key]`` and ``predicts[b][key]``, compute :meth:`pair_loss` and name it with ``key_template``
    (or ``dict_key_template`` for a dict result)."""

    key_template = "{name}_{a}_{b}"
    dict_key_template = None
    student_accepts_dict = False  # with key None, may the student's dict output be passed on?
    teacher_accepts_dict = False

    def __init__(self, model_name_pairs, key=None, name=""):
        super().__init__()
        self.model_name_pairs = check_model_pairs(type(self).__name__, model_name_pairs)
        self.key = key
        self.name = name

    def key_fields(self):
        """Extra fields available to the key templates (e.g. ``mode``)."""
        return {}

    def pair_loss(self, student, teacher, batch):
        raise NotImplementedError

    def forward(self, predicts, batch=None):
        owner = type(self).__name__
        results = {}
        for idx, (a, b) in enumerate(self.model_name_pairs):
            with reported_as(owner, f"pair {idx} {[a, b]} (key {self.key!r})"):
                student = model_output(predicts, a, self.key, self.student_accepts_dict)
                teacher = model_output(predicts, b, self.key, self.teacher_accepts_dict)
                result = self.pair_loss(student, teacher, batch)
            results.update(named_results(result, self.key_template, self.dict_key_template, name=self.name,
                                         a=a, b=b, idx=idx, **self.key_fields()))
        return results


class ModelDistillation(nn.Layer):
    """Base of the wrappers over ``model_names`` (each model against the labels)."""

    key_template = "{inner}_{m}"
    accepts_dict = True

    def __init__(self, model_names, key=None, name=""):
        super().__init__()
        self.model_names = check_model_names(type(self).__name__, model_names)
        self.key = key
        self.name = name

    def model_loss(self, output, batch):
        raise NotImplementedError

    def forward(self, predicts, batch=None):
        owner = type(self).__name__
        results = {}
        for idx, m in enumerate(self.model_names):
            with reported_as(owner, f"model {m!r} (key {self.key!r})"):
                result = self.model_loss(model_output(predicts, m, self.key, self.accepts_dict), batch)
            results.update(named_results(result, self.key_template, name=self.name, m=m, idx=idx))
        return results
