"""Heads that turn embeddings into logits (FC and the margin heads), registered with ``@register_head``."""
from .._autoimport import import_submodules

import_submodules(__name__, __path__)
