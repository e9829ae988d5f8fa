"""Stand-in for ``ppcls.engine.engine``: imports build_loss by name, as PaddleClas's Engine does, and builds
the train and eval loss lists with it."""
from ppcls.loss import build_loss


class Engine:
    def __init__(self, config):
        self.train_loss_func = build_loss(config["Loss"]["Train"])
        self.eval_loss_func = build_loss(config["Loss"].get("Eval"))
