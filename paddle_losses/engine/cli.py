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
import os
import sys

from ..errors import ConfigError

DEBUG_ENV = "PADDLE_LOSSES_DEBUG"


def build_parser(mode):
    p = argparse.ArgumentParser(prog=f"paddle-losses {mode}",
                                description=f"PaddleClas-style {mode} script for paddle_losses")
    p.add_argument("-c", "--config", default=None,
                   help="YAML config (default: the shipped configs/quickstart.yaml; `paddle-losses configs list` "
                        "shows the shipped ones)")
    p.add_argument("-o", "--override", action="append", default=[],
                   help="KEY=VALUE override, e.g. -o Global.epochs=5 (repeatable, applied in order)")
    p.add_argument("-p", "--profiler_options", default=None, help='profiler settings "k1=v1;k2=v2" (stored only)')
    p.add_argument("--debug", action="store_true",
                   help=f"show the full traceback of an error (also: {DEBUG_ENV}=1)")
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


def _debug_wanted(argv):
    args = sys.argv[1:] if argv is None else argv
    return "--debug" in args or os.environ.get(DEBUG_ENV, "").lower() in ("1", "true", "yes")


def _one_line(exc):
    """The message of an unexpected exception, on one line and of bounded length."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 500 else text[:500] + " ..."


def run(argv=None, mode="train"):
    """Command-line entry (``paddle-losses train|eval``, ``tools/*.py``): returns exit status 0.

    Every failure ends the program with one ``error: ...`` line on stderr and a non-zero exit status (1;
    130 for Ctrl-C), never a traceback; ``--debug`` (or ``PADDLE_LOSSES_DEBUG=1``) re-raises instead.
    """
    from ..errors import ConfigError, InputError, TrainingError
    debug = _debug_wanted(argv)
    try:
        execute(argv, mode)
    except SystemExit:
        raise
    except KeyboardInterrupt:
        if debug:
            raise
        print("error: interrupted (Ctrl-C); the last completed epoch is in <output_dir>/latest, resume with "
              "-o Global.checkpoints=<output_dir>/latest", file=sys.stderr)
        raise SystemExit(130) from None
    except (ConfigError, InputError, TrainingError) as exc:
        if debug:
            raise
        raise SystemExit(f"error: {_one_line(exc)}") from None
    except RecursionError:
        if debug:
            raise
        raise SystemExit("error: the input is nested too deeply to process") from None
    except MemoryError:
        if debug:
            raise
        raise SystemExit("error: out of memory (a smaller batch_size, model or dataset needs less)") from None
    except OSError as exc:
        if debug:
            raise
        where = f"{exc.filename}: " if getattr(exc, "filename", None) else ""
        raise SystemExit(f"error: {where}{exc.strerror or _one_line(exc)}") from None
    except Exception as exc:  # anything else: still one line; --debug shows where it came from
        if debug:
            raise
        raise SystemExit(f"error: {type(exc).__name__}: {_one_line(exc)} (run with --debug for the "
                         f"traceback)") from None
    return 0


main = run
