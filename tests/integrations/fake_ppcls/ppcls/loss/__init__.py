"""Stand-in for ``ppcls.loss``: resolves Loss.Train names in this module's namespace, as PaddleClas does
(PaddleClas uses ``eval(name)`` here; a plain globals() lookup has the same visibility)."""
import copy

import paddle


class CELoss(paddle.nn.Layer):
    """The fork's own built-in CE, to test name clashes."""

    def forward(self, x, label):
        return {"CELoss": paddle.nn.functional.cross_entropy(x["logits"], label)}


class CombinedLoss(paddle.nn.Layer):
    def __init__(self, config_list):
        super().__init__()
        assert isinstance(config_list, list), "operator config should be a list"
        funcs, self.loss_weight = [], []
        for entry in config_list:
            assert isinstance(entry, dict) and len(entry) == 1, "yaml format error"
            name = list(entry)[0]
            params = entry[name]
            self.loss_weight.append(params.pop("weight"))
            funcs.append(globals()[name](**params))
        self.loss_func = paddle.nn.LayerList(funcs)

    def __call__(self, input, batch):
        out = {}
        for w, f in zip(self.loss_weight, self.loss_func):
            out.update({k: v * w for k, v in f(input, batch).items()})
        out["loss"] = paddle.add_n(list(out.values()))
        return out


def build_loss(config):
    return None if config is None else CombinedLoss(copy.deepcopy(config))
