"""Config validation against constructor signatures, before any tensor exists.

Each entry of ``Loss.Train`` / ``Loss.Eval`` must be a one-key mapping ``{Name: {weight: w, **params}}``.
The name must be registered, ``weight`` must be a number, and every parameter must be accepted by the
class's ``__init__`` and fit its annotation. Errors are :class:`ConfigError` whose message starts with the
config path (``Loss.Train[1].TripletAngularMarginLoss.margn``) and says what to write instead.
"""
import inspect
import numbers
import typing

from ._suggest import did_you_mean
from .errors import ConfigError
from .registry import get_head, get_loss, is_head, is_loss

_EMPTY = inspect.Parameter.empty


def _signature_target(part):
    """What a config's parameters are passed to: a class's ``__init__``, or a factory function itself."""
    return part.__init__ if inspect.isclass(part) else part


def constructor_params(cls):
    """Ordered ``{name: inspect.Parameter}`` of ``cls.__init__`` (or of a factory function; without ``self``,
    ``*args``, ``**kwargs``), and whether it accepts arbitrary keyword arguments."""
    sig = inspect.signature(_signature_target(cls))
    params, var_kw = {}, False
    for i, (name, p) in enumerate(sig.parameters.items()):
        if i == 0 and name == "self":
            continue
        if p.kind is p.VAR_KEYWORD:
            var_kw = True
        elif p.kind is not p.VAR_POSITIONAL:
            params[name] = p
    return params, var_kw


def _resolved_hints(cls):
    try:
        return typing.get_type_hints(_signature_target(cls))
    except Exception:  # noqa: BLE001 - unresolvable forward references: fall back to no type checks
        return {}


def describe_type(tp):
    """Human-readable form of an annotation (``float``, ``'mean' | 'sum' | 'none'``, ``list of str``)."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is typing.Any or tp is _EMPTY:
        return "any value"
    if origin is typing.Literal:
        return " | ".join(repr(a) for a in args)
    if origin is typing.Union:
        parts = []
        for a in args:
            text = describe_type(a)
            parts += [p for p in text.split(" | ") if p not in parts]
        return " | ".join(parts)
    if origin in (list, typing.List, tuple, typing.Tuple) or (origin is not None and origin.__name__ in (
            "Sequence",)):
        name = "list" if origin in (list, typing.List) else ("tuple" if origin in (tuple,) else "list")
        inner = [a for a in args if a is not Ellipsis]
        return f"{name} of {describe_type(inner[0])}" if inner else name
    if tp is type(None):
        return "null"
    return getattr(tp, "__name__", str(tp))


def type_matches(value, tp):
    """Whether a config ``value`` fits annotation ``tp`` (ints are accepted for floats; bools are not numbers)."""
    if tp is _EMPTY or tp is typing.Any:
        return True
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is typing.Union:
        return any(type_matches(value, a) for a in args)
    if origin is typing.Literal:
        return value in args and not (isinstance(value, bool) and not any(isinstance(a, bool) for a in args))
    if tp is type(None):
        return value is None
    if tp is float:
        return isinstance(value, numbers.Real) and not isinstance(value, bool)
    if tp is int:
        return isinstance(value, numbers.Integral) and not isinstance(value, bool)
    if tp is bool:
        return isinstance(value, bool)
    if tp is str:
        return isinstance(value, str)
    if origin is not None and (origin in (list, tuple) or getattr(origin, "__name__", "") == "Sequence"):
        if not isinstance(value, (list, tuple)):
            return False
        inner = [a for a in args if a is not Ellipsis]
        if origin is tuple and inner and Ellipsis not in args:
            return len(value) == len(inner) and all(type_matches(v, a) for v, a in zip(value, inner))
        return not inner or all(type_matches(v, inner[0]) for v in value)
    if origin is dict or tp is dict:
        return isinstance(value, dict)
    if inspect.isclass(tp):
        return isinstance(value, tp)
    return True


def signature_text(cls, injected=()):
    """``name=default`` list of a constructor, for error messages."""
    params, _ = constructor_params(cls)
    parts = []
    for name, p in params.items():
        if name in injected:
            continue
        parts.append(name if p.default is _EMPTY else f"{name}={p.default!r}")
    return ", ".join(parts) if parts else "(no parameters)"


def check_params(cls, params, path, injected=()):
    """Validate ``params`` for ``cls(**injected, **params)``; ``path`` is the config path of the mapping.

    ``injected`` names the arguments the caller supplies (a config may not set them). A part that takes
    ``**kwargs`` accepts keys it does not name (PaddleClas configs carry keys that only PaddleClas reads),
    but a key that looks like a misspelt parameter is still an error: ``num_featurs`` next to
    ``num_features`` is a typo, not an extra.
    """
    accepted, var_kw = constructor_params(cls)
    accepted = {k: v for k, v in accepted.items() if k not in injected}
    hints = _resolved_hints(cls)
    valid = ", ".join(accepted) or "(none)"
    name = getattr(cls, "__name__", str(cls))
    for key, value in params.items():
        if not isinstance(key, str):
            raise ConfigError(f"{path}: parameter names must be strings, got {key!r}")
        if key in injected:
            raise ConfigError(f"{path}.{key}: {name}'s {key!r} is supplied by the trainer and cannot be set "
                              f"in the config.")
        if key not in accepted:
            hint = did_you_mean(key, accepted)
            if var_kw and not hint:
                continue
            raise ConfigError(f"{path}.{key}: {name} has no parameter {key!r}.{hint} Valid parameters: {valid}.")
        tp = hints.get(key, accepted[key].annotation)
        if not type_matches(value, tp):
            raise ConfigError(f"{path}.{key}: expected {describe_type(tp)}, got {type(value).__name__} "
                              f"{value!r}. {name}({signature_text(cls, injected)})")
    missing = [n for n, p in accepted.items() if p.default is _EMPTY and n not in params]
    if missing:
        raise ConfigError(f"{path}: {name} needs the parameter(s) {', '.join(missing)}. "
                          f"{name}({signature_text(cls, injected)})")


class LossEntry(tuple):
    """``(name, weight, params, entry_path)`` of one validated loss entry, plus ``.gather`` (bool)."""

    def __new__(cls, name, weight, params, path, gather=False):
        self = super().__new__(cls, (name, weight, params, path))
        self.gather = gather
        return self


def split_entry(entry, path):
    """Check a ``{Name: {weight: w, gather: g, **params}}`` entry; return ``(name, weight, params, gather)``.

    ``weight`` and the optional ``gather`` (see :func:`entry_gather`) are the entry's own keys, not
    parameters of the loss; both are left out of ``params``.
    """
    if not isinstance(entry, dict) or len(entry) != 1:
        got = f"a mapping with {len(entry)} keys {list(entry)}" if isinstance(entry, dict) else \
            f"a {type(entry).__name__} {entry!r}"
        raise ConfigError(f"{path}: each loss entry must be a mapping with exactly one key, the loss name, "
                          f"e.g. `- CELoss: {{weight: 1.0}}`; got {got}. Start each loss with its own `- `.")
    name, params = next(iter(entry.items()))
    where = f"{path}.{name}"
    if params is None:
        raise ConfigError(f"{where} has no parameters; every loss needs at least a weight, e.g. "
                          f"`- {name}:\\n    weight: 1.0`")
    if not isinstance(params, dict):
        raise ConfigError(f"{where}: the parameters must be a mapping (e.g. {{weight: 1.0}}), "
                          f"got {type(params).__name__} {params!r}")
    if "weight" not in params:
        raise ConfigError(f"{where}.weight is missing; add `weight: 1.0` (the factor this loss gets in the "
                          f"total). Given keys: {sorted(map(str, params))}")
    weight = params["weight"]
    if not isinstance(weight, numbers.Real) or isinstance(weight, bool):
        raise ConfigError(f"{where}.weight must be a number, got {type(weight).__name__} {weight!r}")
    gather = entry_gather(params, where)
    rest = {k: v for k, v in params.items() if k not in ("weight", "gather")}
    return name, float(weight), rest, gather


def entry_gather(params, where):
    """The entry's ``gather`` flag (default ``False``): compute this loss on the batch of all ranks."""
    gather = params.get("gather", False)
    if not isinstance(gather, bool):
        raise ConfigError(f"{where}.gather must be true or false (compute this loss on the batch gathered "
                          f"from every rank), got {type(gather).__name__} {gather!r}")
    return gather


def validate_loss_list(config_list, path="Loss.Train"):
    """Validate a ``Loss.Train``-style list; returns :class:`LossEntry` tuples ``(name, weight, params, entry_path)``
    with ``.gather``."""
    if not isinstance(config_list, list):
        raise ConfigError(f"{path} must be a list of loss entries (`- CELoss: {{weight: 1.0}}`), "
                          f"got a {type(config_list).__name__}")
    if not config_list:
        raise ConfigError(f"{path} is an empty list; name at least one loss")
    out = []
    for i, entry in enumerate(config_list):
        entry_path = f"{path}[{i}]"
        name, weight, params, gather = split_entry(entry, entry_path)
        try:
            cls = get_loss(name)
        except ConfigError as exc:
            raise ConfigError(f"{entry_path}.{name}: {exc}") from None
        check_params(cls, params, f"{entry_path}.{name}")
        out.append(LossEntry(name, weight, params, entry_path, gather))
    return out


def validate_head_config(head_cfg, path="Arch.Head"):
    """Validate an ``Arch.Head`` mapping ``{name: X, **params}``."""
    if not isinstance(head_cfg, dict) or "name" not in head_cfg:
        raise ConfigError(f"{path} must be a mapping with a `name` (e.g. ArcMargin), got {head_cfg!r}")
    name = head_cfg["name"]
    try:
        cls = get_head(name)
    except ConfigError as exc:
        raise ConfigError(f"{path}.name: {exc}") from None
    check_params(cls, {k: v for k, v in head_cfg.items() if k != "name"}, path)
    return cls


def validate_config(cfg):
    """Validate the loss sections (``Loss``, ``UnLabelLoss``) and a registered ``Arch.Head`` of a config."""
    for section in ("Loss", "UnLabelLoss"):
        sec = cfg.get(section)
        if sec is None:
            continue
        if not isinstance(sec, dict):
            raise ConfigError(f"{section} must be a mapping with Train and/or Eval lists, got {sec!r}")
        for phase in ("Train", "Eval"):
            if sec.get(phase) is not None:
                validate_loss_list(sec[phase], f"{section}.{phase}")
    arch = cfg.get("Arch")
    if isinstance(arch, dict) and isinstance(arch.get("Head"), dict):
        name = arch["Head"].get("name")
        if isinstance(name, str) and (is_head(name) or not is_loss(name)):
            validate_head_config(arch["Head"], "Arch.Head")
