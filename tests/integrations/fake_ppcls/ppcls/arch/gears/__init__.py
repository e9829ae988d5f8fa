"""Stand-in for ``ppcls.arch.gears``: resolves a head's ``name`` in this module's namespace after checking
it against a fixed list, as PaddleClas does (PaddleClas uses ``eval(name)``; a globals() lookup has the same
visibility)."""
import paddle


class ArcMargin(paddle.nn.Layer):
    """The fork's own ArcMargin, to test that ours replaces it."""

    def __init__(self, embedding_size, class_num, margin=0.5, scale=80.0):
        super().__init__()
        self.class_num = class_num


def build_gear(config):
    support_dict = ["ArcMargin", "CosMargin", "CircleMargin", "FC", "AdaMargin"]
    name = config.pop("name")
    assert name in support_dict, f"head only support {support_dict}"
    return globals()[name](**config)
