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

Atomicity (the three files -- four for best_model -- form one set; a reader sees the previous complete set
or the new complete set, never a mix):

1. every part is serialised in memory, written to ``<part>.staged`` and fsync'd; the directory is fsync'd;
2. commit point: ``{prefix}.manifest.json`` (format, epoch, and the size and sha256 of every part) is
   written to a temporary file, fsync'd, renamed over the old manifest, and the directory fsync'd;
3. each ``<part>.staged`` is renamed onto its final name; the directories are fsync'd.

A crash before 2 leaves the old manifest and the old parts: the old set. A crash after 2 leaves the new
manifest with some parts still staged: loading (and every save or train start) finishes the renames
("roll forward"), giving the new set. Loading verifies every part it reads against the manifest and
refuses, naming the file, a part that matches neither it nor its staged copy. A set without a manifest
(written by PaddleClas or by an earlier version of this project) is loaded as it is, unverified, since
nothing records which files belong together. Stray ``*.staged`` and ``*.tmp`` files are removed when
training starts (:func:`remove_stale_temporaries`).

Files are loaded through :func:`~paddle_losses.engine.safe_load.safe_load` (no code runs from a file).
"""
import hashlib
import io
import json
import os
import signal

import paddle

from ..errors import ConfigError
from .safe_load import safe_load

SUFFIXES = (".pdparams", ".pdopt", ".pdstates")
MANIFEST_SUFFIX = ".manifest.json"
STAGED_SUFFIX = ".staged"
MANIFEST_FORMAT = 1
FAULT_ENV = "PADDLE_LOSSES_FAULT_AFTER_OPS"
_fault_ops = [0]


def _fault_point():
    """Fault injection for the tests: ``PADDLE_LOSSES_FAULT_AFTER_OPS=k`` SIGKILLs the process right after
    the k-th file operation (write+fsync, rename or directory fsync) of checkpoint saving."""
    limit = os.environ.get(FAULT_ENV)
    if not limit:
        return
    _fault_ops[0] += 1
    if _fault_ops[0] >= int(limit):
        os.kill(os.getpid(), signal.SIGKILL)


def merged_state(model, loss):
    """``model.state_dict()`` and the loss's, merged (keys must not clash)."""
    state = dict(model.state_dict())
    if loss is not None:
        for k, v in loss.state_dict().items():
            if k in state:
                raise ValueError(f"checkpoint key {k!r} is used by both the model and the loss")
            state[k] = v
    return state


def _fsync_dir(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    _fault_point()


def _write_durably(path, data):
    with open(path, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    _fault_point()


def _replace(src, dst):
    os.replace(src, dst)
    _fault_point()


def _serialise(obj):
    buf = io.BytesIO()
    paddle.save(obj, buf)
    return buf.getvalue()


def _digest(data):
    return hashlib.sha256(data).hexdigest()


def _file_matches(path, entry):
    try:
        if os.path.getsize(path) != entry["size"]:
            return False
        h = hashlib.sha256()
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
        return h.hexdigest() == entry["sha256"]
    except OSError:
        return False


def _read_manifest(base):
    path = base + MANIFEST_SUFFIX
    if not os.path.exists(path):
        return None
    try:
        with open(path, encoding="utf-8") as fh:
            manifest = json.load(fh)
        parts = manifest["parts"]
        if manifest.get("format") != MANIFEST_FORMAT or not isinstance(parts, dict):
            raise ValueError("unknown format")
        for entry in parts.values():
            int(entry["size"]), str(entry["sha256"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"{path} is not a valid checkpoint manifest ({exc}); the checkpoint {base} cannot "
                          f"be verified (delete the manifest only if you know the parts belong together)") \
            from None
    return manifest


def _roll_forward(base, strict):
    """Finish an interrupted install of the set ``base`` (see the module docstring); returns the manifest.

    ``strict``: raise a ConfigError naming the first part that matches neither the manifest nor its staged
    copy (otherwise leave it; a later load refuses it).
    """
    manifest = _read_manifest(base)
    if manifest is None:
        return None
    root = os.path.dirname(base)
    moved = set()
    for rel, entry in manifest["parts"].items():
        final = os.path.join(root, rel)
        if _file_matches(final, entry):
            continue
        staged = final + STAGED_SUFFIX
        if _file_matches(staged, entry):
            try:
                _replace(staged, final)
            except FileNotFoundError:
                if not _file_matches(final, entry):  # else another process finished this rename first
                    raise ConfigError(f"checkpoint {base}: {staged} vanished while finishing an interrupted "
                                      f"save") from None
            except OSError as exc:
                raise ConfigError(f"cannot finish the interrupted checkpoint save {base}: renaming {staged} "
                                  f"to {final} failed ({exc.strerror or exc})") from None
            moved.add(os.path.dirname(final))
        elif strict:
            raise ConfigError(
                f"checkpoint {base}: {final} does not match {base + MANIFEST_SUFFIX} (epoch "
                f"{manifest.get('epoch')}): the parts of this checkpoint come from different saves or the file "
                f"was modified or truncated; it is refused. Resume from another checkpoint (epoch_N, "
                f"best_model) or restart without Global.checkpoints")
    for d in sorted(moved):
        _fsync_dir(d)
    return manifest


def remove_stale_temporaries(output_dir):
    """Finish committed-but-interrupted saves in ``output_dir``, then delete leftover temporaries.

    Returns the list of removed paths (so that the trainer can log them).
    """
    removed = []
    if not os.path.isdir(output_dir):
        return removed
    for name in sorted(os.listdir(output_dir)):
        if name.endswith(MANIFEST_SUFFIX):
            try:
                _roll_forward(os.path.join(output_dir, name[: -len(MANIFEST_SUFFIX)]), strict=False)
            except ConfigError:
                pass  # an unreadable manifest is reported when that checkpoint is loaded
    for folder in (output_dir, os.path.join(output_dir, "best_model")):
        if not os.path.isdir(folder):
            continue
        for name in sorted(os.listdir(folder)):
            stale = name.endswith(STAGED_SUFFIX) or name.endswith(MANIFEST_SUFFIX + ".tmp") or (
                name.endswith(".tmp") and any(suffix + "." in name for suffix in SUFFIXES))
            path = os.path.join(folder, name)
            if stale and os.path.isfile(path):
                os.remove(path)
                removed.append(path)
    return removed


def _write_set(output_dir, prefix, files, epoch):
    """``files``: ``[(path relative to output_dir, bytes)]``; the staged / commit / install protocol."""
    base = os.path.join(output_dir, prefix)
    _roll_forward(base, strict=False)  # a previous save of this prefix may still be half-installed
    folders = sorted({os.path.dirname(os.path.join(output_dir, rel)) for rel, _ in files})
    for rel, data in files:
        _write_durably(os.path.join(output_dir, rel) + STAGED_SUFFIX, data)
    for d in folders:
        _fsync_dir(d)
    manifest = {"format": MANIFEST_FORMAT, "prefix": prefix, "epoch": epoch,
                "parts": {rel: {"size": len(data), "sha256": _digest(data)} for rel, data in files}}
    tmp = base + MANIFEST_SUFFIX + ".tmp"
    _write_durably(tmp, json.dumps(manifest, indent=1).encode("utf-8"))
    _replace(tmp, base + MANIFEST_SUFFIX)
    _fsync_dir(output_dir)
    for rel, _ in files:
        final = os.path.join(output_dir, rel)
        _replace(final + STAGED_SUFFIX, final)
    for d in folders:
        _fsync_dir(d)


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
    """Write the set ``{output_dir}/{prefix}.{pdparams,pdopt,pdstates}`` atomically; returns the prefix path."""
    os.makedirs(output_dir, exist_ok=True)
    params = _serialise(merged_state(model, loss))
    states = dict(states, optimizer_param_names=[_param_names(opt) for opt in optimizers])
    files = [(prefix + ".pdparams", params),
             (prefix + ".pdopt", _serialise([opt.state_dict() for opt in optimizers])),
             (prefix + ".pdstates", _serialise(states))]
    if prefix == "best_model":
        os.makedirs(os.path.join(output_dir, "best_model"), exist_ok=True)
        files.append((os.path.join("best_model", "model.pdparams"), params))
    _write_set(output_dir, prefix, files, states.get("epoch"))
    return os.path.join(output_dir, prefix)


def _strip_suffix(prefix):
    for suffix in SUFFIXES:
        if prefix.endswith(suffix):
            return prefix[: -len(suffix)]
    return prefix


def _load(path, what, trust):
    if not os.path.exists(path):
        raise ConfigError(f"{what}: {path} does not exist")
    try:
        return safe_load(path, trust=trust)
    except ConfigError as exc:
        raise ConfigError(f"{what}: {exc}") from None


def _verify(base, what):
    try:
        return _roll_forward(base, strict=True)
    except ConfigError as exc:
        raise ConfigError(f"{what}: {exc}") from None


def load_weights(prefix, model, loss, strict=True, what="Global.checkpoints", trust=False, verify=True):
    """Load ``{prefix}.pdparams`` into the model and the loss; returns the list of keys that were not used.

    When the prefix has a manifest, the set is verified first (and an interrupted save finished);
    ``verify=False`` is for a caller that has just verified it.
    """
    path = prefix if prefix.endswith(".pdparams") else prefix + ".pdparams"
    if verify:
        _verify(_strip_suffix(path), what)
    state = _load(path, what, trust)
    if not isinstance(state, dict):
        raise ConfigError(f"{what}: {path} holds a {type(state).__name__}, not a state dict of weights")
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


def load_checkpoint(prefix, model, loss, optimizers, trust=False):
    """Resume: verify the set, load weights, optimizer (and LR) states; returns the ``.pdstates`` dict."""
    what = "Global.checkpoints"
    prefix = _strip_suffix(prefix)
    manifest = _verify(prefix, what)
    for suffix in SUFFIXES:
        if not os.path.exists(prefix + suffix):
            raise ConfigError(f"{what}: {prefix + suffix} does not exist (a checkpoint prefix needs "
                              f"{', '.join(SUFFIXES)})")
    states = _load(prefix + ".pdstates", what, trust)
    if not isinstance(states, dict):
        raise ConfigError(f"{what}: {prefix}.pdstates holds a {type(states).__name__}, not a dict")
    if manifest is not None and states.get("epoch") != manifest.get("epoch"):
        raise ConfigError(f"{what}: {prefix}.pdstates is from epoch {states.get('epoch')} but the manifest "
                          f"from epoch {manifest.get('epoch')}; the checkpoint is refused")
    load_weights(prefix, model, loss, what=what, trust=trust, verify=False)  # the set was verified above
    opt_states = _load(prefix + ".pdopt", what, trust)
    if not isinstance(opt_states, list):
        opt_states = [opt_states]
    if len(opt_states) != len(optimizers):
        raise ConfigError(f"{what}: {prefix}.pdopt holds {len(opt_states)} optimizer states but the "
                          f"config builds {len(optimizers)} optimizers")
    saved_names = states.get("optimizer_param_names") or [None] * len(optimizers)
    for opt, st, old in zip(optimizers, opt_states, saved_names):
        if not isinstance(st, dict):
            raise ConfigError(f"{what}: {prefix}.pdopt holds a {type(st).__name__} where an optimizer state "
                              f"dict belongs")
        new = _param_names(opt)
        if old is not None and len(old) == len(new) and old != new:
            st = _rename_keys(st, old, new)
        opt.set_state_dict(st)
    states["verified"] = manifest is not None
    return states
