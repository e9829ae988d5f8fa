"""Loading ``.pdparams`` / ``.pdopt`` / ``.pdstates`` without running code from the file.

``paddle.load`` is ``pickle.load``: a crafted file can name any importable callable (``os.system``) and
have it called while loading. What ``paddle.save`` (Paddle 3.x, pickle protocol 4) actually writes for
a state dict, an optimizer state and our ``.pdstates`` needs only a handful of globals: tensors become
NumPy arrays (``numpy._core.multiarray._reconstruct``, ``numpy.ndarray``, ``numpy.dtype``), NumPy
scalars (``numpy._core.multiarray.scalar``), plus built-in containers (``tuple`` ...) and
``collections.OrderedDict``. Everything else -- dicts, lists, strings, numbers -- is written with
pickle's own opcodes and needs no global at all.

:func:`safe_load` unpickles the file's bytes with an :class:`pickle.Unpickler` whose ``find_class``
accepts only those globals and refuses anything else with a :class:`~paddle_losses.errors.ConfigError`
naming the file and the refused global. The vetted bytes (not the file a second time) are then handed to
``paddle.load``, which converts the arrays into tensors exactly as it always does.
``trust=True`` (``Global.trust_checkpoints: true``) skips the check, for checkpoints from a trusted source
that hold other objects.
"""
import io
import pickle

from ..errors import ConfigError

# (module, name) pairs a Paddle checkpoint may reference; both NumPy 1.x and 2.x module paths.
ALLOWED_GLOBALS = frozenset({
    ("numpy._core.multiarray", "_reconstruct"), ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "scalar"), ("numpy.core.multiarray", "scalar"),
    ("numpy", "ndarray"), ("numpy", "dtype"),
    ("builtins", "tuple"), ("builtins", "list"), ("builtins", "dict"), ("builtins", "set"),
    ("builtins", "frozenset"), ("builtins", "complex"), ("builtins", "bytearray"), ("builtins", "slice"),
    ("collections", "OrderedDict"),
})


class UnsafeCheckpointError(ConfigError):
    """A checkpoint file references a global that a Paddle checkpoint never needs (possible code)."""


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, fh, path):
        super().__init__(fh, encoding="latin1")
        self.path = path

    def find_class(self, module, name):
        if (module, name) in ALLOWED_GLOBALS:
            return super().find_class(module, name)
        raise UnsafeCheckpointError(
            f"{self.path} references {module}.{name}, which a Paddle checkpoint never contains; it was not "
            f"loaded (loading it could run code). If you trust where the file came from, set "
            f"-o Global.trust_checkpoints=True")

    def persistent_load(self, pid):
        raise UnsafeCheckpointError(f"{self.path} uses pickle persistent ids, which Paddle never writes")


def check_pickle(data, path):
    """Unpickle ``data`` (bytes of ``path``) with the restricted unpickler; raise a ConfigError if refused."""
    try:
        _RestrictedUnpickler(io.BytesIO(data), path).load()
    except ConfigError:
        raise
    except RecursionError:
        raise ConfigError(f"{path} is nested too deeply to be a Paddle checkpoint") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError,
            MemoryError, OverflowError, UnicodeDecodeError) as exc:
        detail = "it is empty" if not data else f"{type(exc).__name__}: {exc}"
        raise ConfigError(f"{path} is not a readable Paddle checkpoint ({detail}); the file is truncated or "
                          f"corrupt, or not a .pdparams/.pdopt/.pdstates file") from None


def safe_load(path, trust=False):
    """``paddle.load(path)`` after checking that the pickle stream only references allowed globals."""
    import paddle

    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except IsADirectoryError:
        raise ConfigError(f"{path} is a directory, not a checkpoint file") from None
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror or exc}") from None
    if not trust:
        check_pickle(data, path)
    try:
        return paddle.load(io.BytesIO(data))
    except Exception as exc:  # Paddle raises many types for a corrupt file; name the file in every case
        raise ConfigError(f"{path} is not a readable Paddle checkpoint ({type(exc).__name__}: {exc})") from None
