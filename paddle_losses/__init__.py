"""paddle_losses: PaddleClas's losses and margin heads for PaddlePaddle, selectable from YAML by name.

Public API::

    import paddle_losses as pl
    pl.list_losses("Triplet*")
    loss = pl.build_loss([{"CELoss": {"weight": 1.0}}, {"TripletLossV2": {"weight": 1.0, "margin": 0.5}}])
    out = loss({"features": f, "logits": z}, labels)   # {"CELoss":..., "TripletLossV2":..., "loss": ...}
"""
import warnings as _warnings

# Paddle warns about a missing ccache on every import although nothing here compiles C++ extensions.
_warnings.filterwarnings("ignore", message="No ccache found", category=UserWarning)

from .combined import CombinedLoss, build_loss
from .config import AttrDict, load_config
from .errors import ConfigError, ConfigWarning, InputError
from .registry import get_head, get_loss, list_heads, list_losses, register_head, register_loss

__version__ = "0.1.0"

__all__ = [
    "get_loss", "get_head", "list_losses", "list_heads", "register_loss", "register_head", "build_loss",
    "CombinedLoss", "load_config", "AttrDict", "ConfigError", "ConfigWarning", "InputError",
]
