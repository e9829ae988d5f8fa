"""Stand-in for ``ppcls.arch``: RecModel builds its head through gears' build_gear, as PaddleClas does."""
from .gears import build_gear


class RecModel:
    def __init__(self, config):
        self.head = build_gear(dict(config["Head"]))
