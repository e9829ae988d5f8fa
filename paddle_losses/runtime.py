"""Process setup shared by every entry point (``paddle-losses``, ``tools/*.py``): import Paddle quietly and
run its CPU math on all cores.

Paddle 3.3.1 reads ``OMP_NUM_THREADS`` when it is imported, treats an unset value as 1, and prints a
"OMP_NUM_THREADS set to N, not 1 ... PLEASE USE OMP_NUM_THREADS WISELY" warning whenever the value is
above 1. Setting the variable before the import therefore both needs code that runs before Paddle is
imported and triggers the warning. Instead Paddle is imported as it is (one thread, no warning) and the
thread count is set afterwards through ``paddle.base.core.set_num_threads``, which sets the OpenMP and MKL
thread counts that the environment variable would have set (same per-thread work split, checked on this
Paddle by the CPU time of each thread). Nothing here has to run before anything else.

The count: ``Global.num_threads`` if the config sets it, else the ``PADDLE_LOSSES_NUM_THREADS`` environment
variable, else every core this process may run on.
"""
import os
import warnings

from .errors import ConfigError

THREADS_ENV = "PADDLE_LOSSES_NUM_THREADS"

_applied = None


def import_paddle():
    """Import Paddle without its "No ccache found" warning (nothing here compiles extensions)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="No ccache found", category=UserWarning)
        import paddle
    return paddle


def quiet_paddle_notices():
    """For a command-line process only (it owns its warning filters; the library never changes them):
    hide Paddle's notes that say nothing about the user's run, the "No ccache found" one and BatchNorm's
    "When training, we now always track global mean and variance" on every training step."""
    warnings.filterwarnings("ignore", message="No ccache found", category=UserWarning)
    warnings.filterwarnings("ignore", message="When training, we now always track global mean",
                            category=UserWarning)


def available_cores():
    """Cores this process may run on (its CPU affinity where the OS reports it)."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _positive_int(value, where):
    try:
        n = int(str(value).strip())
    except (TypeError, ValueError):
        n = 0
    if n < 1 or isinstance(value, bool) or isinstance(value, float) and value != n:
        raise ConfigError(f"{where} must be a positive integer (number of CPU threads), got {value!r}")
    return n


def requested_threads(config_value=None):
    """The thread count to use: the config's value, else ``$PADDLE_LOSSES_NUM_THREADS``, else all cores."""
    if config_value not in (None, ""):
        return _positive_int(config_value, "Global.num_threads")
    env = os.environ.get(THREADS_ENV, "").strip()
    if env:
        return _positive_int(env, f"the environment variable {THREADS_ENV}")
    return available_cores()


def set_threads(config_value=None):
    """Import Paddle (quietly) and set its CPU thread count (see the module docstring); returns the count."""
    global _applied
    n = requested_threads(config_value)
    paddle = import_paddle()
    paddle.base.core.set_num_threads(n)
    _applied = n
    return n


def threads():
    """The count :func:`set_threads` set in this process, or None if it was not called."""
    return _applied
