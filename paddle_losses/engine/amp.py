"""The ``AMP:`` section of a PaddleClas config: automatic mixed precision for the training step.

Keys (PaddleClas's names and defaults): ``use_amp`` (True when the section is present), ``level`` ``O1``
(white-listed ops such as matmul and conv in half precision, weights in float32) or ``O2`` (the model cast
to half precision, float32 master weights in the optimizer), ``scale_loss`` (initial loss scale, 1.0),
``use_dynamic_loss_scaling`` (False), ``use_promote`` (False: an op with mixed inputs runs in the lower
precision), ``use_fp16_test`` (False: evaluation runs in float32), ``dtype`` (``float16``, our extension:
``bfloat16`` also accepted).

Paddle implements ``auto_cast``, ``decorate`` and ``GradScaler`` for CUDA, XPU and custom devices only; on
the CPU ``auto_cast`` leaves every op in float32 (measured with Paddle 3.3.1: conv2d and matmul outputs stay
float32 under O1 and O2, for float16 and bfloat16) and the scaler disables itself. The trainer therefore
says so once and trains in float32 on the CPU. The losses themselves accept half-precision inputs on any
device and compute in float32 (``paddle_losses.inputs.compute_dtype``).

The scaler's state (scale, good/bad step counters) is saved in the checkpoint's ``.pdstates`` under
``amp_scaler`` and restored on resume.
"""
import contextlib
import warnings

import paddle

from ..errors import ConfigError, ConfigWarning

_KEYS = {"use_amp": bool, "level": str, "scale_loss": (int, float), "use_dynamic_loss_scaling": bool,
         "use_promote": bool, "use_fp16_test": bool, "dtype": str}
_LEVELS = ("O1", "O2")
_DTYPES = ("float16", "bfloat16")


def amp_supported(place=None):
    """True where Paddle's AMP does something: a CUDA, XPU or custom-device place."""
    place = place or paddle.get_device()
    return not str(place).startswith("cpu")


class AmpSettings:
    """Validated ``AMP:`` section; ``enabled`` is False when absent, ``use_amp: False`` or on the CPU."""

    def __init__(self, section, device):
        section = dict(section or {})
        for key, value in section.items():
            if key not in _KEYS:
                raise ConfigError(f"AMP.{key}: unknown key; the AMP section takes {', '.join(_KEYS)}")
            kind = _KEYS[key]
            if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
                raise ConfigError(f"AMP.{key}: expected {getattr(kind, '__name__', 'a number')}, got {value!r}")
        self.requested = bool(section) and section.get("use_amp", True)
        self.level = str(section.get("level", "O1")).upper()
        if self.level not in _LEVELS:
            raise ConfigError(f"AMP.level: expected one of {_LEVELS}, got {section.get('level')!r}")
        self.dtype = section.get("dtype", "float16")
        if self.dtype not in _DTYPES:
            raise ConfigError(f"AMP.dtype: expected one of {_DTYPES}, got {self.dtype!r}")
        self.scale_loss = float(section.get("scale_loss", 1.0))
        if not self.scale_loss > 0:
            raise ConfigError(f"AMP.scale_loss: expected a number > 0, got {self.scale_loss}")
        self.dynamic = bool(section.get("use_dynamic_loss_scaling", False))
        self.use_promote = bool(section.get("use_promote", False))
        self.fp16_test = bool(section.get("use_fp16_test", False))
        self.supported = amp_supported(device)
        self.enabled = bool(self.requested and self.supported)

    def cpu_message(self):
        return ("the AMP section is not applied: Paddle's auto_cast and GradScaler act on CUDA/XPU devices only "
                "(on this CPU every op would stay float32), so training runs in float32")


class AmpRunner:
    """The AMP pieces of a training step: ``autocast()``, ``backward(loss)``, ``step(optimizer)``.

    Disabled, every method is the plain float32 path, so the trainer calls them unconditionally.
    """

    def __init__(self, settings, logger=None):
        self.settings = settings
        self.scaler = None
        if settings.requested and not settings.supported:
            msg = settings.cpu_message()
            if logger is not None:
                logger.warning(msg)
            warnings.warn(msg, ConfigWarning, stacklevel=3)
        if settings.enabled:
            self.scaler = paddle.amp.GradScaler(init_loss_scaling=settings.scale_loss,
                                                use_dynamic_loss_scaling=settings.dynamic)

    @property
    def enabled(self):
        return self.settings.enabled

    def decorate(self, model, optimizers):
        """O2: cast the model to half precision with float32 master weights in the optimizers."""
        if not self.enabled or self.settings.level != "O2":
            return model, optimizers
        model, optimizers = paddle.amp.decorate(models=model, optimizers=list(optimizers), level="O2",
                                                dtype=self.settings.dtype, master_weight=True)
        return model, list(optimizers)

    def autocast(self, train=True):
        """The context for a forward pass (evaluation uses it only with ``use_fp16_test``)."""
        if not self.enabled or (not train and not self.settings.fp16_test):
            return contextlib.nullcontext()
        return paddle.amp.auto_cast(level=self.settings.level, dtype=self.settings.dtype,
                                    use_promote=self.settings.use_promote)

    def backward(self, loss):
        (self.scaler.scale(loss) if self.scaler is not None else loss).backward()

    def step(self, optimizer):
        if self.scaler is None:
            optimizer.step()
        else:
            self.scaler.step(optimizer)  # unscales, skips the step on inf/nan gradients
            self.scaler.update()

    def state_dict(self):
        return self.scaler.state_dict() if self.scaler is not None else None

    def load_state_dict(self, state):
        if self.scaler is not None and state:
            self.scaler.load_state_dict(state)
