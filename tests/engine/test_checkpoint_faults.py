"""Checkpoint sets under crashes: a SIGKILL after every single file operation of a save, then a load.

Each save runs in a forked child that kills itself (``PADDLE_LOSSES_FAULT_AFTER_OPS=k``) right after its
k-th file operation; the parent then loads what is on disk. The set must be the previous complete one or
the new complete one, bit for bit, never a mix, and no temporary may survive a training start.
"""
import json
import os
import signal

import numpy as np
import paddle
import pytest

from engine_helpers import QUICKSTART, build_engine, fast, state_arrays
from paddle_losses.engine import checkpoint as ckpt
from paddle_losses.errors import ConfigError
from test_checkpoint import parts

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="fault injection forks a child process")


def _in_killed_child(k, body):
    """Run ``body()`` in a forked child that SIGKILLs itself after its k-th checkpoint file operation.

    Returns True when the child was killed, False when it finished first.
    """
    pid = os.fork()
    if pid == 0:  # child
        try:
            os.environ[ckpt.FAULT_ENV] = str(k)
            ckpt._fault_ops[0] = 0
            body()
        finally:
            os._exit(0)
    _, status = os.waitpid(pid, 0)
    return os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL


def _arrays(model, loss, opt):
    """Weights and optimizer state, the latter keyed by parameter position (generated names differ)."""
    out = {k: v.numpy().copy() for k, v in ckpt.merged_state(model, loss).items()}
    names = ckpt._param_names(opt)
    for key, value in opt.state_dict().items():
        if key == "LR_Scheduler":
            continue
        owner = max((n for n in names if key.startswith(n + "_")), key=len)
        out[f"opt.{names.index(owner)}{key[len(owner):]}"] = np.asarray(value.numpy()).copy()
    return out


def _same(a, b):
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def _bump(model, opt, loss):
    with paddle.no_grad():
        for p in model.parameters():
            p.set_value(p + 0.25)
    x = paddle.ones([2, 1, 8, 8])
    out = model(x, paddle.to_tensor([[0], [1]]))
    (out["logits"].sum() + out["features"].sum()).backward()
    opt.step()
    opt.clear_grad()


@pytest.mark.parametrize("prefix", ["latest", "best_model"])
def test_a_kill_after_any_file_operation_leaves_the_old_or_the_new_set(tmp_path, prefix):
    model, loss, opt = parts()
    _bump(model, opt, loss)
    out = str(tmp_path)
    ckpt.save_checkpoint(out, prefix, model, loss, [opt], {"metric": 0.1, "epoch": 1})
    old = _arrays(model, loss, opt)
    _bump(model, opt, loss)
    new = _arrays(model, loss, opt)
    backup = {n: (tmp_path / n).read_bytes() for n in os.listdir(tmp_path) if (tmp_path / n).is_file()}
    seen = {"old": 0, "new": 0}
    k = 0
    while True:
        k += 1
        for n in os.listdir(tmp_path):  # back to the committed old set before every trial
            if (tmp_path / n).is_file():
                os.remove(tmp_path / n)
        for n, data in backup.items():
            (tmp_path / n).write_bytes(data)
        killed = _in_killed_child(k, lambda: ckpt.save_checkpoint(out, prefix, model, loss, [opt],
                                                                  {"metric": 0.2, "epoch": 2}))
        m2, l2, o2 = parts()
        states = ckpt.load_checkpoint(os.path.join(out, prefix), m2, l2, [o2])
        got = _arrays(m2, l2, o2)
        if states["epoch"] == 1:
            assert _same(got, old), f"kill after op {k}: epoch-1 states with other weights"
            seen["old"] += 1
        else:
            assert states["epoch"] == 2 and _same(got, new), f"kill after op {k}: a mixed set"
            seen["new"] += 1
        ckpt.remove_stale_temporaries(out)
        leftovers = [n for n in os.listdir(tmp_path) if n.endswith((".staged", ".tmp"))]
        assert not leftovers, f"kill after op {k}: {leftovers} survived the start-up clean-up"
        if not killed:
            break
    assert seen["old"] >= 3 and seen["new"] >= 3, seen  # both sides of the commit point were exercised


def test_a_part_from_another_save_is_refused_naming_the_file(tmp_path):
    model, loss, opt = parts()
    ckpt.save_checkpoint(str(tmp_path), "latest", model, loss, [opt], {"metric": 0.1, "epoch": 4})
    opt_bytes = (tmp_path / "latest.pdopt").read_bytes()
    _bump(model, opt, loss)
    ckpt.save_checkpoint(str(tmp_path), "latest", model, loss, [opt], {"metric": 0.2, "epoch": 5})
    (tmp_path / "latest.pdopt").write_bytes(opt_bytes)  # epoch-4 optimizer next to epoch-5 weights
    m2, l2, o2 = parts()
    with pytest.raises(ConfigError, match=r"latest\.pdopt does not match .*latest\.manifest\.json \(epoch 5\)"):
        ckpt.load_checkpoint(str(tmp_path / "latest"), m2, l2, [o2])


def test_a_truncated_or_empty_part_is_refused_naming_the_file(tmp_path):
    model, loss, opt = parts()
    ckpt.save_checkpoint(str(tmp_path), "latest", model, loss, [opt], {"metric": 0.1, "epoch": 1})
    data = (tmp_path / "latest.pdparams").read_bytes()
    (tmp_path / "latest.pdparams").write_bytes(data[: len(data) // 2])
    with pytest.raises(ConfigError, match=r"latest\.pdparams does not match"):
        ckpt.load_checkpoint(str(tmp_path / "latest"), *parts()[:2], [parts()[2]])
    os.remove(tmp_path / "latest.manifest.json")  # no manifest: the parser itself names the file
    (tmp_path / "latest.pdparams").write_bytes(b"")
    with pytest.raises(ConfigError, match=r"latest\.pdparams is not a readable Paddle checkpoint \(it is empty\)"):
        ckpt.load_weights(str(tmp_path / "latest"), *parts()[:2])


def test_a_set_without_manifest_as_paddleclas_writes_it_still_loads(tmp_path):
    model, loss, opt = parts()
    base = str(tmp_path / "paddleclas")
    paddle.save(ckpt.merged_state(model, loss), base + ".pdparams")
    paddle.save([opt.state_dict()], base + ".pdopt")
    paddle.save({"metric": 0.3, "epoch": 7}, base + ".pdstates")
    m2, l2, o2 = parts()
    states = ckpt.load_checkpoint(base, m2, l2, [o2])
    assert states["epoch"] == 7 and states["verified"] is False
    assert _same(_arrays(m2, l2, o2), _arrays(model, loss, opt))


def test_manifest_records_size_and_sha256_of_every_part(tmp_path):
    model, loss, opt = parts()
    ckpt.save_checkpoint(str(tmp_path), "best_model", model, loss, [opt], {"metric": 0.5, "epoch": 3})
    manifest = json.loads((tmp_path / "best_model.manifest.json").read_text())
    assert manifest["epoch"] == 3
    assert sorted(manifest["parts"]) == sorted(["best_model.pdparams", "best_model.pdopt", "best_model.pdstates",
                                                os.path.join("best_model", "model.pdparams")])
    import hashlib
    for rel, entry in manifest["parts"].items():
        data = (tmp_path / rel).read_bytes()
        assert entry == {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def _small(out, extra=()):
    return fast(out, epochs=2, iters=2, extra=["Global.eval_during_train=False", "Global.plot_curves=False",
                                               "Global.save_interval=0", "Global.print_batch_step=10", *extra])


OPS_PER_SAVE = 3 + 1 + 3 + 3 + 1  # staged writes, dir fsync, manifest write/rename/dir fsync, renames, fsync


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    engine = build_engine(QUICKSTART, _small(tmp_path_factory.mktemp("full")))
    engine.train()
    return state_arrays(engine)


@pytest.mark.parametrize("k", range(1, 2 * OPS_PER_SAVE + 1))
def test_training_killed_after_any_file_operation_resumes_bit_identical(tmp_path, uninterrupted, k):
    """A 2-epoch run saves ``latest`` twice (2 x 11 file operations); kill it after operation k, resume
    (from ``latest`` if a committed set exists, else from scratch), compare with the uninterrupted run."""
    out = tmp_path / "run"
    assert _in_killed_child(k, lambda: build_engine(QUICKSTART, _small(out)).train())
    extra = [f"Global.checkpoints={out / 'latest'}"] if (out / "latest.manifest.json").exists() else []
    resumed = build_engine(QUICKSTART, _small(out, ["Global.overwrite_output=True", *extra]))
    if extra:
        assert resumed.start_epoch == (2 if k <= OPS_PER_SAVE + 5 else 3)  # the 6th op (manifest rename) commits
    resumed.train()
    b = state_arrays(resumed)
    assert uninterrupted.keys() == b.keys()
    for key in uninterrupted:
        np.testing.assert_array_equal(uninterrupted[key], b[key], err_msg=f"kill after op {k}: {key}")
    assert not [n for n in os.listdir(out) if n.endswith((".staged", ".tmp"))]


def test_start_up_clean_up_removes_only_checkpoint_temporaries(tmp_path):
    ours = ["latest.pdparams.4242.tmp", "best_model.pdopt.7.tmp", "epoch_3.pdstates.staged",
            "latest.manifest.json.tmp", os.path.join("best_model", "model.pdparams.staged")]
    (tmp_path / "best_model").mkdir()
    for name in ours + ["notes.tmp", "data.staged.txt"]:
        (tmp_path / name).write_bytes(b"x" * 10)
    removed = ckpt.remove_stale_temporaries(str(tmp_path))
    assert sorted(removed) == sorted(str(tmp_path / n) for n in ours)
    assert (tmp_path / "notes.tmp").exists() and (tmp_path / "data.staged.txt").exists()
