"""One registry for every named part a config can select.

A config selects parts by name: ``Loss.Train: [{CELoss: ...}]``, ``Arch.Head.name: ArcMargin``,
``Arch.Neck.name: BNNeck``, ``miner: {name: BatchHardMiner}``, ``sampler.name: PKSampler``,
``Optimizer.lr.name: Cosine``, ... Each kind of part has one :class:`Registry`; ``kinds()`` lists them and
``registry(kind)`` returns one::

    from paddle_losses.registry import kinds, registry
    kinds()                                  # ('loss', 'head', 'miner', 'distance', 'reducer', ...)
    registry("neck").names()                 # ['BNNeck', 'FC']
    registry("miner").get("BatchHardMiner")  # the class
    registry("loss").register(MyLoss)        # or as a decorator: @registry("loss").register

Every kind behaves the same way:

* an unknown name is a :class:`~paddle_losses.errors.ConfigError` listing the closest registered names;
* registering a second, different object under a taken name is an error (re-registering the same object
  is a no-op, so a module may be imported twice);
* installed distributions add parts through the entry-point group ``paddle_losses.<kind>s``
  (``paddle_losses.losses``, ``paddle_losses.miners``, ``paddle_losses.lrs``, ...), loaded on the first
  lookup of that kind. An entry point may name a class or function (registered under the entry point's
  name) or a module (imported, so that its ``register`` decorators run). A plugin that fails to import is
  reported as a :class:`~paddle_losses.errors.ConfigWarning` and skipped;
* :meth:`Registry.build` validates a config mapping against the part's signature before calling it (see
  :mod:`paddle_losses.validation`), so every error names the config path.

Losses and heads keep a rule of their own: the registered name must equal the class name, because
PaddleClas optimizers select parameters with ``scope: <ClassName>`` and checkpoints are keyed by it.

Lookups never ``eval`` anything.
"""
import fnmatch
import importlib
import inspect
import warnings
from importlib import metadata

from ._suggest import did_you_mean
from .errors import ConfigError, ConfigWarning


class Registry:
    """Name -> class (or factory function) table of one kind of part.

    Args:
        kind: the kind's name (``"loss"``, ``"neck"``, ...), used in messages.
        builtins: modules whose import registers the built-in parts; imported on the first lookup.
        plural: plural of ``kind`` for messages and the entry-point group (default ``kind + "s"``).
        name_is_class_name: require ``name == obj.__name__`` (losses and heads).
        classes_only: refuse functions (losses and heads are layers).
    """

    def __init__(self, kind, builtins=(), plural=None, name_is_class_name=False, classes_only=False):
        self.kind = kind
        self.plural = plural or kind + "s"
        self.entry_point_group = f"paddle_losses.{self.plural}"
        self._builtins = tuple(builtins)
        self._name_is_class_name = name_is_class_name
        self._classes_only = classes_only
        self._table = {}
        self._builtins_loaded = False
        self._plugins_loaded = False

    def __repr__(self):
        return f"Registry({self.kind!r}, {len(self._table)} registered)"

    # ------------------------------------------------------------------ registering
    def register(self, obj=None, name=None):
        """Register ``obj`` (a class, or a factory function where the kind allows it) under ``name``
        (default: its ``__name__``); returns ``obj``, so it works as a decorator, with or without
        ``name=``."""
        if obj is None:
            return lambda o: self.register(o, name)
        if not (inspect.isclass(obj) or (callable(obj) and not self._classes_only)):
            expected = "a class" if self._classes_only else "a class or function"
            raise TypeError(f"registering a {self.kind} expects {expected}, got {obj!r}")
        name = name or obj.__name__
        if not isinstance(name, str) or not name:
            raise TypeError(f"a {self.kind} name must be a non-empty string, got {name!r}")
        if self._name_is_class_name and name != obj.__name__:
            raise ValueError(
                f"{self.kind} {obj.__qualname__} would be registered as {name!r}; the registered name must "
                f"equal the class name so that optimizer scopes and checkpoints keep working")
        old = self._table.get(name)
        if old is not None and old is not obj:
            raise ValueError(f"{self.kind} name {name!r} is already registered by "
                             f"{old.__module__}.{old.__qualname__}; choose another name")
        self._table[name] = obj
        return obj

    # ------------------------------------------------------------------ loading
    def _ensure_loaded(self):
        if not self._builtins_loaded:
            self._builtins_loaded = True
            for module in self._builtins:
                importlib.import_module(module)
        if not self._plugins_loaded:
            self.load_plugins()

    def load_plugins(self, reload=False):
        """Load the parts that installed distributions declare in ``paddle_losses.<kind>s``.

        Runs on the first lookup; ``reload=True`` rescans after a plugin was installed at run time.
        """
        if self._plugins_loaded and not reload:
            return
        self._plugins_loaded = True
        for ep in _entry_points(self.entry_point_group):
            try:
                obj = ep.load()
            except Exception as exc:  # noqa: BLE001 - one broken plugin must not take the registry down
                warnings.warn(f"paddle_losses {self.kind} plugin {ep.name!r} ({ep.value}) failed to load: "
                              f"{exc}", ConfigWarning, stacklevel=3)
                continue
            if inspect.ismodule(obj) or self._table.get(ep.name) is obj:
                continue
            self.register(obj, ep.name)

    # ------------------------------------------------------------------ lookups
    def names(self, pattern=None):
        """Sorted registered names, filtered by an fnmatch ``pattern`` (case-sensitive) when given."""
        self._ensure_loaded()
        return sorted(n for n in self._table if pattern is None or fnmatch.fnmatchcase(n, pattern))

    def __contains__(self, name):
        self._ensure_loaded()
        return isinstance(name, str) and name in self._table

    def __iter__(self):
        return iter(self.names())

    def __len__(self):
        self._ensure_loaded()
        return len(self._table)

    def get(self, name, path=None):
        """The part registered under ``name``; ``path`` (a config path) prefixes the error message."""
        self._ensure_loaded()
        where = f"{path}: " if path else ""
        if not isinstance(name, str):
            raise ConfigError(f"{where}a {self.kind} name must be a string, got {type(name).__name__} {name!r}")
        try:
            return self._table[name]
        except KeyError:
            pass
        known = sorted(self._table)
        listing = (f" Registered {self.plural}: {', '.join(known)}." if len(known) <= 12 else
                   f" Run `paddle-losses list --kind {self.kind}` to see all {len(known)} registered "
                   f"{self.plural}.")
        raise ConfigError(f"{where}{self.kind} {name!r} is not registered.{did_you_mean(name, known)}"
                          f"{listing} Names are case-sensitive.")

    def build(self, name, params=None, path=None, **injected):
        """Validate ``params`` against the part's signature and call it: ``part(**injected, **params)``.

        ``injected`` are the arguments the caller supplies (a dataset, the parameters to optimise); a
        config may not set them. Errors are ConfigErrors that start with ``path``.
        """
        from .validation import check_params

        path = path or self.kind
        part = self.get(name, f"{path}.name" if path else None)
        params = dict(params or {})
        check_params(part, params, path, injected=tuple(injected))
        try:
            return part(**injected, **params)
        except ConfigError as exc:
            raise ConfigError(str(exc) if str(exc).startswith(path) else f"{path}: {exc}") from None
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{path}: {exc}") from None


    def from_spec(self, spec, path=None, instance_of=None):
        """A part from a config value: a name, a ``{"name": ..., **params}`` mapping, or an object that is
        already an instance of ``instance_of`` (returned as is). Errors are ConfigErrors naming ``path``."""
        path = path or self.kind
        if instance_of is not None and isinstance(spec, instance_of):
            return spec
        if isinstance(spec, str):
            spec = {"name": spec}
        if not isinstance(spec, dict) or "name" not in spec:
            raise ConfigError(f"{path}: a {self.kind} is a name or a mapping with a 'name' (one of "
                              f"{', '.join(self.names())}), got {spec!r}")
        return self.build(spec["name"], {k: v for k, v in spec.items() if k != "name"}, path)


def _entry_points(group):
    eps = metadata.entry_points()
    if hasattr(eps, "select"):
        return list(eps.select(group=group))
    return list(eps.get(group, []))  # Python < 3.10


_ENGINE = "paddle_losses.engine."
_REGISTRIES = {r.kind: r for r in (
    Registry("loss", ["paddle_losses.losses"], plural="losses", name_is_class_name=True, classes_only=True),
    Registry("head", ["paddle_losses.heads"], name_is_class_name=True, classes_only=True),
    Registry("miner", ["paddle_losses.functional.mining"]),
    Registry("distance", ["paddle_losses.functional.distances"]),
    Registry("reducer", ["paddle_losses.functional.reduction"]),
    Registry("backbone", [_ENGINE + "model"]),
    Registry("neck", [_ENGINE + "model"]),
    Registry("dataset", [_ENGINE + "data"]),
    Registry("sampler", [_ENGINE + "samplers"]),
    Registry("metric", [_ENGINE + "metrics"]),
    Registry("transform", [_ENGINE + "transforms"]),
    Registry("optimizer", [_ENGINE + "optim"]),
    Registry("lr", [_ENGINE + "optim"]),
)}


def kinds():
    """The kinds of registered parts, in a fixed order."""
    return tuple(_REGISTRIES)


def registry(kind):
    """The :class:`Registry` of ``kind`` (one of :func:`kinds`)."""
    try:
        return _REGISTRIES[kind]
    except (KeyError, TypeError):
        raise ConfigError(f"unknown kind of part {kind!r}.{did_you_mean(str(kind), _REGISTRIES)} "
                          f"Kinds: {', '.join(_REGISTRIES)}") from None


def load_plugins(reload=False):
    """Load the entry-point plugins of every kind (each kind also loads its own on first lookup)."""
    for reg in _REGISTRIES.values():
        reg.load_plugins(reload=reload)


# ---------------------------------------------------------------------- the loss/head API of 0.1
def register_loss(cls=None, *, name=None):
    """Class decorator: make ``cls`` available to configs under its class name."""
    return _REGISTRIES["loss"].register(cls, name)


def register_head(cls=None, *, name=None):
    """Class decorator for heads (margin heads, FC) that ``Arch.Head`` names."""
    return _REGISTRIES["head"].register(cls, name)


def get_loss(name):
    """Return the loss class registered under ``name`` (a PaddleClas class name)."""
    return _REGISTRIES["loss"].get(name)


def get_head(name):
    """Return the head class registered under ``name`` (``ArcMargin``, ``CosMargin``, ``FC``, ...)."""
    return _REGISTRIES["head"].get(name)


def list_losses(pattern="*"):
    """Sorted names of registered losses matching the fnmatch ``pattern`` (case-sensitive)."""
    return _REGISTRIES["loss"].names(pattern)


def list_heads(pattern="*"):
    """Sorted names of registered heads matching the fnmatch ``pattern``."""
    return _REGISTRIES["head"].names(pattern)


def is_loss(name):
    return name in _REGISTRIES["loss"]


def is_head(name):
    return name in _REGISTRIES["head"]


# A fork that already replaced PaddleClas's eval() with a dict lookup can use these two names.
get = get_loss
names = list_losses
