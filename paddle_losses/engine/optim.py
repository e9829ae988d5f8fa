"""Optimizers and learning-rate schedules from PaddleClas's ``Optimizer`` section.

Two forms, as in PaddleClas:

* a mapping ``{name: Momentum, momentum: 0.9, lr: {...}, regularizer: {name: L2, coeff: 1e-4}}``, which
  optimises everything (``scope: all``: the model **and** the loss's parameters, e.g. CenterLoss centers);
* a list ``[{Adam: {scope: RecModel, lr: {...}}}, {SGD: {scope: CenterLoss, lr: {...}}}]``.

Scope rules over ``[model, loss]``: ``all`` -> both; a name ending in ``Loss`` -> the loss sublayers whose
class name equals it; otherwise the model itself if its class name matches, else the model attribute of
that name (``backbone``, ``neck``, ``head``), else every sublayer whose structured name fully matches the
scope as a regular expression.

LR schedules (``lr.name``): ``Cosine`` (``eta_min``), ``Linear`` (``end_lr``, ``power``), ``Step``
(``step_size``, ``gamma``), ``Piecewise`` (``decay_epochs``, ``values``), ``MultiStepDecay``
(``milestones``, ``gamma``), ``ConstLR``, ``ReduceOnPlateau``; all take ``learning_rate``,
``warmup_epoch`` (linear warm-up from ``warmup_start_lr``), ``by_epoch`` (default False: epoch counts are
converted to iterations and the schedule steps every update) and ``last_epoch``.
"""
import re
import warnings

import paddle
from paddle.optimizer import lr as lr_mod

from ..errors import ConfigError, ConfigWarning


class Constant(lr_mod.LRScheduler):
    """A constant learning rate (PaddleClas's ``ConstLR``; logged as ``lr(Constant)``)."""

    def __init__(self, learning_rate, last_epoch=-1):
        super().__init__(learning_rate, last_epoch)

    def get_lr(self):
        return self.base_lr


class LinearWarmup(lr_mod.LinearWarmup):
    """Paddle's ``LinearWarmup`` (same schedule, same state dict), restored without a false warning.

    Paddle's version saves the wrapped schedule under its own ``LinearWarmup_LR`` key, then on load hands
    that key to the base class, which counts it as "unused values in state_dict" and warns on every exact
    resume. This one loads the base keys and the wrapped schedule's separately.
    """

    def set_state_dict(self, state_dict):
        own = {k: v for k, v in state_dict.items() if k != "LinearWarmup_LR"}
        lr_mod.LRScheduler.set_state_dict(self, own)
        if isinstance(self.learning_rate, lr_mod.LRScheduler):
            self.learning_rate.set_state_dict(state_dict["LinearWarmup_LR"])


_COMMON = ("name", "learning_rate", "warmup_epoch", "warmup_start_lr", "last_epoch", "by_epoch", "epochs",
           "step_each_epoch", "verbose")


def build_lr(cfg, epochs, step_each_epoch, path="Optimizer.lr"):
    """Build a Paddle LR scheduler from an ``lr`` mapping; the result carries ``by_epoch``."""
    if isinstance(cfg, (int, float)) and not isinstance(cfg, bool):
        cfg = {"name": "ConstLR", "learning_rate": cfg}
    if not isinstance(cfg, dict) or "name" not in cfg:
        raise ConfigError(f"{path} must be a mapping with a `name` (Cosine, Piecewise, MultiStepDecay, Step, "
                          f"Linear, ConstLR, ReduceOnPlateau) and a learning_rate; got {cfg!r}")
    name = cfg["name"]
    if "learning_rate" not in cfg:
        raise ConfigError(f"{path}.learning_rate is missing")
    base = float(cfg["learning_rate"])
    by_epoch = bool(cfg.get("by_epoch", False))
    last_epoch = int(cfg.get("last_epoch", -1))
    warmup_epoch = cfg.get("warmup_epoch", 0) or 0
    if warmup_epoch >= epochs and warmup_epoch > 0:
        warnings.warn(f"{path}.warmup_epoch {warmup_epoch} >= epochs {epochs}; clamped to {epochs}",
                      ConfigWarning, stacklevel=2)
        warmup_epoch = epochs
    unit = 1 if by_epoch else step_each_epoch
    warmup_steps = int(round(warmup_epoch * unit))
    extra = {k: v for k, v in cfg.items() if k not in _COMMON}

    def need(key, default=None):
        if key in extra:
            return extra.pop(key)
        if default is None:
            raise ConfigError(f"{path}.{key} is missing for the {name} schedule")
        return default

    if name == "Cosine":
        t_max = max(1, int(round((epochs - warmup_epoch) * unit)))
        sched = lr_mod.CosineAnnealingDecay(base, t_max, eta_min=float(need("eta_min", 0.0)), last_epoch=last_epoch)
    elif name == "Linear":
        steps = max(1, int(round((epochs - warmup_epoch) * unit)))
        sched = lr_mod.PolynomialDecay(base, steps, end_lr=float(need("end_lr", 0.0)),
                                       power=float(need("power", 1.0)), cycle=bool(need("cycle", False)),
                                       last_epoch=last_epoch)
    elif name == "Step":
        sched = lr_mod.StepDecay(base, step_size=int(round(need("step_size") * unit)),
                                 gamma=float(need("gamma", 0.1)), last_epoch=last_epoch)
    elif name == "Piecewise":
        decay_epochs = extra.pop("decay_epochs", None)
        if decay_epochs is None:
            decay_epochs = list(range(30, int(epochs), 30))  # PaddleClas's default: x0.1 every 30 epochs
        values = extra.pop("values", None)
        if values is None:
            values = [base * (0.1 ** i) for i in range(len(decay_epochs) + 1)]
        if len(values) != len(decay_epochs) + 1:
            raise ConfigError(f"{path}: Piecewise needs len(values) == len(decay_epochs) + 1, got "
                              f"{len(values)} values for {len(decay_epochs)} boundaries")
        sched = lr_mod.PiecewiseDecay([int(round(e * unit)) for e in decay_epochs], [float(v) for v in values],
                                      last_epoch=last_epoch)
    elif name == "MultiStepDecay":
        sched = lr_mod.MultiStepDecay(base, [int(round(m * unit)) for m in need("milestones")],
                                      gamma=float(need("gamma", 0.1)), last_epoch=last_epoch)
    elif name == "ConstLR":
        sched = Constant(base, last_epoch=last_epoch)
    elif name == "ReduceOnPlateau":
        kw = {k: extra.pop(k) for k in list(extra) if k in (
            "mode", "factor", "patience", "threshold", "threshold_mode", "cooldown", "min_lr", "epsilon")}
        sched = lr_mod.ReduceOnPlateau(base, **kw)
        sched.by_epoch = True
        sched.on_plateau = True
        _warn_unused(extra, path)
        return sched
    else:
        raise ConfigError(f"{path}.name: unknown LR schedule {name!r}; available: Cosine, Linear, Step, Piecewise, "
                          f"MultiStepDecay, ConstLR, ReduceOnPlateau")
    _warn_unused(extra, path)
    if warmup_steps > 0:
        end = sched.last_lr if name == "Piecewise" else base
        sched = LinearWarmup(sched, warmup_steps, start_lr=float(cfg.get("warmup_start_lr", 0.0)),
                             end_lr=float(end), last_epoch=last_epoch)
    sched.by_epoch = by_epoch
    sched.on_plateau = False
    return sched


def _warn_unused(extra, path):
    if extra:
        warnings.warn(f"{path}: keys {sorted(extra)} are not used by this schedule", ConfigWarning, stacklevel=3)


# ----------------------------------------------------------------------------------------- scopes
def _named_params(layer):
    return [(n, p) for n, p in layer.named_parameters() if not p.stop_gradient]


def select_scope(scope, model, loss):
    """``[(structured name, parameter)]`` selected by ``scope`` (see the module docstring)."""
    out = []
    if scope == "all":
        for prefix, layer in (("", model), ("loss.", loss)):
            if layer is not None:
                out += [(prefix + n, p) for n, p in _named_params(layer)]
        return out
    if scope.endswith("Loss"):
        if loss is not None:
            for name, sub in loss.named_sublayers(include_self=True):
                if type(sub).__name__ == scope:
                    out += [(f"loss.{name}.{n}", p) for n, p in _named_params(sub)]
        return out
    if type(model).__name__ == scope:
        return _named_params(model)
    attr = getattr(model, scope, None)
    if isinstance(attr, paddle.nn.Layer):
        return [(f"{scope}.{n}", p) for n, p in _named_params(attr)]
    pattern = re.compile(scope)
    seen = set()
    for name, sub in model.named_sublayers():
        if pattern.fullmatch(name):
            for n, p in _named_params(sub):
                if id(p) not in seen:
                    seen.add(id(p))
                    out.append((f"{name}.{n}", p))
    return out


# ----------------------------------------------------------------------------------------- optimizers
_OPTIMIZERS = ("Momentum", "SGD", "Adam", "AdamW", "RMSProp")


def _regularizer(cfg, path):
    reg = cfg.pop("regularizer", None)
    wd = cfg.pop("weight_decay", None)
    if reg is not None:
        if wd is not None:
            warnings.warn(f"{path}: both regularizer and weight_decay are set; the regularizer is used",
                          ConfigWarning, stacklevel=3)
        if not isinstance(reg, dict) or reg.get("name") not in ("L1", "L2"):
            raise ConfigError(f"{path}.regularizer must be {{name: L2|L1, coeff: float}}, got {reg!r}")
        decay = paddle.regularizer.L2Decay if reg["name"] == "L2" else paddle.regularizer.L1Decay
        return decay(float(reg.get("coeff", 0.0)))
    return wd


def _make_optimizer(name, named, sched, cfg, path):
    cfg = dict(cfg)
    cfg.pop("scope", None)
    cfg.pop("lr", None)
    cfg.pop("multi_precision", None)  # CPU: float32 master weights are the weights
    clip = cfg.pop("clip_norm", None)
    grad_clip = paddle.nn.ClipGradByNorm(float(clip)) if clip is not None else None
    no_wd_names = str(cfg.pop("no_weight_decay_name", "") or "").split()
    one_dim_no_wd = bool(cfg.pop("one_dim_param_no_weight_decay", False))

    def decays(pname, p):
        return not (any(nd in pname for nd in no_wd_names) or (one_dim_no_wd and len(p.shape) == 1))

    params = [p for _, p in named]
    if name == "AdamW":
        wd = cfg.pop("weight_decay", 0.01)
        reg = cfg.pop("regularizer", None)
        if reg is not None:
            wd = float(reg.get("coeff", wd))
        no_decay = {p.name for n, p in named if not decays(n, p)}
        return paddle.optimizer.AdamW(
            learning_rate=sched, parameters=params, weight_decay=float(wd or 0.0), grad_clip=grad_clip,
            beta1=float(cfg.pop("beta1", 0.9)), beta2=float(cfg.pop("beta2", 0.999)),
            epsilon=float(cfg.pop("epsilon", 1e-8)),
            apply_decay_param_fun=(lambda n: n not in no_decay) if no_decay else None), cfg
    weight_decay = _regularizer(cfg, path)
    if weight_decay is not None and (no_wd_names or one_dim_no_wd):
        decay_p = [p for n, p in named if decays(n, p)]
        keep_p = [p for n, p in named if not decays(n, p)]
        params = [{"params": decay_p}] + ([{"params": keep_p, "weight_decay": 0.0}] if keep_p else [])
    common = dict(learning_rate=sched, parameters=params, weight_decay=weight_decay, grad_clip=grad_clip)
    if name == "Momentum":
        return paddle.optimizer.Momentum(momentum=float(cfg.pop("momentum", 0.9)),
                                         use_nesterov=bool(cfg.pop("use_nesterov", False)), **common), cfg
    if name == "SGD":
        return paddle.optimizer.SGD(**common), cfg
    if name == "Adam":
        return paddle.optimizer.Adam(beta1=float(cfg.pop("beta1", 0.9)), beta2=float(cfg.pop("beta2", 0.999)),
                                     epsilon=float(cfg.pop("epsilon", 1e-8)),
                                     lazy_mode=bool(cfg.pop("lazy_mode", False)), **common), cfg
    if name == "RMSProp":
        return paddle.optimizer.RMSProp(rho=float(cfg.pop("rho", 0.95)), epsilon=float(cfg.pop("epsilon", 1e-6)),
                                        momentum=float(cfg.pop("momentum", 0.0)), **common), cfg
    raise ConfigError(f"{path}: unknown optimizer {name!r}; available: {', '.join(_OPTIMIZERS)}")


def _entries(opt_cfg):
    if isinstance(opt_cfg, dict):
        if "name" not in opt_cfg:
            raise ConfigError("Optimizer must have a `name` (Momentum, SGD, Adam, AdamW, RMSProp) or be a list of "
                              "{OptimizerName: {scope: ..., lr: ...}} entries")
        cfg = {k: v for k, v in opt_cfg.items() if k != "name"}
        cfg.setdefault("scope", "all")
        return [(opt_cfg["name"], cfg, "Optimizer")]
    if isinstance(opt_cfg, list):
        out = []
        for i, entry in enumerate(opt_cfg):
            if not isinstance(entry, dict) or len(entry) != 1:
                raise ConfigError(f"Optimizer[{i}] must be a one-key mapping {{Momentum: {{scope: ..., lr: ...}}}}")
            name, cfg = next(iter(entry.items()))
            cfg = dict(cfg or {})
            cfg.setdefault("scope", "all")
            out.append((name, cfg, f"Optimizer[{i}].{name}"))
        return out
    raise ConfigError(f"Optimizer must be a mapping or a list, got {type(opt_cfg).__name__}")


def build_optimizer(opt_cfg, epochs, step_each_epoch, model, loss):
    """Return ``(optimizers, schedulers)`` lists (one per entry; entries whose scope is empty are skipped)."""
    optimizers, schedulers = [], []
    for name, cfg, path in _entries(opt_cfg):
        named = select_scope(str(cfg["scope"]), model, loss)
        if not named:
            warnings.warn(f"{path}: scope {cfg['scope']!r} selects no trainable parameters; entry skipped",
                          ConfigWarning, stacklevel=2)
            continue
        sched = build_lr(cfg.get("lr"), epochs, step_each_epoch, f"{path}.lr")
        opt, rest = _make_optimizer(name, named, sched, cfg, path)
        if rest:
            warnings.warn(f"{path}: keys {sorted(rest)} are not used by {name}", ConfigWarning, stacklevel=2)
        optimizers.append(opt)
        schedulers.append(sched)
    if not optimizers:
        raise ConfigError("Optimizer: no entry selects any trainable parameter")
    return optimizers, schedulers
