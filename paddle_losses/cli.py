"""``paddle-losses`` command line: list and describe registered losses/heads, train and evaluate.

    paddle-losses list [PATTERN] [--heads | --kind KIND|all]
    paddle-losses describe NAME [--kind KIND]
    paddle-losses train -c CONFIG [-o KEY=VALUE ...]
    paddle-losses eval  -c CONFIG [-o KEY=VALUE ...]
    paddle-losses configs [list]
    paddle-losses configs copy NAME [DEST] [--force]

Importing this module does not import Paddle: ``train``/``eval`` import it through
``paddle_losses.runtime`` (quietly, then all cores), the other commands when they need the registry.
"""
import argparse
import inspect
import sys
import textwrap

from .errors import ConfigError


def _find(name, kind=None):
    """``(kind, part)`` for ``name``: in ``kind``'s registry, else the first kind that has it (losses first)."""
    from .registry import kinds, registry
    if kind is not None:
        return kind, registry(kind).get(name)
    for k in kinds():
        if name in registry(k):
            return k, registry(k).get(name)
    registry("loss").get(name)  # raises the loss registry's "did you mean" error


def _describe(name, kind=None):
    from .validation import _resolved_hints, constructor_params, describe_type

    kind, part = _find(name, kind)
    params, var_kw = constructor_params(part)
    hints = _resolved_hints(part)
    lines = [f"{part.__name__} ({kind}, {part.__module__})", "", "Parameters:"]
    if not params:
        lines.append("  (none)")
    for pname, p in params.items():
        tp = describe_type(hints.get(pname, p.annotation))
        default = "required" if p.default is inspect.Parameter.empty else f"default {p.default!r}"
        lines.append(f"  {pname}: {tp} ({default})")
    if var_kw:
        lines.append("  **kwargs: accepted (other keys are ignored; a key that looks like a misspelt parameter "
                     "is an error)")
    if kind == "loss":
        lines.append("  weight: float (required in YAML; the factor in the total, not a constructor argument)")
    if kind in ("loss", "head"):
        reads = list(getattr(part, "input_keys", ()))
        chosen_by = getattr(part, "input_key_params", ())
        target = getattr(part, "target_keys", ())
        text = ", ".join(reads) if reads else "(tensors passed as arguments, see forward)"
        if chosen_by:
            text += f"; keys chosen by the parameter(s) {', '.join(chosen_by)}"
        lines.append("")
        lines.append("Reads from the input dict: " + text)
        if target:
            lines.append("Reads from the label dict: " + ", ".join(target))
        lines.append(f"Called as: forward{inspect.signature(part.forward)}".replace("(self, ", "(")
                     .replace("(self)", "()"))
        writes = getattr(part, "output_keys", None)
        lines.append("Output keys: " + (", ".join(writes) if writes else "(not declared)"))
    doc = inspect.getdoc(part)
    if doc:
        lines += ["", doc]
    return "\n".join(lines)


def _list(pattern, heads, kind=None):
    from .registry import kinds, registry
    if kind == "all":
        return "\n".join(f"{k} ({len(registry(k))}): {', '.join(registry(k).names(pattern))}" for k in kinds())
    kind = kind or ("head" if heads else "loss")
    names = registry(kind).names(pattern)
    return "\n".join(names) if names else f"no {kind} matches {pattern!r}"


def _configs(args):
    from . import shipped_configs
    try:
        if args.action == "list":
            print(f"shipped configs (in {shipped_configs.root()}); train one with "
                  f"`paddle-losses train -c NAME`, copy one with `paddle-losses configs copy NAME`:")
            for name in shipped_configs.names():
                print("  " + name)
            return 0
        if not args.name:
            print("error: configs copy needs a NAME (see `paddle-losses configs list`) or `all`", file=sys.stderr)
            return 2
        for path in shipped_configs.copy(args.name, args.dest, overwrite=args.force):
            print(f"wrote {path}")
        return 0
    except (FileNotFoundError, FileExistsError) as exc:
        print(f"error: {exc.args[0] if exc.args else exc}", file=sys.stderr)
        return 2


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in ("train", "eval"):
        from .engine.cli import run
        return run(argv[1:], mode=argv[0])

    parser = argparse.ArgumentParser(
        prog="paddle-losses",
        description="PaddleClas losses for PaddlePaddle: list, describe, train, eval.",
        epilog="`paddle-losses train -h` / `paddle-losses eval -h` show the trainer's options.")
    sub = parser.add_subparsers(dest="command", required=True)
    p_list = sub.add_parser("list", help="list registered losses (or heads) matching an fnmatch pattern")
    p_list.add_argument("pattern", nargs="?", default="*", help="e.g. 'Triplet*' (case-sensitive)")
    p_list.add_argument("--heads", action="store_true", help="list heads instead of losses")
    p_list.add_argument("--kind", default=None,
                        help="list another kind of part (miner, distance, reducer, backbone, neck, dataset, "
                             "sampler, metric, transform, optimizer, lr), or 'all' for every kind with counts")
    p_desc = sub.add_parser("describe", help="show a part's parameters (and a loss's inputs, outputs) and docs")
    p_desc.add_argument("name")
    p_desc.add_argument("--kind", default=None, help="the kind to look the name up in (default: the first "
                                                     "kind that has it, losses first)")
    p_merge = sub.add_parser("merge-heads", help="merge the per-rank shards of class-parallel heads into a "
                                                 "single-process .pdparams")
    p_merge.add_argument("prefix", help="checkpoint prefix, e.g. output/latest (reads latest.shard<r>-of-<W>.pdparams)")
    p_merge.add_argument("-o", "--out", default=None, help="output file (default PREFIX.merged.pdparams)")
    sub.add_parser("train", help="train from a PaddleClas-style YAML config", add_help=False)
    sub.add_parser("eval", help="evaluate a checkpoint from a PaddleClas-style YAML config", add_help=False)
    p_cfg = sub.add_parser("configs", help="list the configs shipped with the package, or copy one to edit",
                           description="`configs list` shows the shipped configs (usable as -c NAME from any "
                                       "directory); `configs copy NAME [DEST]` copies one (or `all`) to edit.")
    p_cfg.add_argument("action", nargs="?", choices=("list", "copy"), default="list")
    p_cfg.add_argument("name", nargs="?", help="config to copy: quick_start/arcmargin_ce.yaml, arcmargin_ce, or all")
    p_cfg.add_argument("dest", nargs="?", default=".", help="folder or file name to copy to (default: .)")
    p_cfg.add_argument("--force", action="store_true", help="overwrite existing files")
    args = parser.parse_args(argv)
    if args.command == "configs":
        return _configs(args)
    if args.command in ("list", "describe"):
        from .runtime import import_paddle
        import_paddle()
    try:
        if args.command == "merge-heads":
            from .heads.shards import merge_shards
            print(merge_shards(args.prefix, args.out))
        elif args.command == "list":
            print(_list(args.pattern, args.heads, args.kind))
        else:
            print(_describe(args.name, args.kind))
    except ConfigError as exc:
        print("error: " + textwrap.fill(str(exc), 100, subsequent_indent="  "), file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
