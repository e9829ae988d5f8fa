"""``from paddle_losses.ppcls_compat import *`` in a fork's ``ppcls/loss/__init__.py``.

Exports every registered loss class (including plugins) under its PaddleClas name, so the fork's
name lookup resolves to ours. Prefer :func:`paddle_losses.integrations.ppcls.register_into`, which does the
same without editing the fork.
"""
from .registry import get_loss, list_losses

__all__ = list_losses()
globals().update({_name: get_loss(_name) for _name in __all__})
