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
from typing import List, Optional

import paddle
from paddle.optimizer import lr as lr_mod

from ..errors import ConfigError, ConfigWarning
from ..registry import registry
from ..validation import constructor_params


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


class Schedule:
    """What an ``lr`` factory receives besides its own parameters: the base rate and the run's length.

    ``steps(epochs)`` converts a count of epochs into scheduler steps (iterations, or epochs when the
    schedule steps ``by_epoch``); ``decay_epochs`` is the number of epochs after the warm-up.
    """

    def __init__(self, learning_rate, epochs, warmup_epoch, unit, last_epoch):
        self.learning_rate, self.epochs, self.warmup_epoch = learning_rate, epochs, warmup_epoch
        self.unit, self.last_epoch = unit, last_epoch

    def steps(self, epochs):
        return int(round(epochs * self.unit))

    @property
    def decay_steps(self):
        return max(1, self.steps(self.epochs - self.warmup_epoch))


# Each LR factory takes the Schedule (injected) and its own config keys, and returns a Paddle scheduler.
_lr = registry("lr").register


@_lr
def Cosine(schedule, eta_min: float = 0.0):
    """Cosine annealing from ``learning_rate`` to ``eta_min`` over the epochs after the warm-up."""
    return lr_mod.CosineAnnealingDecay(schedule.learning_rate, schedule.decay_steps, eta_min=float(eta_min),
                                       last_epoch=schedule.last_epoch)


@_lr
def Linear(schedule, end_lr: float = 0.0, power: float = 1.0, cycle: bool = False):
    """Polynomial decay to ``end_lr`` (``power`` 1: linear) over the epochs after the warm-up."""
    return lr_mod.PolynomialDecay(schedule.learning_rate, schedule.decay_steps, end_lr=float(end_lr),
                                  power=float(power), cycle=bool(cycle), last_epoch=schedule.last_epoch)


@_lr
def Step(schedule, step_size: float, gamma: float = 0.1):
    """Multiply by ``gamma`` every ``step_size`` epochs."""
    return lr_mod.StepDecay(schedule.learning_rate, step_size=schedule.steps(step_size), gamma=float(gamma),
                            last_epoch=schedule.last_epoch)


@_lr
def Piecewise(schedule, decay_epochs: Optional[List[float]] = None, values: Optional[List[float]] = None):
    """``values[i]`` from ``decay_epochs[i-1]`` on; PaddleClas's default: x0.1 every 30 epochs."""
    if decay_epochs is None:
        decay_epochs = list(range(30, int(schedule.epochs), 30))
    if values is None:
        values = [schedule.learning_rate * (0.1 ** i) for i in range(len(decay_epochs) + 1)]
    if len(values) != len(decay_epochs) + 1:
        raise ConfigError(f"Piecewise needs len(values) == len(decay_epochs) + 1, got {len(values)} values for "
                          f"{len(decay_epochs)} boundaries")
    return lr_mod.PiecewiseDecay([schedule.steps(e) for e in decay_epochs], [float(v) for v in values],
                                 last_epoch=schedule.last_epoch)


@_lr
def MultiStepDecay(schedule, milestones: List[float], gamma: float = 0.1):
    """Multiply by ``gamma`` at each of the ``milestones`` (epochs)."""
    return lr_mod.MultiStepDecay(schedule.learning_rate, [schedule.steps(m) for m in milestones],
                                 gamma=float(gamma), last_epoch=schedule.last_epoch)


@_lr
def ConstLR(schedule):
    """A constant learning rate."""
    return Constant(schedule.learning_rate, last_epoch=schedule.last_epoch)


@_lr
def ReduceOnPlateau(schedule, mode: str = "min", factor: float = 0.1, patience: int = 10,
                    threshold: float = 1e-4, threshold_mode: str = "rel", cooldown: int = 0, min_lr: float = 0.0,
                    epsilon: float = 1e-8):
    """Multiply by ``factor`` when the evaluation metric has not improved for ``patience`` evaluations."""
    return lr_mod.ReduceOnPlateau(schedule.learning_rate, mode=mode, factor=factor, patience=patience,
                                  threshold=threshold, threshold_mode=threshold_mode, cooldown=cooldown,
                                  min_lr=min_lr, epsilon=epsilon)


def build_lr(cfg, epochs, step_each_epoch, path="Optimizer.lr"):
    """Build a Paddle LR scheduler from an ``lr`` mapping; the result carries ``by_epoch``.

    ``name`` selects a registered ``lr`` factory (``paddle-losses list --kind lr``); the keys every
    schedule takes (``learning_rate``, ``warmup_epoch``, ``warmup_start_lr``, ``by_epoch``, ``last_epoch``)
    are handled here, the others are validated against the factory's parameters.
    """
    if isinstance(cfg, (int, float)) and not isinstance(cfg, bool):
        cfg = {"name": "ConstLR", "learning_rate": cfg}
    if not isinstance(cfg, dict) or "name" not in cfg:
        raise ConfigError(f"{path} must be a mapping with a `name` ({', '.join(registry('lr').names())}) and a "
                          f"learning_rate; got {cfg!r}")
    name = cfg["name"]
    factory = registry("lr").get(name, f"{path}.name")
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
    schedule = Schedule(base, epochs, warmup_epoch, unit, last_epoch)
    sched = registry("lr").build(name, {k: v for k, v in cfg.items() if k not in _COMMON}, path, schedule=schedule)
    if factory is ReduceOnPlateau:
        sched.by_epoch = True
        sched.on_plateau = True
        return sched
    warmup_steps = int(round(warmup_epoch * unit))
    if warmup_steps > 0:
        end = sched.last_lr if factory is Piecewise else base
        sched = LinearWarmup(sched, warmup_steps, start_lr=float(cfg.get("warmup_start_lr", 0.0)),
                             end_lr=float(end), last_epoch=last_epoch)
    sched.by_epoch = by_epoch
    sched.on_plateau = False
    return sched


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
# Each optimizer factory takes the injected parameters, learning rate, weight decay and gradient clip, and
# its own config keys. Keys that PaddleClas configs carry for options Paddle's CPU optimizers do not have
# land in **ignored and are reported once.
_optimizer = registry("optimizer").register
_INJECTED = ("parameters", "learning_rate", "weight_decay", "grad_clip")


@_optimizer
def Momentum(parameters, learning_rate, weight_decay, grad_clip, momentum: float = 0.9,
             use_nesterov: bool = False, **ignored):
    """SGD with (Nesterov) momentum."""
    return paddle.optimizer.Momentum(learning_rate=learning_rate, parameters=parameters, weight_decay=weight_decay,
                                     grad_clip=grad_clip, momentum=float(momentum), use_nesterov=bool(use_nesterov))


@_optimizer
def SGD(parameters, learning_rate, weight_decay, grad_clip, **ignored):
    """Plain stochastic gradient descent."""
    return paddle.optimizer.SGD(learning_rate=learning_rate, parameters=parameters, weight_decay=weight_decay,
                                grad_clip=grad_clip)


@_optimizer
def Adam(parameters, learning_rate, weight_decay, grad_clip, beta1: float = 0.9, beta2: float = 0.999,
         epsilon: float = 1e-8, lazy_mode: bool = False, **ignored):
    """Adam (weight decay as an L1/L2 regularizer added to the gradient)."""
    return paddle.optimizer.Adam(learning_rate=learning_rate, parameters=parameters, weight_decay=weight_decay,
                                 grad_clip=grad_clip, beta1=float(beta1), beta2=float(beta2),
                                 epsilon=float(epsilon), lazy_mode=bool(lazy_mode))


@_optimizer
def AdamW(parameters, learning_rate, weight_decay, grad_clip, apply_decay_param_fun=None, beta1: float = 0.9,
          beta2: float = 0.999, epsilon: float = 1e-8, **ignored):
    """Adam with decoupled weight decay (``weight_decay`` default 0.01, or the regularizer's coeff)."""
    return paddle.optimizer.AdamW(learning_rate=learning_rate, parameters=parameters,
                                  weight_decay=float(weight_decay or 0.0), grad_clip=grad_clip,
                                  beta1=float(beta1), beta2=float(beta2), epsilon=float(epsilon),
                                  apply_decay_param_fun=apply_decay_param_fun)


@_optimizer
def RMSProp(parameters, learning_rate, weight_decay, grad_clip, rho: float = 0.95, epsilon: float = 1e-6,
            momentum: float = 0.0, **ignored):
    """RMSProp."""
    return paddle.optimizer.RMSProp(learning_rate=learning_rate, parameters=parameters, weight_decay=weight_decay,
                                    grad_clip=grad_clip, rho=float(rho), epsilon=float(epsilon),
                                    momentum=float(momentum))


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
    """``(optimizer, keys it ignored)`` for one ``Optimizer`` entry over the ``named`` parameters."""
    factory = registry("optimizer").get(name, f"{path}.name" if path == "Optimizer" else path)
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
    injected = {"parameters": params, "learning_rate": sched, "grad_clip": grad_clip}
    if factory is AdamW:
        wd = cfg.pop("weight_decay", 0.01)
        reg = cfg.pop("regularizer", None)
        if reg is not None:
            wd = float(reg.get("coeff", wd))
        no_decay = {p.name for n, p in named if not decays(n, p)}
        injected.update(weight_decay=wd, apply_decay_param_fun=(lambda n: n not in no_decay) if no_decay else None)
    else:
        weight_decay = _regularizer(cfg, path)
        if weight_decay is not None and (no_wd_names or one_dim_no_wd):
            decay_p = [p for n, p in named if decays(n, p)]
            keep_p = [p for n, p in named if not decays(n, p)]
            injected["parameters"] = [{"params": decay_p}] + (
                [{"params": keep_p, "weight_decay": 0.0}] if keep_p else [])
        injected["weight_decay"] = weight_decay
    # the factories take **ignored, so build() still refuses a misspelt key and passes the other extras on
    own, _ = constructor_params(factory)
    opt = registry("optimizer").build(name, cfg, path, **injected)
    return opt, {k: v for k, v in cfg.items() if k not in own}


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
