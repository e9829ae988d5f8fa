"""Use paddle_losses from a PaddleClas fork without editing PaddleClas.

How PaddleClas finds losses and heads, and so where the hooks go:

* ``ppcls/loss/__init__.py`` resolves each ``Loss.<list>`` name in its own module namespace, inside its
  ``build_loss``;
* that ``build_loss`` is imported by name (``from ppcls.loss import build_loss``) into every module that
  builds losses: the dynamic-graph ``Engine`` (``ppcls.engine.engine``), MetaBIN's trainer
  (``ppcls.engine.train.train_metabin``, lists ``Basic`` / ``MetaTrain`` / ``MetaTest``) and the
  static-graph program builder (``ppcls.static.program``); each such module holds its own reference;
* ``ppcls/arch/gears/__init__.py`` resolves ``Arch.Head.name`` (and necks) in its own module namespace,
  after checking the name against a fixed list, so a head is replaceable under a PaddleClas name.

Hooks:

* :func:`register_into` puts our classes into a namespace (``ppcls.loss``), so PaddleClas's own
  ``build_loss`` finds them by name;
* :func:`patch_build_loss` replaces the engine's ``build_loss`` with ours (validated configs, the
  ``loss_func`` LayerList, same state-dict keys and ``"loss"`` key). Entry keys of ours such as
  ``gather: true`` (a loss on the batch of every rank) need our builder (this hook or :func:`install`):
  PaddleClas's own ``build_loss`` passes every key but ``weight`` to the loss's constructor.

:func:`install` is the one call a fork needs (in its ``tools/train.py``, before ``Engine(...)``)::

    from paddle_losses.integrations import ppcls as pl_ppcls
    pl_ppcls.install()

It registers our losses into ``ppcls.loss`` and our heads into ``ppcls.arch.gears`` (so PaddleClas's own
lookups find ours), and replaces ``build_loss`` in ``ppcls.loss`` and in every loaded ``ppcls`` module that
imported it (so every training path builds with our validated builder; a module imported later imports the
replaced one). The order of imports does not matter: ``ppcls`` modules loaded before the call are rebound,
modules loaded after it import ours. The finer-grained :func:`register_into`, :func:`register_heads_into`
and :func:`patch_build_loss` remain.

Importing this module does not import PaddleClas (which pulls in cv2, sklearn, scipy); only calling a
function without passing the target module does.
"""
import importlib
import sys
import types

from ..registry import get_head, get_loss, list_heads, list_losses

ON_CONFLICT = ("overwrite", "keep", "error")
_ORIGINAL = "_paddle_losses_original_build_loss"


def _namespace(target):
    if isinstance(target, types.ModuleType):
        return vars(target)
    if isinstance(target, dict):
        return target
    raise TypeError(f"target must be a module or a dict namespace, got {type(target).__name__}")


def _register(ns, names, getter, on_conflict):
    if on_conflict not in ON_CONFLICT:
        raise ValueError(f"on_conflict must be one of {ON_CONFLICT}, got {on_conflict!r}")
    installed = []
    for name in names:
        cls = getter(name)
        existing = ns.get(name)
        if existing is not None and existing is not cls:
            if on_conflict == "keep":
                continue
            if on_conflict == "error":
                raise ValueError(f"{name!r} is already defined in the target namespace ({existing!r})")
        ns[name] = cls
        installed.append(name)
    return installed


def register_into(target=None, names=None, on_conflict="overwrite"):
    """Register our loss classes into ``target`` (a module such as ``ppcls.loss``, or a dict).

    Args:
        target: the namespace PaddleClas resolves names in; ``None`` imports ``ppcls.loss``.
        names: which losses (default: all registered, including plugins).
        on_conflict: what to do when the namespace already has a different object under a name:
            ``"overwrite"`` (default: our fixed implementation replaces PaddleClas's, same name and
            parameters), ``"keep"`` (leave PaddleClas's), ``"error"`` (raise).

    Returns:
        The list of names that now resolve to our classes.
    """
    if target is None:
        target = importlib.import_module("ppcls.loss")
    return _register(_namespace(target), names if names is not None else list_losses(), get_loss, on_conflict)


def register_heads_into(target=None, names=None, on_conflict="overwrite"):
    """Register our heads (ArcMargin, CosMargin, CircleMargin, AdaMargin, FC) into ``target``, the
    namespace PaddleClas resolves ``Arch.Head.name`` in (``None`` imports ``ppcls.arch.gears``).

    PaddleClas checks the head name against its own fixed list before the lookup, so only heads under a
    PaddleClas name are reachable this way. Same ``names`` / ``on_conflict`` / return value as
    :func:`register_into`.
    """
    if target is None:
        target = importlib.import_module("ppcls.arch.gears")
    return _register(_namespace(target), names if names is not None else list_heads(), get_head, on_conflict)


def _config_path_of(config_list):
    """``Loss.Eval`` (etc.) for a loss list handed over by a PaddleClas caller, found by identity in the
    caller's ``config`` / ``self.config``, so errors name the list that is wrong; ``Loss`` if not found."""
    frame = sys._getframe(2)
    for _ in range(3):
        if frame is None:
            break
        for value in list(frame.f_locals.values()):
            config = value if isinstance(value, dict) else getattr(value, "config", None)
            if not isinstance(config, dict):
                continue
            for top, section in config.items():
                if isinstance(section, dict):
                    for key, item in section.items():
                        if item is config_list:
                            return f"{top}.{key}"
        frame = frame.f_back
    return "Loss"


def _forks_builder():
    loss_module = sys.modules.get("ppcls.loss")
    original = getattr(loss_module, _ORIGINAL, None) or getattr(loss_module, "build_loss", None)
    return None if original is ppcls_build_loss else original


def ppcls_build_loss(config):
    """:func:`paddle_losses.build_loss` with PaddleClas's one-argument signature; errors name the config
    list it was given (``Loss.Train``, ``Loss.Eval``, ``Loss.MetaTrain``, ...).

    A list that names a loss we do not have but the fork defines in ``ppcls.loss`` (a fork's own loss) is
    built by the fork's builder instead, which finds our registered classes for the other names.
    """
    from ..combined import build_loss

    if config is None:
        return None
    if isinstance(config, list):
        ours = set(list_losses())
        names = [next(iter(e)) for e in config if isinstance(e, dict) and len(e) == 1]
        forks = vars(sys.modules["ppcls.loss"]) if "ppcls.loss" in sys.modules else {}
        if any(n not in ours and n in forks for n in names) and _forks_builder() is not None:
            return _forks_builder()(config)
    return build_loss(config, _config_path_of(config))


def _rebind_loaded(original, prefix="ppcls"):
    rebound = []
    for name, module in list(sys.modules.items()):
        if module is None or not (name == prefix or name.startswith(prefix + ".")):
            continue
        current = getattr(module, "build_loss", None)
        if current is not None and (current is original or current is ppcls_build_loss):
            if current is not ppcls_build_loss:
                module.build_loss = ppcls_build_loss
            rebound.append(name)
    return rebound


def patch_build_loss(engine_module=None):
    """Make PaddleClas build losses with :func:`paddle_losses.build_loss` (validated configs, the same
    ``loss_func`` LayerList, state-dict keys and ``"loss"`` key).

    Args:
        engine_module: patch only this module's ``build_loss`` name. ``None`` (default) patches
            ``ppcls.loss.build_loss`` itself (modules imported later get ours) and rebinds it in every
            loaded ``ppcls`` module that imported PaddleClas's (Engine, MetaBIN's trainer, the static
            program, ...).

    Returns:
        The previous (PaddleClas's) ``build_loss``, so the caller can restore it.
    """
    if engine_module is not None:
        previous = getattr(engine_module, "build_loss", None)
        engine_module.build_loss = ppcls_build_loss
        return previous
    loss_module = importlib.import_module("ppcls.loss")
    original = getattr(loss_module, _ORIGINAL, None) or loss_module.build_loss
    setattr(loss_module, _ORIGINAL, original)
    _rebind_loaded(original)
    return original


def install(on_conflict="overwrite"):
    """Hook paddle_losses into every PaddleClas training path, whatever was imported before.

    Registers our losses into ``ppcls.loss`` and our heads into ``ppcls.arch.gears`` (``on_conflict``
    as in :func:`register_into`), and rebinds ``build_loss`` everywhere (:func:`patch_build_loss`).

    Returns:
        ``{"losses": [...], "heads": [...], "build_loss": [...]}``: the loss and head names that now
        resolve to ours and the ``ppcls`` modules whose ``build_loss`` is ours.
    """
    losses = register_into(None, on_conflict=on_conflict)
    heads = register_heads_into(None, on_conflict=on_conflict)
    patch_build_loss()
    original = getattr(sys.modules["ppcls.loss"], _ORIGINAL)
    return {"losses": losses, "heads": heads, "build_loss": sorted(_rebind_loaded(original))}
