"""Name -> class registry for losses and heads.

Configs name losses by PaddleClas class name (``TripletAngularMarginLoss``, ``CELoss``, ...). A class joins
the registry through :func:`register_loss` / :func:`register_head`; third-party packages add theirs through
the entry-point group ``paddle_losses.losses`` (or ``paddle_losses.heads``), whose entries may point at a
class (registered under the entry-point name) or at a module (imported, so its decorators run).

Lookups never ``eval`` anything: an unknown name raises :class:`~paddle_losses.errors.ConfigError` listing
the closest registered names.
"""
import fnmatch
import importlib
import inspect
import warnings
from importlib import metadata

from ._suggest import did_you_mean
from .errors import ConfigError, ConfigWarning

LOSS_ENTRY_POINT_GROUP = "paddle_losses.losses"
HEAD_ENTRY_POINT_GROUP = "paddle_losses.heads"

_LOSSES = {}
_HEADS = {}
_BUILTINS_LOADED = False
_PLUGINS_LOADED = False


def _register(table, kind, cls, name):
    name = name or cls.__name__
    if not inspect.isclass(cls):
        raise TypeError(f"register_{kind} expects a class, got {cls!r}")
    if name != cls.__name__:
        # PaddleClas optimizers select loss parameters with `scope: <ClassName>`, which matches
        # type(layer).__name__; an alias under another name would silently escape its optimizer.
        raise ValueError(
            f"{kind} {cls.__qualname__} would be registered as {name!r}; the registered name must equal "
            f"the class name so that optimizer scopes and checkpoints keep working")
    old = table.get(name)
    if old is not None and old is not cls:
        raise ValueError(f"{kind} name {name!r} is already registered by {old.__module__}.{old.__qualname__}")
    table[name] = cls
    return cls


def register_loss(cls=None, *, name=None):
    """Class decorator: make ``cls`` available to configs under its class name."""
    if cls is None:
        return lambda c: _register(_LOSSES, "loss", c, name)
    return _register(_LOSSES, "loss", cls, name)


def register_head(cls=None, *, name=None):
    """Class decorator for heads (margin heads, FC) that ``Arch.Head`` names."""
    if cls is None:
        return lambda c: _register(_HEADS, "head", c, name)
    return _register(_HEADS, "head", cls, name)


def _load_builtins():
    global _BUILTINS_LOADED
    if not _BUILTINS_LOADED:
        _BUILTINS_LOADED = True
        importlib.import_module("paddle_losses.losses")
        importlib.import_module("paddle_losses.heads")


def _entry_points(group):
    eps = metadata.entry_points()
    if hasattr(eps, "select"):
        return list(eps.select(group=group))
    return list(eps.get(group, []))  # Python < 3.10


def load_plugins(reload=False):
    """Import the loss/head plugins declared by installed distributions (entry points).

    Called automatically on the first lookup; ``reload=True`` rescans (after installing a plugin at run
    time). A plugin that fails to import is reported as a warning and skipped, so one broken plugin does
    not take the registry down.
    """
    global _PLUGINS_LOADED
    if _PLUGINS_LOADED and not reload:
        return
    _PLUGINS_LOADED = True
    for group, table, kind in ((LOSS_ENTRY_POINT_GROUP, _LOSSES, "loss"),
                               (HEAD_ENTRY_POINT_GROUP, _HEADS, "head")):
        for ep in _entry_points(group):
            try:
                obj = ep.load()
            except Exception as exc:  # noqa: BLE001 - any plugin failure must not break the registry
                warnings.warn(f"paddle_losses plugin {ep.name!r} ({ep.value}) failed to load: {exc}",
                              ConfigWarning, stacklevel=2)
                continue
            if inspect.isclass(obj) and table.get(ep.name) is not obj:
                _register(table, kind, obj, ep.name)


def _ensure_loaded():
    _load_builtins()
    load_plugins()


def _lookup(table, kind, name):
    _ensure_loaded()
    if not isinstance(name, str):
        raise ConfigError(f"a {kind} name must be a string, got {type(name).__name__} {name!r}")
    try:
        return table[name]
    except KeyError:
        pass
    hint = did_you_mean(name, table)
    raise ConfigError(
        f"{kind} {name!r} is not registered.{hint} "
        f"Run `paddle-losses list` to see all {len(table)} registered {kind}es; names are PaddleClas class "
        f"names and are case-sensitive.")


def get_loss(name):
    """Return the loss class registered under ``name`` (a PaddleClas class name)."""
    return _lookup(_LOSSES, "loss", name)


def get_head(name):
    """Return the head class registered under ``name`` (``ArcMargin``, ``CosMargin``, ``FC``, ...)."""
    return _lookup(_HEADS, "head", name)


def list_losses(pattern="*"):
    """Sorted names of registered losses matching the fnmatch ``pattern`` (case-sensitive)."""
    _ensure_loaded()
    return sorted(n for n in _LOSSES if fnmatch.fnmatchcase(n, pattern))


def list_heads(pattern="*"):
    """Sorted names of registered heads matching the fnmatch ``pattern``."""
    _ensure_loaded()
    return sorted(n for n in _HEADS if fnmatch.fnmatchcase(n, pattern))


# A fork that already replaced PaddleClas's eval() with a dict lookup can use these two names.
get = get_loss
names = list_losses


def is_loss(name):
    _ensure_loaded()
    return name in _LOSSES


def is_head(name):
    _ensure_loaded()
    return name in _HEADS
