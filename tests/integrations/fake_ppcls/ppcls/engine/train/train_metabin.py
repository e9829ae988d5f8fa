"""Stand-in for ``ppcls.engine.train.train_metabin``: imports build_loss itself and builds MetaBIN's three
loss lists from their own ``Loss`` keys, as PaddleClas's MetaBIN trainer does."""
from ppcls.loss import build_loss


def build_metabin_losses(config):
    return {key: build_loss(config["Loss"][key]) for key in ("Basic", "MetaTrain", "MetaTest")}
