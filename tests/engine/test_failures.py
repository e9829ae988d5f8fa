"""Bad input and failures end cleanly: unreadable images, crafted or corrupt checkpoints, bad Global values,
an existing run in output_dir, a non-finite loss, Ctrl-C -- each one `error: ...` line, never a hang or a
traceback (the CLI's ``run`` is called in-process; Ctrl-C in a real subprocess)."""
import os
import pickle
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import yaml

from engine_helpers import QUICKSTART, ROOT, build_engine, fast
from paddle_losses.engine.cli import run
from paddle_losses.errors import ConfigError, TrainingError


def _run(capsys, config, overrides, mode="train", flags=()):
    """``run`` of the CLI: (exit code, stderr) -- the error line, if any, is the SystemExit message."""
    argv = ["-c", str(config)] + [a for o in overrides for a in ("-o", o)] + list(flags)
    try:
        code, message = run(argv, mode), ""
    except SystemExit as exc:  # a string code is printed to stderr with exit status 1
        code, message = (1, exc.code) if isinstance(exc.code, str) else (exc.code, "")
    err = capsys.readouterr().err
    return code, (message or err)


def _fast(out, **kw):
    return fast(out, extra=["Global.plot_curves=False", "Global.eval_during_train=False", *kw.get("extra", ())],
                epochs=kw.get("epochs", 1), iters=kw.get("iters", 2))


# ------------------------------------------------------------------------------------------- bad samples
def _image_config(tmp_path, image_folder, on_bad=None, workers=0):
    tf = [{"DecodeImage": {"to_rgb": True}}, {"ResizeImage": {"size": 8}},
          {"NormalizeImage": {"scale": "1.0/255.0", "mean": [0.5] * 3, "std": [0.5] * 3, "order": ""}},
          {"ToCHWImage": None}]
    # a truncated PNG (header only) on line 3 of the train and query lists
    bad = image_folder / "images" / "0" / "1.png"
    bad.write_bytes(bad.read_bytes()[:40])

    def ds(split, relabel=False):
        d = {"name": "ImageNetDataset", "image_root": str(image_folder / "images"),
             "cls_label_path": str(image_folder / f"{split}_list.txt"), "transform_ops": tf, "relabel": relabel}
        if on_bad:
            d["on_bad_sample"] = on_bad
        return {"dataset": d, "sampler": {"batch_size": 8}, "loader": {"num_workers": workers}}

    cfg = {
        "Global": {"output_dir": str(tmp_path / "out"), "epochs": 1, "eval_mode": "retrieval", "seed": 1,
                   "print_batch_step": 1, "progress_bar": False, "plot_curves": False},
        "Arch": {"name": "RecModel", "Backbone": {"name": "DigitsMLP", "in_dim": 192, "hidden": 16, "out_dim": 8},
                 "Neck": {"name": "FC", "embedding_size": 8, "class_num": 8},
                 "Head": {"name": "FC", "embedding_size": 8, "class_num": 4}},
        "Loss": {"Train": [{"CELoss": {"weight": 1.0}}]},
        "Optimizer": {"name": "Adam", "lr": {"name": "ConstLR", "learning_rate": 0.001}},
        "DataLoader": {"Train": {**ds("train", relabel=True),
                                 "sampler": {"name": "DistributedBatchSampler", "batch_size": 8}},
                       "Eval": {"Query": ds("query"), "Gallery": ds("gallery")}},
        "Metric": {"Eval": [{"Recallk": {"topk": [1]}}]},
    }
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_an_unreadable_image_is_skipped_named_and_counted_by_default(tmp_path, image_folder, capsys):
    code, _ = _run(capsys, _image_config(tmp_path, image_folder), [])
    assert code == 0
    log = (tmp_path / "out" / "train.log").read_text()
    assert "train_list.txt:2: cannot read image" in log and "0/1.png" in log
    assert "skipped, the next sample is used instead" in log
    assert "[Train][Epoch 1/1] skipped 1 unreadable samples" in log
    assert "query_list.txt:2: cannot read image" in log and "[Eval][Epoch 1] skipped 1 unreadable samples" in log


@pytest.mark.parametrize("workers", [0, 2])
def test_on_bad_sample_error_stops_with_the_file_and_line_never_hangs(tmp_path, image_folder, capsys, workers):
    start = time.time()
    config = _image_config(tmp_path, image_folder, on_bad="error", workers=workers)
    if workers:
        # In a fresh process, as a user runs it: Paddle's SIGCHLD handler watches every loader worker of the
        # process, so a worker of an earlier test that ends late would be reported as this loader's failure.
        proc = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "train.py"), "-c", str(config)],
                              cwd=str(tmp_path), capture_output=True, text=True, timeout=120,
                              env=dict(os.environ, PYTHONPATH=ROOT))
        assert "Traceback" not in proc.stderr, proc.stderr
        errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
        code, err = proc.returncode, errors[0] if errors else proc.stderr
    else:
        code, err = _run(capsys, config, [])
    assert time.time() - start < 60
    assert code != 0 and err.startswith("error: ") and "Traceback" not in err
    assert "train_list.txt:2: cannot read image" in err and "0/1.png" in err, err


def test_eval_mode_with_an_unreadable_image_errors_cleanly(tmp_path, image_folder, capsys):
    cfg = _image_config(tmp_path, image_folder, on_bad="error")
    code, err = _run(capsys, cfg, [], mode="eval", flags=["--untrained"])
    assert code != 0 and "query_list.txt:2: cannot read image" in err


# ------------------------------------------------------------------------------------------- safe loading
class _RunsCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_crafted_checkpoint_is_refused_and_never_runs_code(tmp_path, capsys):
    marker = tmp_path / "pwned"
    with open(tmp_path / "evil.pdparams", "wb") as fh:
        pickle.dump({"w": np.zeros(2, np.float32), "x": _RunsCode(marker)}, fh)
    for key in ("pretrained_model", "checkpoints"):
        code, err = _run(capsys, QUICKSTART, _fast(tmp_path / key) + [f"Global.{key}={tmp_path / 'evil'}"],
                         mode="eval")
        assert code != 0 and "evil.pdparams references posix.system" in err and "trust_checkpoints" in err, err
    assert not marker.exists()


def test_trust_checkpoints_opts_out_for_files_holding_other_objects(tmp_path):
    import datetime
    engine = build_engine(QUICKSTART, _fast(tmp_path / "a"))
    state = {k: v.numpy() for k, v in engine.model.state_dict().items()}
    state["saved_on"] = datetime.date(2024, 1, 1)
    with open(tmp_path / "w.pdparams", "wb") as fh:
        pickle.dump(state, fh, protocol=4)
    with pytest.raises(ConfigError, match=r"w\.pdparams references datetime\.date"):
        build_engine(QUICKSTART, _fast(tmp_path / "b") + [f"Global.pretrained_model={tmp_path / 'w'}"])
    build_engine(QUICKSTART, _fast(tmp_path / "c") + [f"Global.pretrained_model={tmp_path / 'w'}",
                                                     "Global.trust_checkpoints=True"])


def test_a_zero_byte_checkpoint_is_named(tmp_path, capsys):
    (tmp_path / "z.pdparams").write_bytes(b"")
    code, err = _run(capsys, QUICKSTART, _fast(tmp_path / "o") + [f"Global.pretrained_model={tmp_path / 'z'}"])
    assert code != 0 and "z.pdparams is not a readable Paddle checkpoint (it is empty)" in err


# ------------------------------------------------------------------------------------------- Global values
@pytest.mark.parametrize("override,message", [
    ("Global.eval_interval=0", "Global.eval_interval must be an integer >= 1"),
    ("Global.save_interval=abc", "Global.save_interval must be an integer >= 0"),
    ("Global.sim_block_size=0", "Global.sim_block_size must be an integer >= 1"),
    ("Global.iter_per_epoch=-5", "Global.iter_per_epoch must be an integer >= 1"),
    ("Global.epochs=abc", "Global.epochs must be an integer >= 1"),
    ("Global.epochs=0", "Global.epochs must be an integer >= 1"),
    ("Global.epochs=-1", "Global.epochs must be an integer >= 1"),
    ("Global.epochs=2.5", "Global.epochs must be an integer >= 1"),
    ("Global.print_batch_step=0", "Global.print_batch_step must be an integer >= 1"),
    ("Global.eval_during_train=yes", "Global.eval_during_train must be true or false"),
    ("Global.on_nonfinite_loss=ignore", "Global.on_nonfinite_loss must be one of stop, skip"),
    ("Global.feature_binarize=half", "Global.feature_binarize must be one of round, sign or null"),
    ("Loss.Train.0.CELoss.weight=1e999", "overflows to inf"),
    ("DataLoader.Train.loader.num_workers=two", "DataLoader.Train.loader.num_workers must be an integer"),
])
def test_bad_global_values_fail_at_start_up_with_the_config_path(tmp_path, capsys, override, message):
    start = time.time()
    code, err = _run(capsys, QUICKSTART, _fast(tmp_path) + [override])
    assert code == 1 and err.startswith("error: ") and message in err, err
    assert not (tmp_path / "latest.pdparams").exists() and time.time() - start < 30


def test_a_new_run_into_a_finished_run_refuses_unless_overwrite_output(tmp_path, capsys):
    assert _run(capsys, QUICKSTART, _fast(tmp_path))[0] == 0
    before = (tmp_path / "latest.pdparams").read_bytes()
    code, err = _run(capsys, QUICKSTART, _fast(tmp_path, extra=["Global.seed=5"]))
    assert code == 1 and "already holds a run" in err and "Global.overwrite_output=True" in err
    assert (tmp_path / "latest.pdparams").read_bytes() == before
    code, _ = _run(capsys, QUICKSTART, _fast(tmp_path, extra=["Global.seed=5", "Global.overwrite_output=True"]))
    assert code == 0 and (tmp_path / "latest.pdparams").read_bytes() != before
    assert "overwrite_output is True: the previous run's checkpoints" in (tmp_path / "train.log").read_text()


def test_resuming_with_another_epoch_count_warns(tmp_path):
    build_engine(QUICKSTART, _fast(tmp_path, epochs=1)).train()
    build_engine(QUICKSTART, _fast(tmp_path, epochs=3, extra=[f"Global.checkpoints={tmp_path / 'latest'}"]))
    assert "WARNING: Global.epochs is 3 but the checkpoint was written by a run of 1 epochs" in \
        (tmp_path / "train.log").read_text()


# ------------------------------------------------------------------------------------------- non-finite loss
def test_a_non_finite_loss_stops_naming_the_step_the_key_and_the_batch(tmp_path):
    # a finite weight whose product with the loss overflows float32: a real inf loss from finite inputs
    engine = build_engine(QUICKSTART, _fast(tmp_path, extra=["Loss.Train.0.CELoss.weight=3e38"]))
    before = {k: v.numpy().copy() for k, v in engine.model.state_dict().items()}
    with pytest.raises(TrainingError, match=r"epoch 1 step 0 .*CELoss=inf, loss=inf.*anchors without a positive"
                                            r".*'features' norms in \["):
        engine.train()
    for k, v in engine.model.state_dict().items():
        if not k.endswith(("_mean", "_variance")):  # BatchNorm statistics move in the forward pass
            np.testing.assert_array_equal(v.numpy(), before[k], err_msg=k)


def test_on_nonfinite_loss_skip_skips_and_counts_the_steps(tmp_path, capsys):
    engine = build_engine(QUICKSTART, _fast(tmp_path, iters=3, extra=["Loss.Train.0.CELoss.weight=3e38",
                                                                      "Global.on_nonfinite_loss=skip"]))
    engine.train()
    out = capsys.readouterr().out
    assert out.count("step skipped (Global.on_nonfinite_loss: skip)") == 3
    assert "[Train][Epoch 1/1] skipped 3 of 3 steps whose loss was not finite" in out


# ------------------------------------------------------------------------------------------- CLI
def test_debug_flag_shows_the_traceback(tmp_path):
    with pytest.raises(ConfigError, match="Global.epochs must be"):
        run(["-c", str(QUICKSTART), "--debug", "-o", f"Global.output_dir={tmp_path}", "-o", "Global.epochs=0"])


@pytest.mark.parametrize("override", ["Global.x=" + "[" * 100_000, ".".join(["a"] * 100_000) + "=1",
                                      "Global.epochs=" + "1" * 4300])
def test_huge_overrides_are_one_line_errors(tmp_path, capsys, override):
    code, err = _run(capsys, QUICKSTART, [f"Global.output_dir={tmp_path}", override])
    assert code == 1 and err.startswith("error: ") and len(err) < 400


def test_output_dir_that_cannot_be_created_is_one_line(capsys):
    code, err = _run(capsys, QUICKSTART, _fast("/proc/paddle_losses_test"))
    assert code == 1 and err.startswith("error: ") and "/proc/paddle_losses_test" in err


def test_ctrl_c_is_a_one_line_error_with_exit_status_130(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    args = [sys.executable, str(ROOT / "tools" / "train.py"), "-c", str(QUICKSTART),
            "-o", f"Global.output_dir={tmp_path}", "-o", "Global.epochs=50", "-o", "Global.print_batch_step=1",
            "-o", "Global.progress_bar=False", "-o", "Global.eval_before_train=False"]
    proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for line in proc.stdout:
            if "[Train][Epoch 1/50][Iter: 0/" in line:
                break
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert "Traceback" not in err and err.strip().splitlines()[-1].startswith("error: interrupted (Ctrl-C)")
