"""The ``EMA:`` section: an exponential moving average of the model's weights (``decay``, e.g. 0.9999).

After every optimizer step, for each floating-point entry of the model's state dict (weights and buffers
such as batch-norm statistics): ``ema = decay * ema + (1 - decay) * w``, starting from the weights at
construction. Evaluation runs with the averaged weights swapped in, and the best model is saved from them
(as PaddleClas does); ``latest`` / ``epoch_N`` keep the trained weights in ``.pdparams`` and the averages in
``.pdstates`` under ``ema``, so a resumed run continues the same average exactly.
"""
import contextlib

import numpy as np
import paddle

from ..errors import ConfigError


def ema_decay(section):
    """The validated decay of an ``EMA:`` section, or None without one."""
    if not section:
        return None
    section = dict(section)
    unknown = sorted(set(section) - {"decay"})
    if unknown:
        raise ConfigError(f"EMA.{unknown[0]}: unknown key; the EMA section takes decay")
    decay = section.get("decay", 0.9999)
    if isinstance(decay, bool) or not isinstance(decay, (int, float)) or not 0.0 <= decay < 1.0:
        raise ConfigError(f"EMA.decay: expected a number in [0, 1), got {decay!r}")
    return float(decay)


class ModelEMA:
    """Moving averages of ``model``'s floating-point state (float32, or the entry's dtype if wider)."""

    def __init__(self, model, decay):
        self.model, self.decay = model, float(decay)
        self.shadow = {k: self._wide(v).clone() for k, v in self._floats().items()}

    def _floats(self):
        return {k: v for k, v in self.model.state_dict().items() if paddle.is_floating_point(v)}

    @staticmethod
    def _wide(t):
        return t.detach().astype("float32") if t.dtype in (paddle.float16, paddle.bfloat16) else t.detach()

    @paddle.no_grad()
    def update(self):
        d = self.decay
        for k, v in self._floats().items():
            s = self.shadow[k]
            paddle.assign(s * d + self._wide(v) * (1.0 - d), output=s)

    @contextlib.contextmanager
    @paddle.no_grad()
    def swapped_in(self):
        """Within the block the model holds the averaged weights; the trained ones are restored after."""
        live = {k: v.detach().clone() for k, v in self._floats().items()}
        self.model.set_state_dict({k: s.astype(live[k].dtype) for k, s in self.shadow.items()})
        try:
            yield
        finally:
            self.model.set_state_dict(live)

    def state_dict(self):
        return {k: v.numpy() for k, v in self.shadow.items()}

    def load_state_dict(self, state, what="Global.checkpoints"):
        missing = sorted(set(self.shadow) - set(state or {}))
        if missing:
            raise ConfigError(f"{what}: the checkpoint's EMA state lacks {missing[:3]}; it was not written by a "
                              f"run with this EMA section and model")
        for k, s in self.shadow.items():
            paddle.assign(paddle.to_tensor(np.asarray(state[k]), dtype=s.dtype), output=s)
