"""Stand-in for ``ppcls.static.program``: the static-graph path imports build_loss itself."""
from ppcls.loss import build_loss


def create_loss(config):
    return build_loss(config["Loss"]["Train"])
