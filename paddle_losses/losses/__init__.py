"""Loss layers, one module per family, each class registered under its PaddleClas name.

Importing this package imports every module in it (and its sub-packages), so a new family only needs a
new module with ``@register_loss`` classes.
"""
from .._autoimport import import_submodules

import_submodules(__name__, __path__)
