"""``from paddle_losses.ppcls_compat import *`` in a fork's ``ppcls/loss/__init__.py``.

Exports every registered loss class (including plugins) under its PaddleClas name, so the fork's
name lookup resolves to ours. Prefer :func:`paddle_losses.integrations.ppcls.install`, which does the
same and more without editing the fork. Put the star import on the **last line** of `ppcls/loss/__init__.py`: names the
file defines or imports after it would win over ours.
"""
from .registry import get_loss, list_losses

__all__ = list_losses()
globals().update({_name: get_loss(_name) for _name in __all__})
