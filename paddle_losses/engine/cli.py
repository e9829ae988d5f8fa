"""``tools/train.py`` / ``tools/eval.py`` / ``paddle-losses train|eval``: PaddleClas's command line.

``run(argv, mode)`` accepts ``-c/--config PATH`` (default: the shipped ``configs/quickstart.yaml``; a path
that does not exist is looked up among the shipped configs, so ``-c configs/quick_start/x.yaml`` works
from any directory), repeatable ``-o/--override KEY=VALUE`` (applied in order) and
``-p/--profiler_options STR`` (stored as the top-level ``profiler_options`` key, as PaddleClas does; no
profiler is run). The resolved config is printed at start in PaddleClas's ``k : v`` form. Paddle is
imported and its thread count set in ``paddle_losses.runtime`` (all cores unless ``Global.num_threads`` or
``$PADDLE_LOSSES_NUM_THREADS`` says otherwise).
"""
import argparse

from ..errors import ConfigError


def build_parser(mode):
    p = argparse.ArgumentParser(prog=f"paddle-losses {mode}",
                                description=f"PaddleClas-style {mode} script for paddle_losses")
    p.add_argument("-c", "--config", default=None,
                   help="YAML config (default: the shipped configs/quickstart.yaml; `paddle-losses configs list` "
                        "shows the shipped ones)")
    p.add_argument("-o", "--override", action="append", default=[],
                   help="KEY=VALUE override, e.g. -o Global.epochs=5 (repeatable, applied in order)")
    p.add_argument("-p", "--profiler_options", default=None, help='profiler settings "k1=v1;k2=v2" (stored only)')
    if mode == "eval":
        p.add_argument("--untrained", action="store_true",
                       help="evaluate the config's freshly initialised model on purpose (no weights loaded)")
    return p


def check_eval_has_weights(config, untrained=False):
    """Refuse to evaluate without weights: the numbers of a randomly initialised model look like results."""
    g = config.get("Global") or {}
    if untrained or g.get("pretrained_model") or g.get("checkpoints"):
        return
    out = str(g.get("output_dir") or "./output/").rstrip("/")
    raise ConfigError(f"nothing to evaluate: Global.pretrained_model is not set, so the model would keep its "
                      f"random initial weights. Pass the weights training wrote, e.g. "
                      f"-o Global.pretrained_model={out}/best_model, or --untrained to score the untrained model "
                      f"on purpose")


def execute(argv=None, mode="train"):
    """Parse ``argv``, load the config, build the engine and train (or evaluate); returns the result.

    Training returns ``{"best_metric", "best_epoch", "last_metrics", "history"}``; evaluation the metrics.
    """
    args = build_parser(mode).parse_args(argv)
    import warnings

    from .. import runtime, shipped_configs
    from ..config import load_config
    from ..errors import ConfigWarning

    runtime.quiet_paddle_notices()
    runtime.import_paddle()
    from .trainer import Engine

    path = shipped_configs.resolve(args.config) if args.config else str(shipped_configs.default_config())
    with warnings.catch_warnings():
        warnings.simplefilter("always", ConfigWarning)
        config = load_config(path, overrides=args.override)
    config["profiler_options"] = args.profiler_options
    if mode == "eval":
        check_eval_has_weights(config, args.untrained)
    runtime.set_threads((config.get("Global") or {}).get("num_threads"))
    engine = Engine(config, mode=mode)
    if mode == "train":
        return engine.train()
    return engine.eval(0)


def run(argv=None, mode="train"):
    """Command-line entry (``paddle-losses train|eval``, ``tools/*.py``): returns exit status 0.

    A config or input mistake ends the program with a one-line ``error: ...`` message (exit status 1).
    """
    from ..errors import ConfigError, InputError
    try:
        execute(argv, mode)
    except (ConfigError, InputError) as exc:
        raise SystemExit(f"error: {exc}") from None
    return 0


main = run
