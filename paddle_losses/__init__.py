"""paddle_losses: PaddleClas's losses and margin heads for PaddlePaddle, selectable from YAML by name.

Public API::

    import paddle_losses as pl
    pl.list_losses("Triplet*")
    loss = pl.build_loss([{"CELoss": {"weight": 1.0}}, {"TripletLossV2": {"weight": 1.0, "margin": 0.5}}])
    out = loss({"features": f, "logits": z}, labels)   # {"CELoss":..., "TripletLossV2":..., "loss": ...}

The names below are loaded on first use, so ``import paddle_losses`` (and the ``paddle-losses`` console
script) does not import Paddle until something needs it; the command line imports Paddle itself, quietly
and with the thread count set (``paddle_losses.runtime``).
"""
import importlib
import importlib.util

__version__ = "0.1.0"

_EXPORTS = {
    "CombinedLoss": "combined", "build_loss": "combined",
    "AttrDict": "config", "load_config": "config",
    "ConfigError": "errors", "ConfigWarning": "errors", "InputError": "errors",
    "get_head": "registry", "get_loss": "registry", "list_heads": "registry", "list_losses": "registry",
    "register_head": "registry", "register_loss": "registry",
}

__all__ = [
    "get_loss", "get_head", "list_losses", "list_heads", "register_loss", "register_head", "build_loss",
    "CombinedLoss", "load_config", "AttrDict", "ConfigError", "ConfigWarning", "InputError",
]


def __getattr__(name):
    module = _EXPORTS.get(name)
    if module is None:
        if not name.startswith("_") and importlib.util.find_spec(f"{__name__}.{name}") is not None:
            return importlib.import_module(f".{name}", __name__)  # pl.registry, pl.config, ...
        raise AttributeError(f"module 'paddle_losses' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))
