"""Use paddle_losses from a PaddleClas fork without editing PaddleClas.

PaddleClas resolves ``Loss.Train`` names by evaluating them in the ``ppcls.loss`` module namespace, and its
``Engine`` calls the ``build_loss`` it imported into ``ppcls.engine.engine``. Two hooks follow from that:

* :func:`register_into` puts our classes into a namespace (``ppcls.loss``), so PaddleClas's own
  ``build_loss`` finds them by name;
* :func:`patch_build_loss` replaces the engine's ``build_loss`` with ours (validated configs, the
  ``loss_func`` LayerList, same state-dict keys and ``"loss"`` key). Entry keys of ours such as
  ``gather: true`` (a loss on the batch of every rank) need this hook: PaddleClas's own ``build_loss``
  passes every key but ``weight`` to the loss's constructor.

Neither imports PaddleClas when paddle_losses is imported: ``ppcls`` (which pulls in cv2, sklearn, scipy)
is imported only if you call them without passing the target module.

Typical fork edit, in ``tools/train.py`` before ``Engine(...)``::

    from paddle_losses.integrations import ppcls as pl_ppcls
    pl_ppcls.register_into()          # or: pl_ppcls.patch_build_loss()
"""
import importlib
import types

from ..registry import get_loss, list_losses

ON_CONFLICT = ("overwrite", "keep", "error")


def _namespace(target):
    if isinstance(target, types.ModuleType):
        return vars(target)
    if isinstance(target, dict):
        return target
    raise TypeError(f"target must be a module or a dict namespace, got {type(target).__name__}")


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
    if on_conflict not in ON_CONFLICT:
        raise ValueError(f"on_conflict must be one of {ON_CONFLICT}, got {on_conflict!r}")
    if target is None:
        target = importlib.import_module("ppcls.loss")
    ns = _namespace(target)
    installed = []
    for name in (names if names is not None else list_losses()):
        cls = get_loss(name)
        existing = ns.get(name)
        if existing is not None and existing is not cls:
            if on_conflict == "keep":
                continue
            if on_conflict == "error":
                raise ValueError(f"{name!r} is already defined in the target namespace ({existing!r})")
        ns[name] = cls
        installed.append(name)
    return installed


def patch_build_loss(engine_module=None):
    """Make a PaddleClas engine use :func:`paddle_losses.build_loss`.

    Args:
        engine_module: the module whose ``build_loss`` name the Engine calls; ``None`` imports
            ``ppcls.engine.engine``.

    Returns:
        The previous ``build_loss``, so the caller can restore it.
    """
    from ..combined import build_loss

    if engine_module is None:
        engine_module = importlib.import_module("ppcls.engine.engine")
    previous = getattr(engine_module, "build_loss", None)
    engine_module.build_loss = build_loss
    return previous
