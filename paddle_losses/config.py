"""PaddleClas-style YAML configs: safe loading, ``-o KEY=VALUE`` overrides, attribute access, printing.

Loading follows PaddleClas (``yaml.SafeLoader``: anchors, aliases and merge keys work; string values that
are Python literals become those literals, so an unquoted ``1e-3`` -- a string under YAML 1.1 -- becomes a
float). Unlike PaddleClas the literal conversion also applies inside lists, which fixes the
``- CenterLoss: {weight: 5e-4}`` trap where the weight stayed a string.

Override values are typed without ``eval``: Python literals via ``ast.literal_eval``; numeric arithmetic
such as ``1/255`` or ``2**10`` via a numeric-only evaluator; lower-case ``true``/``false``/``null`` become
``True``/``False``/``None``; flow collections such as ``[a, b]`` are read as YAML; anything else stays a
string (``none``, the CELoss reduction, stays the string ``"none"``).

Bounds, so that a hostile or mistaken config cannot exhaust memory or time (nothing in a config is ever
evaluated): a config file is at most ``MAX_CONFIG_BYTES``; after alias expansion it has at most
``MAX_NODES`` values and ``MAX_DEPTH`` levels -- counted on the shared alias structure before anything is
copied, so a "billion laughs" alias bomb is refused in milliseconds; an ``-o`` key has at most
``MAX_KEY_SEGMENTS`` segments and its value at most ``MAX_VALUE_CHARS`` characters and ``MAX_DEPTH``
brackets; a number written as text that overflows to inf (``1e999``) and any non-finite ``weight`` or
``margin`` are errors.
"""
import ast
import copy
import math
import operator
import os
import re
import warnings

import yaml

from ._suggest import close_matches, did_you_mean
from .errors import ConfigError, ConfigWarning

MAX_CONFIG_BYTES = 2 * 1024 * 1024  # the largest shipped config is a few KB
MAX_NODES = 100_000  # values after alias expansion; shipped configs have under 500 (expanding 10^5 takes ~1 s)
MAX_DEPTH = 64  # nesting levels; real configs use 6
MAX_KEY_SEGMENTS = 32
MAX_VALUE_CHARS = 4096

KNOWN_SECTIONS = ("Global", "Arch", "Loss", "UnLabelLoss", "Optimizer", "DataLoader", "Metric", "AMP", "EMA",
                  "Infer", "Slim", "Export")
KNOWN_SUBKEYS = {
    "Loss": ("Train", "Eval"),
    "UnLabelLoss": ("Train", "Eval"),
    "Metric": ("Train", "Eval"),
    "Global": ("checkpoints", "pretrained_model", "output_dir", "device", "save_interval", "eval_during_train",
               "eval_interval", "epochs", "print_batch_step", "use_visualdl", "image_shape",
               "save_inference_dir", "eval_mode", "retrieval_feature_from", "feature_normalize",
               "feature_binarize", "re_ranking", "sim_block_size", "seed", "update_freq", "iter_per_epoch",
               "start_eval_epoch", "log_ranks", "print_mem_info", "use_multilabel", "train_mode", "to_static",
               "use_dali", "class_num", "distributed", "num_threads", "gather_embeddings", "plot_curves",
               "progress_bar", "uniform_output_enabled", "eval_before_train", "diagnostics", "overwrite_output",
               "trust_checkpoints", "on_nonfinite_loss"),
}


class AttrDict(dict):
    """A dict with attribute access (``cfg.Global.epochs``); nested mappings, also inside lists, are AttrDicts."""

    def __getattr__(self, key):
        try:
            return self[key]
        except KeyError:
            raise AttributeError(key) from None

    def __setattr__(self, key, value):
        self[key] = value

    def __delattr__(self, key):
        try:
            del self[key]
        except KeyError:
            raise AttributeError(key) from None

    def __deepcopy__(self, memo):
        return AttrDict({copy.deepcopy(k, memo): copy.deepcopy(v, memo) for k, v in self.items()})


def to_attrdict(obj):
    """Recursively convert mappings to :class:`AttrDict` (lists are walked, other values kept)."""
    if isinstance(obj, dict):
        return AttrDict({k: to_attrdict(v) for k, v in obj.items()})
    if isinstance(obj, list):
        return [to_attrdict(v) for v in obj]
    return obj


def to_plain(obj):
    """Recursively convert AttrDicts back to plain dicts (for YAML dumping)."""
    if isinstance(obj, dict):
        return {k: to_plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_plain(v) for v in obj)
    return obj


# ----------------------------------------------------------------------------------------- value typing
_NUM_OPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
            ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: operator.pow}
_UNARY = {ast.UAdd: operator.pos, ast.USub: operator.neg}


def eval_numeric(text):
    """Evaluate plain numeric arithmetic (``1/255``, ``2**10``, ``-0.5*3``) without ``eval``.

    Only number literals and ``+ - * / // % **`` with parentheses are allowed; anything else raises
    ValueError. Exponents are bounded so that ``9**9**9`` cannot hang the process.
    """
    def walk(node):
        if isinstance(node, ast.Expression):
            return walk(node.body)
        if isinstance(node, ast.Constant) and type(node.value) in (int, float):
            return node.value
        if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
            return _UNARY[type(node.op)](walk(node.operand))
        if isinstance(node, ast.BinOp) and type(node.op) in _NUM_OPS:
            left, right = walk(node.left), walk(node.right)
            if isinstance(node.op, ast.Pow) and (abs(right) > 64 or abs(left) > 1e6):
                raise ValueError("exponent too large")
            return _NUM_OPS[type(node.op)](left, right)
        raise ValueError("not numeric arithmetic")

    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as exc:
        raise ValueError(str(exc)) from None
    value = walk(tree)
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError("result is not finite")
    return value


_BOOL_WORDS = {"true": True, "false": False, "null": None}


def parse_value(text):
    """Type one ``-o`` value (see the module docstring for the rules)."""
    s = text.strip()
    if len(s) > MAX_VALUE_CHARS:
        raise ConfigError(f"an override value has {len(s):,} characters; at most {MAX_VALUE_CHARS} are accepted")
    depth = level = 0
    for ch in s:
        level += ch in "[{("
        level -= ch in "]})"
        depth = max(depth, level)
    if depth > MAX_DEPTH:
        raise ConfigError(f"an override value nests {depth} brackets deep; at most {MAX_DEPTH} are accepted")
    if s in _BOOL_WORDS:
        return _BOOL_WORDS[s]
    try:
        value = ast.literal_eval(s)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        pass
    else:
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"override value {s!r} overflows to {value}; write a finite number")
        return value
    try:
        return eval_numeric(s)
    except (ValueError, ZeroDivisionError, OverflowError, RecursionError):
        pass
    if s[:1] in "[{":
        try:
            data = yaml.safe_load(s)
        except (yaml.YAMLError, RecursionError):
            data = None
        else:
            check_size(data, f"override value {s[:40]!r}")
            return _coerce_literals(data)
    return text


_FLOATISH = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")


def _coerce_scalar(v):
    # PaddleClas literal_evals every string held in a mapping. We do the same for things that read as
    # numbers, booleans, None or tuples/lists, everywhere (lists included).
    if not isinstance(v, str):
        return v
    s = v.strip()
    if _FLOATISH.match(s) or s[:1] in "([{" or s in ("True", "False", "None"):
        try:
            return ast.literal_eval(s)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            return v
    return v


def _is_weight_or_margin(key):
    return isinstance(key, str) and ("weight" in key.lower() or "margin" in key.lower())


def _coerce_literals(obj, path=()):
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            value = _coerce_literals(v, path + (k,))
            if isinstance(value, float) and not math.isfinite(value) and _is_weight_or_margin(k):
                raise ConfigError(f"{_fmt_path(path + (k,)) or k} is {value}; weights and margins must be finite")
            out[k] = value
        return out
    if isinstance(obj, list):
        return [_coerce_literals(v, path + (i,)) for i, v in enumerate(obj)]
    value = _coerce_scalar(obj)
    if isinstance(obj, str) and isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{_fmt_path(path) or 'a value'}: {obj.strip()!r} overflows to {value}; "
                          f"write a finite number")
    return value


def check_size(data, source="the config"):
    """Refuse a parsed YAML tree whose alias expansion exceeds ``MAX_NODES`` or ``MAX_DEPTH`` (or is cyclic).

    Sizes are memoised per shared node, so the check is linear in the *unexpanded* document.
    """
    sizes, active = {}, set()

    def size(node, depth):
        if depth > MAX_DEPTH:
            raise ConfigError(f"{source} nests deeper than {MAX_DEPTH} levels")
        if not isinstance(node, (dict, list)):
            return 1
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in active:
            raise ConfigError(f"{source} has an alias that contains itself (a cycle)")
        active.add(key)
        children = node.values() if isinstance(node, dict) else node
        total = 1
        for child in children:
            total += size(child, depth + 1)
            if total > MAX_NODES:
                raise ConfigError(f"{source} expands to more than {MAX_NODES:,} values (anchors and aliases "
                                  f"multiply what they repeat); a config needs a few hundred")
        active.discard(key)
        sizes[key] = total
        return total

    return size(data, 0)


# ----------------------------------------------------------------------------------------- overrides
def _fmt_path(parts):
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (("." if out else "") + str(p))
    return out


def apply_override(cfg, option):
    """Apply one ``KEY.PATH=VALUE`` override to ``cfg`` in place (PaddleClas's ``-o`` semantics).

    Missing dict keys, intermediate or leaf, are created (a warning suggests close existing keys); list
    segments are integer indices (negative allowed); indexing a scalar or a missing list index raises
    :class:`ConfigError` naming the path.
    """
    if not isinstance(option, str) or "=" not in option:
        raise ConfigError(f"override {option!r} must have the form KEY=VALUE, e.g. Global.epochs=10")
    key, value = option.split("=", 1)
    key = key.strip()
    if not key or any(not seg for seg in key.split(".")):
        raise ConfigError(f"override {option!r} has an empty key segment; expected e.g. Global.epochs=10")
    segs = key.split(".")
    if len(segs) > MAX_KEY_SEGMENTS:
        raise ConfigError(f"override key {key[:60]!r}... has {len(segs)} segments; at most {MAX_KEY_SEGMENTS} "
                          f"are accepted")
    try:
        value = parse_value(value)
    except ConfigError as exc:
        raise ConfigError(f"override {key}: {exc}") from None
    if isinstance(value, float) and not math.isfinite(value) and _is_weight_or_margin(segs[-1]):
        raise ConfigError(f"override {key}={value}: weights and margins must be finite")
    node, done = cfg, []
    for i, seg in enumerate(segs):
        last = i == len(segs) - 1
        if isinstance(node, list):
            try:
                idx = int(seg)
            except ValueError:
                raise ConfigError(f"override {option!r}: {_fmt_path(done)} is a list, so the next key must be "
                                  f"an integer index, got {seg!r}") from None
            if not -len(node) <= idx < len(node):
                raise ConfigError(f"override {option!r}: index {idx} is out of range for {_fmt_path(done)} "
                                  f"(a list of {len(node)} entries)")
            done.append(idx)
            if last:
                node[idx] = to_attrdict(value)
            else:
                node = node[idx]
        elif isinstance(node, dict):
            known = KNOWN_SECTIONS if not done else (KNOWN_SUBKEYS.get(done[0], ()) if len(done) == 1 else ())
            if seg not in node and seg not in known:
                where = _fmt_path(done) or "the top level"
                hint = did_you_mean(seg, sorted({k for k in node if isinstance(k, str)} | set(known)))
                warnings.warn(f"override {option!r} adds the new key {seg!r} under {where}.{hint}",
                              ConfigWarning, stacklevel=2)
            if seg not in node and not last:
                node[seg] = AttrDict()
            done.append(seg)
            if last:
                node[seg] = to_attrdict(value)
            else:
                node = node[seg]
        else:
            raise ConfigError(f"override {option!r}: {_fmt_path(done)} is a {type(node).__name__} "
                              f"({node!r}), not a mapping or list, so it has no key {seg!r}")
    return cfg


# ----------------------------------------------------------------------------------------- loading
def _warn_typos(cfg):
    for key in list(cfg):
        if key not in KNOWN_SECTIONS:
            hits = close_matches(key, KNOWN_SECTIONS, n=1, cutoff=0.75)
            if hits:
                warnings.warn(f"config section {key!r} is not a known section and is ignored. "
                              f"Did you mean {hits[0]!r}?", ConfigWarning, stacklevel=3)
    for section, known in KNOWN_SUBKEYS.items():
        sub = cfg.get(section)
        if not isinstance(sub, dict):
            continue
        for key in sub:
            if key not in known:
                hits = close_matches(key, known, n=1, cutoff=0.8)
                if hits:
                    warnings.warn(f"config key {section}.{key} is not a known key. Did you mean "
                                  f"{section}.{hits[0]}?", ConfigWarning, stacklevel=3)


def parse_config(text_or_mapping, source=None):
    """Parse YAML text (or take a mapping) into an :class:`AttrDict` with literals coerced.

    ``source`` (the file name) is named in every error. Sizes are bounded (see the module docstring).
    """
    where = f"config file {source}" if source else "the config"
    if isinstance(text_or_mapping, (str, bytes)):
        if len(text_or_mapping) > MAX_CONFIG_BYTES:
            raise ConfigError(f"{where} has {len(text_or_mapping):,} bytes; a config is at most "
                              f"{MAX_CONFIG_BYTES:,} (is this the right file?)")
        try:
            data = yaml.load(text_or_mapping, Loader=yaml.SafeLoader)
        except yaml.YAMLError as exc:
            raise ConfigError(f"{where} is not valid YAML: {exc}") from None
        except RecursionError:
            raise ConfigError(f"{where} nests deeper than YAML parsing allows") from None
        check_size(data, where)
    else:
        check_size(text_or_mapping, where)
        data = copy.deepcopy(text_or_mapping)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: a config must be a YAML mapping of sections (Global, Arch, Loss, ...), "
                          f"got a {type(data).__name__}")
    try:
        return to_attrdict(_coerce_literals(data))
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def load_config(path=None, overrides=None, validate=True, text=None):
    """Load a PaddleClas-style YAML config, apply ``-o`` overrides in order, and validate ``Loss``.

    Args:
        path: YAML file path.
        overrides: list of ``KEY=VALUE`` strings (the ``-o`` options), applied in order.
        validate: check ``Loss.Train``/``Loss.Eval`` entries against the registered constructors.
        text: YAML text to parse instead of ``path``.

    Returns:
        :class:`AttrDict`. Raises :class:`ConfigError` with the config path of the first problem.
    """
    if text is None:
        if path is None:
            raise ConfigError("load_config needs a path or text")
        try:
            if os.path.getsize(path) > MAX_CONFIG_BYTES:
                raise ConfigError(f"config file {path} has {os.path.getsize(path):,} bytes; a config is at most "
                                  f"{MAX_CONFIG_BYTES:,} (is this the right file?)")
            with open(path, encoding="utf-8") as fh:
                text = fh.read()
        except FileNotFoundError:
            raise ConfigError(f"config file {path} does not exist") from None
        except IsADirectoryError:
            raise ConfigError(f"config file {path} is a directory") from None
        except UnicodeDecodeError as exc:
            raise ConfigError(f"config file {path} is not UTF-8 text ({exc.reason} at byte {exc.start})") from None
        except OSError as exc:
            raise ConfigError(f"cannot read config file {path}: {exc.strerror or exc}") from None
    cfg = parse_config(text, source=path)
    for opt in overrides or []:
        apply_override(cfg, opt)
    _warn_typos(cfg)
    if validate:
        from .validation import validate_config
        validate_config(cfg)
    return cfg


def format_config(cfg, indent=0):
    """Render ``cfg`` the way PaddleClas's ``print_config`` logs it (``k : v``, 4-space levels, dashes)."""
    lines = []
    for k, v in cfg.items():
        pad = " " * indent
        if isinstance(v, dict):
            lines.append(f"{pad}{k} : ")
            lines.extend(format_config(v, indent + 4))
        elif isinstance(v, list) and v and isinstance(v[0], dict):
            lines.append(f"{pad}{k} : ")
            for item in v:
                lines.extend(format_config(item, indent + 4) if isinstance(item, dict)
                             else [f"{' ' * (indent + 4)}{item}"])
        else:
            lines.append(f"{pad}{k} : {v}")
        if indent == 0 and isinstance(k, str) and k[:1].isupper():
            lines.append("-" * 60)
    return lines
