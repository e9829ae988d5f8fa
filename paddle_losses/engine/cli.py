"""``tools/train.py`` / ``tools/eval.py`` / ``paddle-losses train|eval``: PaddleClas's command line.

``run(argv, mode)`` accepts ``-c/--config PATH`` (default: the repository's ``configs/quickstart.yaml``),
repeatable ``-o/--override KEY=VALUE`` (applied in order) and ``-p/--profiler_options STR`` (stored as the
top-level ``profiler_options`` key, as PaddleClas does; no profiler is run). The resolved config is printed
at start in PaddleClas's ``k : v`` form.
"""
import argparse
import os
import sys
from pathlib import Path

DEFAULT_CONFIG = Path(__file__).resolve().parents[2] / "configs" / "quickstart.yaml"
DEBUG_ENV = "PADDLE_LOSSES_DEBUG"


def build_parser(mode):
    p = argparse.ArgumentParser(prog=f"paddle-losses {mode}",
                                description=f"PaddleClas-style {mode} script for paddle_losses")
    p.add_argument("-c", "--config", default=None,
                   help=f"YAML config (default: {DEFAULT_CONFIG.relative_to(DEFAULT_CONFIG.parents[1])})")
    p.add_argument("-o", "--override", action="append", default=[],
                   help="KEY=VALUE override, e.g. -o Global.epochs=5 (repeatable, applied in order)")
    p.add_argument("-p", "--profiler_options", default=None, help='profiler settings "k1=v1;k2=v2" (stored only)')
    p.add_argument("--debug", action="store_true",
                   help=f"show the full traceback of an error (also: {DEBUG_ENV}=1)")
    return p


def threads_from(config_path, overrides):
    """``Global.num_threads`` from the YAML and the ``-o`` list without importing Paddle (None if unset)."""
    import yaml
    value = None
    try:
        with open(config_path, encoding="utf-8") as fh:
            data = yaml.safe_load(fh) or {}
        value = (data.get("Global") or {}).get("num_threads")
    except (OSError, yaml.YAMLError, AttributeError):
        pass
    for opt in overrides or []:
        if opt.split("=", 1)[0].strip() == "Global.num_threads" and "=" in opt:
            value = opt.split("=", 1)[1].strip()
    try:
        return int(value) if value not in (None, "", "None", "null") else None
    except (TypeError, ValueError):
        return None


def set_thread_env(argv=None):
    """Set ``OMP_NUM_THREADS`` before Paddle is imported (Paddle uses one math thread otherwise).

    ``Global.num_threads`` wins; else an existing ``OMP_NUM_THREADS`` is kept; else all CPU cores.
    """
    args, _ = build_parser("train").parse_known_args(argv)
    n = threads_from(args.config or DEFAULT_CONFIG, args.override)
    if n is not None:
        os.environ["OMP_NUM_THREADS"] = str(n)
    else:
        os.environ.setdefault("OMP_NUM_THREADS", str(os.cpu_count() or 1))
    return int(os.environ["OMP_NUM_THREADS"])


def execute(argv=None, mode="train"):
    """Parse ``argv``, load the config, build the engine and train (or evaluate); returns the result.

    Training returns ``{"best_metric", "best_epoch", "last_metrics", "history"}``; evaluation the metrics.
    """
    args = build_parser(mode).parse_args(argv)
    import warnings

    from ..config import load_config
    from ..errors import ConfigWarning
    from .trainer import Engine

    path = args.config or str(DEFAULT_CONFIG)
    if args.config is None and not os.path.exists(path):
        raise SystemExit(f"no -c/--config given and the default {path} does not exist "
                         f"(run from a source checkout or pass -c)")
    with warnings.catch_warnings():
        warnings.simplefilter("always", ConfigWarning)
        config = load_config(path, overrides=args.override)
    config["profiler_options"] = args.profiler_options
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
