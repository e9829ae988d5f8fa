"""Exception types raised at the library's boundaries.

Every error a user can cause through a config file, a ``-o`` override or a bad batch is raised as one of
these, with a message that says where the problem is and what was expected, before Paddle sees the data.
"""


class ConfigError(ValueError):
    """A config entry (YAML or ``-o`` override) is malformed; the message names its path."""


class InputError(ValueError):
    """A loss or head received input it cannot use (wrong shape, dtype, missing key, NaN, empty batch)."""


class ConfigWarning(UserWarning):
    """A config is accepted but probably not what the user meant (typo in a known section, new key)."""


class TrainingError(RuntimeError):
    """Training cannot go on (a loss that turned NaN/Inf); the message names the step and what was seen."""
