"""Checkpoints in PaddleClas's layout, written atomically.

For a prefix (``latest``, ``best_model``, ``epoch_N``) in ``Global.output_dir``:

* ``{prefix}.pdparams``: the model's ``state_dict`` merged with the train loss's (``loss_func.<i>.<name>``:
  CenterLoss centers, XBM memories -- everything persistable);
* ``{prefix}.pdopt``: a list with one optimizer state dict per optimizer (LR-scheduler state included);
* ``{prefix}.pdstates``: ``{"metric": best metric so far, "epoch": N}`` plus our extras
  (``best_epoch``, ``global_step``, ``history``, ``optimizer_param_names``) which PaddleClas ignores;
* ``best_model/model.pdparams``: an extra copy of the best weights (as PaddleClas writes).

Optimizer state is keyed by Paddle's generated parameter names (``conv2d_4.w_0_velocity_0``), which depend on
how many layers the process created before; ``optimizer_param_names`` records them in parameter order so
that a resume renames the keys to the current model's names (PaddleClas relies on a fresh process).

Atomicity: every file is first written completely to a temporary file in the same directory; only when all
of a prefix's files are written are they moved into place with ``os.replace``. A crash while writing
leaves the previous checkpoint intact (at worst a stray ``*.tmp`` file).
"""
import os

import paddle

from ..errors import ConfigError

SUFFIXES = (".pdparams", ".pdopt", ".pdstates")


def merged_state(model, loss):
    """``model.state_dict()`` and the loss's, merged (keys must not clash)."""
    state = dict(model.state_dict())
    if loss is not None:
        for k, v in loss.state_dict().items():
            if k in state:
                raise ValueError(f"checkpoint key {k!r} is used by both the model and the loss")
            state[k] = v
    return state


def _write_all(files):
    """``files``: ``[(final path, object)]``; write temps, then replace every final path."""
    temps = []
    try:
        for path, obj in files:
            tmp = f"{path}.{os.getpid()}.tmp"
            temps.append((tmp, path))
            paddle.save(obj, tmp)
    except BaseException:
        for tmp, _ in temps:
            if os.path.exists(tmp):
                os.remove(tmp)
        raise
    for tmp, path in temps:
        os.replace(tmp, path)


def _param_names(opt):
    names = []
    for p in opt._parameter_list:
        if isinstance(p, dict):
            names += [q.name for q in p["params"]]
        else:
            names.append(p.name)
    return names


def _rename_keys(state, old_names, new_names):
    mapping = sorted(zip(old_names, new_names), key=lambda t: -len(t[0]))
    out = {}
    for key, value in state.items():
        for old, new in mapping:
            if key.startswith(old + "_"):
                key = new + key[len(old):]
                break
        out[key] = value
    return out


def save_checkpoint(output_dir, prefix, model, loss, optimizers, states):
    """Write ``{output_dir}/{prefix}.{pdparams,pdopt,pdstates}`` atomically; returns the prefix path."""
    os.makedirs(output_dir, exist_ok=True)
    base = os.path.join(output_dir, prefix)
    params = merged_state(model, loss)
    states = dict(states, optimizer_param_names=[_param_names(opt) for opt in optimizers])
    files = [(base + ".pdparams", params),
             (base + ".pdopt", [opt.state_dict() for opt in optimizers]),
             (base + ".pdstates", states)]
    if prefix == "best_model":
        os.makedirs(os.path.join(output_dir, "best_model"), exist_ok=True)
        files.append((os.path.join(output_dir, "best_model", "model.pdparams"), params))
    _write_all(files)
    return base


def _load(path, what):
    if not os.path.exists(path):
        raise ConfigError(f"{what}: {path} does not exist")
    return paddle.load(path)


def load_weights(prefix, model, loss, strict=True, what="Global.checkpoints"):
    """Load ``{prefix}.pdparams`` into the model and the loss; returns the list of keys that were not used."""
    path = prefix if prefix.endswith(".pdparams") else prefix + ".pdparams"
    state = _load(path, what)
    model_keys = set(model.state_dict())
    model.set_state_dict({k: v for k, v in state.items() if k in model_keys})
    loss_keys = set(loss.state_dict()) if loss is not None else set()
    if loss is not None:
        loss.set_state_dict({k: v for k, v in state.items() if k in loss_keys})
    missing = sorted((model_keys | loss_keys) - set(state))
    unused = sorted(set(state) - model_keys - loss_keys)
    if strict and missing:
        raise ConfigError(f"{what}: {path} lacks the weights {missing[:5]}{' ...' if len(missing) > 5 else ''}; "
                          f"was it written by a different Arch/Loss config?")
    return unused


def load_checkpoint(prefix, model, loss, optimizers):
    """Resume: load weights, optimizer (and LR) states; returns the ``.pdstates`` dict."""
    if prefix.endswith(".pdparams"):
        prefix = prefix[: -len(".pdparams")]
    for suffix in SUFFIXES:
        if not os.path.exists(prefix + suffix):
            raise ConfigError(f"Global.checkpoints: {prefix + suffix} does not exist (a checkpoint prefix needs "
                              f"{', '.join(SUFFIXES)})")
    load_weights(prefix, model, loss)
    opt_states = paddle.load(prefix + ".pdopt")
    if not isinstance(opt_states, list):
        opt_states = [opt_states]
    if len(opt_states) != len(optimizers):
        raise ConfigError(f"Global.checkpoints: {prefix}.pdopt holds {len(opt_states)} optimizer states but the "
                          f"config builds {len(optimizers)} optimizers")
    states = paddle.load(prefix + ".pdstates")
    saved_names = states.get("optimizer_param_names") or [None] * len(optimizers)
    for opt, st, old in zip(optimizers, opt_states, saved_names):
        new = _param_names(opt)
        if old is not None and len(old) == len(new) and old != new:
            st = _rename_keys(st, old, new)
        opt.set_state_dict(st)
    return states
