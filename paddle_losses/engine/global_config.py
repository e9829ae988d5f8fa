"""The ``Global`` section as the trainer reads it: defaults, and every key checked before data is touched.

A wrong value used to surface late -- ``eval_interval: 0`` as a ZeroDivisionError after a whole epoch,
``sim_block_size: 0`` as metrics that are silently 0.0, ``epochs: 2.5`` silently read as 2 --; here each
key gets its type and range checked at start-up, with ``Global.<key>`` in the message.

Integers accept an int or an integral float (``3.0``); booleans accept YAML booleans only (``True``,
``false``, ...), so that ``"no"`` in quotes is not read as true.
"""
from ..errors import ConfigError

GLOBAL_DEFAULTS = {
    "output_dir": "./output/", "device": "cpu", "eval_during_train": True, "eval_interval": 1,
    "use_visualdl": False, "pretrained_model": None, "checkpoints": None, "print_batch_step": 10,
    "save_interval": 1, "eval_mode": "classification", "retrieval_feature_from": "features",
    "feature_normalize": True, "feature_binarize": None, "re_ranking": False, "sim_block_size": 64,
    "seed": None, "update_freq": 1, "iter_per_epoch": None, "start_eval_epoch": 0, "log_ranks": "0",
    "gather_embeddings": False, "eval_before_train": False, "plot_curves": True, "progress_bar": None,
    "diagnostics": True, "overwrite_output": False, "trust_checkpoints": False, "on_nonfinite_loss": "stop",
}

MAX_INT = 10 ** 9  # larger counts are typos (and would overflow Paddle's int32 step counters)

# key: (kind, minimum or choices); kind "int" / "int?" (None allowed) / "bool" / "bool?" / "str" / "str?" /
# "choice" / "choice?"
_RULES = {
    "epochs": ("int", 1), "eval_interval": ("int", 1), "save_interval": ("int", 0),
    "print_batch_step": ("int", 1), "sim_block_size": ("int", 1), "update_freq": ("int", 1),
    "iter_per_epoch": ("int?", 1), "start_eval_epoch": ("int", 0), "seed": ("int?", 0),
    "eval_during_train": ("bool", None), "use_visualdl": ("bool", None), "feature_normalize": ("bool", None),
    "re_ranking": ("bool", None), "gather_embeddings": ("bool", None), "eval_before_train": ("bool", None),
    "plot_curves": ("bool", None), "diagnostics": ("bool", None), "overwrite_output": ("bool", None),
    "trust_checkpoints": ("bool", None), "progress_bar": ("bool?", None),
    "output_dir": ("str", None), "device": ("str", None), "retrieval_feature_from": ("str", None),
    "pretrained_model": ("str?", None), "checkpoints": ("str?", None),
    "eval_mode": ("choice", ("retrieval", "classification")),
    "feature_binarize": ("choice?", ("round", "sign")),
    "on_nonfinite_loss": ("choice", ("stop", "skip")),
}
_RANGE_WORD = {0: "an integer >= 0", 1: "an integer >= 1"}


def _check(key, value, kind, arg):
    path = f"Global.{key}"
    optional = kind.endswith("?")
    kind = kind.rstrip("?")
    if value is None:
        if optional:
            return None
        raise ConfigError(f"{path} must be set (it is null)")
    if kind == "int":
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int) or not arg <= value <= MAX_INT:
            raise ConfigError(f"{path} must be {_RANGE_WORD[arg]} (at most {MAX_INT}), got {value!r}")
        return value
    if kind == "bool":
        if not isinstance(value, bool):
            raise ConfigError(f"{path} must be true or false, got {value!r}")
        return value
    if kind == "str":
        if isinstance(value, bool) or not isinstance(value, (str, int, float)) or str(value) == "":
            raise ConfigError(f"{path} must be a non-empty string, got {value!r}")
        return str(value)
    if value not in arg:
        raise ConfigError(f"{path} must be one of {', '.join(arg)}{' or null' if optional else ''}, "
                          f"got {value!r}")
    return value


def validate_global(g, mode):
    """Fill the defaults into ``g`` (the Global mapping) and check every key the trainer reads, in place.

    ``epochs`` is required in train mode. Raises :class:`ConfigError` naming ``Global.<key>``.
    """
    for k, v in GLOBAL_DEFAULTS.items():
        g.setdefault(k, v)
    if mode == "train" and "epochs" not in g:
        raise ConfigError("Global.epochs is missing (the number of training epochs)")
    if g["feature_binarize"] is False:
        g["feature_binarize"] = None
    for key, (kind, arg) in _RULES.items():
        if key in g:
            g[key] = _check(key, g[key], kind, arg)
    log_ranks = str(g["log_ranks"])
    if not all(r.strip().lstrip("-").isdigit() for r in log_ranks.split(",")):
        raise ConfigError(f"Global.log_ranks must be a comma-separated list of ranks such as 0 or 0,1, "
                          f"got {g['log_ranks']!r}")
    return g
