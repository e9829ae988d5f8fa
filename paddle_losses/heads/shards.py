"""Checkpoints of class-parallel heads: one shard file per rank, merged into (or split from) a single-process one.

A class-parallel run writes, beside the usual ``{prefix}.pdparams`` (rank 0's state, with rank 0's shard),
one ``{prefix}.shard{r}-of-{W}.pdparams`` per rank ``r``: ``{"params": {state key: shard}, "layout": {state
key: [axis, start, stop, class_num]}}``. Weights ``[D, C]`` are split along axis 1 (classes are columns),
biases ``[C]`` along axis 0, with the split rule of
:func:`paddle_losses.functional.sharded_ce.shard_bounds`.

* :func:`merge_shards` (``paddle-losses merge-heads PREFIX``) writes ``{prefix}.merged.pdparams``: the
  ``.pdparams`` with every sharded key replaced by the concatenation of the shards in rank order -- the
  weights of the same model run in one process.
* :func:`split_checkpoint` writes the shard files of a single-process ``.pdparams`` for ``W`` ranks;
  :func:`load_shard` loads a rank's file into a class-parallel model.
"""
import glob
import os
import re

import paddle

from ..errors import ConfigError
from ..functional.sharded_ce import shard_bounds

_AXES = {"weight": 1, "kernel": 1, "fc.weight": 1, "fc.bias": 0}


def shard_path(prefix, rank, world):
    """``{prefix}.shard{rank}-of-{world}.pdparams``."""
    return f"{prefix}.shard{rank}-of-{world}.pdparams"


def sharded_keys(layer):
    """``{state key: [axis, start, stop, class_num]}`` of every class-parallel head inside ``layer``."""
    out = {}
    for name, sub in layer.named_sublayers(include_self=True):
        if not getattr(sub, "class_parallel", False):
            continue
        for key in sub.state_dict():
            if key in _AXES:
                out[(name + "." if name else "") + key] = [_AXES[key], sub.class_start, sub.class_stop,
                                                           sub.class_num]
    return out


def save_shard(layer, prefix, rank, world):
    """Write this rank's shard file for ``layer`` (nothing when it has no class-parallel head)."""
    layout = sharded_keys(layer)
    if not layout:
        return None
    state = layer.state_dict()
    path = shard_path(prefix, rank, world)
    tmp = f"{path}.{os.getpid()}.tmp"
    paddle.save({"params": {k: state[k] for k in layout}, "layout": layout}, tmp)
    os.replace(tmp, path)
    return path


def merge_shards(prefix, out=None):
    """Merge ``{prefix}.shard*-of-W.pdparams`` (and ``{prefix}.pdparams`` when present) into one
    single-process ``.pdparams`` at ``out`` (default ``{prefix}.merged.pdparams``); returns its path."""
    if prefix.endswith(".pdparams"):
        prefix = prefix[: -len(".pdparams")]
    found = {}
    for path in glob.glob(glob.escape(prefix) + ".shard*-of-*.pdparams"):
        m = re.search(r"\.shard(\d+)-of-(\d+)\.pdparams$", path)
        if m:
            found.setdefault(int(m.group(2)), {})[int(m.group(1))] = path
    if len(found) != 1:
        raise ConfigError(f"merge-heads: expected the shard files of one run at {prefix}.shard<r>-of-<W>.pdparams, "
                          f"found {'none' if not found else 'runs with W = ' + str(sorted(found))}")
    world, files = next(iter(found.items()))
    missing = sorted(set(range(world)) - set(files))
    if missing:
        raise ConfigError(f"merge-heads: the shards of ranks {missing} of {world} are missing next to {prefix}")
    shards = [paddle.load(files[r]) for r in range(world)]
    layout = shards[0]["layout"]
    state = dict(paddle.load(prefix + ".pdparams")) if os.path.exists(prefix + ".pdparams") else {}
    for key, (axis, _, _, class_num) in layout.items():
        parts = [s["params"][key] for s in shards]
        state[key] = paddle.concat(parts, axis=axis)
        if state[key].shape[axis] != class_num:
            raise ConfigError(f"merge-heads: the shards of {key} hold {state[key].shape[axis]} classes, "
                              f"the head has {class_num}")
    out = out or prefix + ".merged.pdparams"
    paddle.save(state, out)
    return out


def split_checkpoint(path, world, keys):
    """Write the shard files of a single-process checkpoint ``path`` for ``world`` ranks.

    ``keys``: ``{state key: axis}`` of the head parameters to split (e.g. ``{"head.weight": 1}``; an FC head
    also ``{"head.fc.bias": 0}``). Returns the paths written, rank order.
    """
    prefix = path[: -len(".pdparams")] if path.endswith(".pdparams") else path
    state = paddle.load(prefix + ".pdparams")
    unknown = sorted(set(keys) - set(state))
    if unknown:
        raise ConfigError(f"split: {prefix}.pdparams has no {unknown}; its keys include {sorted(state)[:8]}")
    paths = []
    for rank in range(world):
        params, layout = {}, {}
        for key, axis in keys.items():
            class_num = state[key].shape[axis]
            start, stop = shard_bounds(class_num, world, rank)
            params[key] = paddle.slice(state[key], [axis], [start], [stop])
            layout[key] = [axis, start, stop, class_num]
        paths.append(shard_path(prefix, rank, world))
        paddle.save({"params": params, "layout": layout}, paths[-1])
    return paths


def load_shard(layer, prefix, rank, world):
    """Load rank ``rank``'s shard file into the class-parallel heads of ``layer``."""
    data = paddle.load(shard_path(prefix, rank, world))
    mine = sharded_keys(layer)
    for key, (axis, start, stop, class_num) in data["layout"].items():
        if key not in mine or mine[key][1:] != [start, stop, class_num]:
            raise ConfigError(f"{shard_path(prefix, rank, world)}: {key} holds classes [{start}, {stop}) of "
                              f"{class_num}, this rank's head expects {mine.get(key, 'no such key')}")
    layer.set_state_dict(data["params"])
