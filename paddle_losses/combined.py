"""``build_loss`` / ``CombinedLoss``: a weighted sum of configured losses, drop-in for PaddleClas's.

Structure matches PaddleClas so configs and checkpoints interchange: the losses live in an
``nn.LayerList`` named ``loss_func`` (state-dict keys ``loss_func.<i>.<param>``), each under its PaddleClas
class, and calling ``combined(out, label)`` returns every loss's keys, weighted, plus ``"loss"``.

Two deliberate fixes over PaddleClas (see docs/compatibility.md):

* the weight is honoured when there is a single loss (PaddleClas ignores it);
* two losses that emit the same key are both kept -- the later key gets a suffix ``_1``, ``_2``, ... --
  and both count in ``"loss"`` (PaddleClas lets the later silently overwrite the earlier).

``"loss"`` is always the sum of every weighted key of every loss (PaddleClas does this with several
losses; with one loss it took only the first key).
"""
import paddle
import paddle.nn as nn

from .distributed import gathered
from .errors import ConfigError
from .registry import get_loss
from .validation import validate_loss_list


def _unique_key(key, taken):
    if key not in taken:
        return key
    i = 1
    while f"{key}_{i}" in taken:
        i += 1
    return f"{key}_{i}"


class CombinedLoss(nn.Layer):
    """Weighted sum of losses built from a PaddleClas ``Loss.Train``-style list.

    Math: ``loss = Σ_i w_i · Σ_k L_i[k]`` over every key ``k`` that loss ``i`` returns.

    Args:
        config_list: ``[{Name: {weight: w, **params}}, ...]`` as in PaddleClas YAML; ``gather: true`` beside
            ``weight`` makes that loss see the batch of every rank (:func:`paddle_losses.distributed.gathered`).
        path: config path used in error messages (``Loss.Train``).

    Reads whatever its losses read from the input dict; returns ``{key: weighted value, ..., "loss": total}``.
    """

    def __init__(self, config_list, path="Loss.Train"):
        super().__init__()
        entries = validate_loss_list(config_list, path)
        losses, self.loss_weight, self.loss_names = [], [], []
        for entry in entries:
            name, weight, params, entry_path = entry
            cls = get_loss(name)
            try:
                loss = cls(**params)
                losses.append(gathered(loss) if entry.gather else loss)
            except (ValueError, TypeError, AssertionError, KeyError, DeprecationWarning) as exc:  # ConfigError too
                where = f"{entry_path}.{name}"
                msg = str(exc)
                if msg.startswith(f"{name}."):  # a nested part (miner, distance, reducer) named its own path
                    msg = f"{entry_path}.{msg}"
                raise ConfigError(msg if msg.startswith(where) else f"{where}: {msg}") from exc
            self.loss_weight.append(weight)
            self.loss_names.append(name)
        self.loss_func = nn.LayerList(losses)

    def forward(self, input, batch):
        out = {}
        for weight, loss in zip(self.loss_weight, self.loss_func):
            result = loss(input, batch)
            if isinstance(result, paddle.Tensor):
                result = {type(loss).__name__: result}
            for key, value in result.items():
                # "loss" is the total; a loss that itself emits "loss" keeps its value under a suffix.
                k = _unique_key(key, set(out) | {"loss"})
                out[k] = value * weight if weight != 1.0 else value
        values = list(out.values())
        total = values[0] if len(values) == 1 else paddle.add_n(values)
        if total.ndim != 0:
            total = total.sum()
        out["loss"] = total
        return out


def build_loss(config_list, path="Loss.Train"):
    """Build a :class:`CombinedLoss` from a config list; ``None`` gives ``None`` (as PaddleClas).

    The caller's config is not modified. Raises :class:`ConfigError` naming the config path on any
    malformed entry, unknown loss, unknown or mistyped parameter.
    """
    if config_list is None:
        return None
    return CombinedLoss(config_list, path=path)
