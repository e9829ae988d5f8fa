"""End-to-end trainer behaviour: every shipped config trains, resume equals an uninterrupted run, eval of a
saved checkpoint reproduces the metrics, the real-data path, log lines, and bad-input errors."""
import re
import warnings

import numpy as np
import pytest
import yaml

from engine_helpers import QUICK_START_DIR, QUICKSTART, build_engine, fast, state_arrays
from paddle_losses.engine import trainer as trainer_mod
from paddle_losses.errors import ConfigError

CONFIGS = sorted(QUICK_START_DIR.glob("*.yaml")) + [QUICKSTART]


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: p.name)
def test_every_shipped_config_trains_end_to_end(config, tmp_path, capsys):
    engine = build_engine(config, fast(tmp_path, epochs=1, iters=2))
    result = engine.train()
    out = capsys.readouterr().out
    assert re.search(r"\[Train\]\[Epoch 1/1\]\[Iter: 0/2\]lr\(\w+\): [\d.]+, .*loss: [\d.]+, batch_cost: [\d.]+s, "
                     r"reader_cost: [\d.]+, ips: [\d.]+ samples/s, eta: \d+:\d\d:\d\d", out)
    assert re.search(r"\[Train\]\[Epoch 1/1\]\[Avg\].*loss: [\d.]+", out)
    assert np.isfinite(result["history"]["loss"][-1])
    metrics = result["last_metrics"]
    assert list(metrics)[:2] == ["recall1", "recall5"] and 0.0 <= metrics["recall1"] <= 1.0
    assert f"[Eval][Epoch 1][best metric: {result['best_metric']}]" in out
    for prefix in ("latest", "best_model"):
        for suffix in (".pdparams", ".pdopt", ".pdstates"):
            assert (tmp_path / (prefix + suffix)).is_file()
    assert (tmp_path / "best_model" / "model.pdparams").is_file()
    assert (tmp_path / "train.log").read_text().count("[Train][Epoch 1/1][Avg]") == 1
    assert (tmp_path / "curves.png").stat().st_size > 0


def test_quickstart_default_run_improves_retrieval_on_unseen_classes(tmp_path):
    """The README's promise, at full length: the trained embedding beats the untrained one on digits 5-9."""
    engine = build_engine(QUICKSTART, [f"Global.output_dir={tmp_path}", "Global.print_batch_step=100",
                                       "Global.progress_bar=False"])
    result = engine.train()
    ev = result["history"]["eval"]
    assert ev["mAP"][0][0] == 0  # the untrained embedding was evaluated (epoch 0)
    untrained, trained = ev["mAP"][0][1], ev["mAP"][-1][1]
    assert trained > untrained + 0.08, (untrained, trained)


def _interrupt_after(monkeypatch, last_epoch):
    real = trainer_mod.Engine._train_epoch

    def train_epoch(self, epoch, epochs):
        if epoch > last_epoch:
            raise KeyboardInterrupt(f"simulated interruption before epoch {epoch}")
        return real(self, epoch, epochs)

    monkeypatch.setattr(trainer_mod.Engine, "_train_epoch", train_epoch)


@pytest.mark.parametrize("config,extra", [
    (QUICKSTART, []),
    (QUICK_START_DIR / "contrastive_xbm.yaml", ["Loss.Train.0.ContrastiveLoss_XBM.start_iter=2"]),
    (QUICKSTART, ["EMA={'decay': 0.9}"]),
], ids=["quickstart", "contrastive_xbm", "quickstart_ema"])
def test_resume_continues_exactly_like_an_uninterrupted_run(config, extra, tmp_path, monkeypatch):
    full = build_engine(config, fast(tmp_path / "full", epochs=3, iters=3, extra=extra))
    full_result = full.train()

    with monkeypatch.context() as m:
        _interrupt_after(m, 2)
        part = build_engine(config, fast(tmp_path / "part", epochs=3, iters=3, extra=extra))
        with pytest.raises(KeyboardInterrupt):
            part.train()
    resumed = build_engine(config, fast(tmp_path / "part", epochs=3, iters=3,
                                        extra=extra + [f"Global.checkpoints={tmp_path / 'part' / 'latest'}"]))
    assert resumed.start_epoch == 3
    # the best metric is restored, not reset to 0 as PaddleClas does
    assert resumed.best_metric == pytest.approx(max(v for _, v in full_result["history"]["eval"]["recall1"][:2]))
    resumed_result = resumed.train()

    a, b = state_arrays(full), state_arrays(resumed)
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_allclose(b[k], a[k], rtol=1e-6, atol=1e-7, err_msg=k)
    if full.ema is not None:  # the weight averages continue exactly too
        ea, eb = full.ema.state_dict(), resumed.ema.state_dict()
        assert ea.keys() == eb.keys()
        for k in ea:
            np.testing.assert_allclose(eb[k], ea[k], rtol=1e-6, atol=1e-7, err_msg=f"ema {k}")
    assert resumed_result["last_metrics"] == pytest.approx(full_result["last_metrics"])
    assert resumed_result["best_metric"] == pytest.approx(full_result["best_metric"])
    assert resumed_result["best_epoch"] == full_result["best_epoch"]


def test_eval_mode_reproduces_the_metrics_of_a_saved_checkpoint(tmp_path):
    engine = build_engine(QUICKSTART, fast(tmp_path, epochs=1, iters=3))
    result = engine.train()
    again = build_engine(QUICKSTART, [f"Global.output_dir={tmp_path / 'ev'}",
                                      f"Global.pretrained_model={tmp_path / 'latest'}"], mode="eval")
    assert again.eval(0) == pytest.approx(result["last_metrics"])


def test_image_folder_with_list_files_pk_sampler_and_camera_masking(image_folder, tmp_path, capsys):
    root = image_folder
    transforms = [{"DecodeImage": {"to_rgb": True}}, {"ResizeImage": {"size": 16}},
                  {"RandFlipImage": {"flip_code": 1}}, {"Pad": {"padding": 2}},
                  {"RandCropImage": {"size": 16, "scale": [0.6, 1.0]}},
                  {"NormalizeImage": {"scale": "1.0/255.0", "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5],
                                      "order": ""}}, {"ToCHWImage": None}]
    eval_tf = [{"DecodeImage": {"to_rgb": True}}, {"ResizeImage": {"size": 16}},
               {"NormalizeImage": {"scale": "1.0/255.0", "mean": [0.5] * 3, "std": [0.5] * 3, "order": ""}},
               {"ToCHWImage": None}]

    def ds(split, tf, relabel=False):
        return {"dataset": {"name": "ImageNetDataset", "image_root": str(root / "images"),
                            "cls_label_path": str(root / f"{split}_list.txt"), "transform_ops": tf,
                            "relabel": relabel},
                "sampler": {"batch_size": 8}, "loader": {"num_workers": 0}}

    cfg = {
        "Global": {"output_dir": str(tmp_path / "out"), "epochs": 2, "eval_mode": "retrieval", "seed": 1,
                   "print_batch_step": 1, "progress_bar": False},
        "Arch": {"name": "RecModel", "Backbone": {"name": "ResNet18"},
                 "Neck": {"name": "FC", "embedding_size": 512, "class_num": 16},
                 "Head": {"name": "FC", "embedding_size": 16, "class_num": 4}},
        "Loss": {"Train": [{"CELoss": {"weight": 1.0}}, {"TripletLossV2": {"weight": 1.0, "margin": 0.3}}]},
        "Optimizer": {"name": "Adam", "lr": {"name": "ConstLR", "learning_rate": 0.001}},
        "DataLoader": {"Train": {**ds("train", transforms, relabel=True),
                                 "sampler": {"name": "PKSampler", "batch_size": 8, "sample_per_id": 4}},
                       "Eval": {"Query": ds("query", eval_tf), "Gallery": ds("gallery", eval_tf)}},
        "Metric": {"Eval": [{"Recallk": {"topk": [1, 2]}}, {"mAP": {}}]},
    }
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    engine = build_engine(path, [])
    train_set = engine.train_loader.dataset
    assert sorted(set(train_set.labels.tolist())) == [0, 1, 2, 3]  # relabelled 10..13 -> 0..3, sorted
    q_set = engine.eval_sets["Query"][0]
    assert q_set.cameras is not None and q_set[0][0].shape == (3, 16, 16)
    result = engine.train()
    assert list(result["last_metrics"]) == ["recall1", "recall2", "mAP"]
    assert "Build gallery done, all feat shape: [16, 16]" in capsys.readouterr().out


def _write(tmp_path, text):
    p = tmp_path / "c.yaml"
    p.write_text(text)
    return p


def test_gpu_device_on_a_cpu_build_falls_back_with_one_warning(tmp_path, capsys):
    import warnings

    from paddle_losses.config import load_config
    cfg = load_config(str(QUICKSTART), overrides=fast(tmp_path, extra=["Global.device=gpu"]))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        engine = trainer_mod.Engine(cfg)
    assert engine.device == "cpu"
    out = capsys.readouterr()
    assert (out.out + out.err).count("falling back to cpu") == 1
    assert not [w for w in caught if "cpu" in str(w.message)]  # not also a Python warning


def test_batch_size_not_divisible_by_sample_per_id_names_the_config_path(tmp_path):
    with pytest.raises(ConfigError, match=r"DataLoader\.Train\.sampler.*not divisible"):
        build_engine(QUICKSTART, fast(tmp_path, extra=["DataLoader.Train.sampler.batch_size=42"]))


def test_missing_epochs_and_unknown_backbone_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="did you mean|Did you mean"):
        build_engine(QUICKSTART, fast(tmp_path, extra=["Arch.Backbone.name=DigitsConvnet"]))
    from paddle_losses.config import load_config
    cfg = load_config(str(QUICKSTART))
    del cfg["Global"]["epochs"]
    with pytest.raises(ConfigError, match="Global.epochs"):
        trainer_mod.Engine(cfg)


def test_gradient_accumulation_steps_the_optimizer_every_update_freq_iterations(tmp_path):
    engine = build_engine(QUICKSTART, fast(tmp_path, iters=4, extra=["Global.update_freq=2",
                                                                     "Global.eval_during_train=False"]))
    engine.train()
    assert engine.global_step == 2


def test_diagnostics_line_reports_triplet_activity_and_memory_fill(tmp_path, capsys):
    engine = build_engine(QUICK_START_DIR / "contrastive_xbm.yaml",
                          fast(tmp_path, iters=4, extra=["Loss.Train.0.ContrastiveLoss_XBM.start_iter=1",
                                                         "Global.eval_during_train=False"]))
    engine.train()
    line = [x for x in capsys.readouterr().out.splitlines() if "[Diag]" in x][0]
    values = dict(re.findall(r"(\w+): ([\d.]+)", line.split("[Diag]")[1]))
    assert set(values) == {"hardest_pos_sim", "hardest_neg_sim", "active_triplets", "xbm_fill"}
    # with start_iter 1, steps 2-4 each wrote their 40 rows into the 400-slot memory
    assert float(values["xbm_fill"]) == pytest.approx(0.3)
    assert 0.0 <= float(values["active_triplets"]) <= 1.0


def test_profiler_options_are_stored_as_a_top_level_key(tmp_path):
    from paddle_losses.engine.cli import execute
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = execute(["-c", str(QUICKSTART), "-p", "batch_range=[1,2]", *sum((["-o", o] for o in fast(
            tmp_path, iters=1, extra=["Global.eval_during_train=False"])), [])], mode="train")
    assert res["best_metric"] == -1.0
    assert "profiler_options : batch_range=[1,2]" in (tmp_path / "train.log").read_text()


def test_train_labels_outside_head_class_num_are_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match=r"labels in \[0, 5\] but the model has class_num 5"):
        build_engine(QUICKSTART, fast(tmp_path, extra=["DataLoader.Train.dataset.train_classes=[0,1,2,3,4,5]"]))


def test_retrieval_eval_needs_neither_loss_eval_nor_metric_eval(tmp_path):
    from paddle_losses.config import load_config
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cfg = load_config(str(QUICKSTART), overrides=fast(tmp_path))
    del cfg["Loss"]["Eval"]
    del cfg["Metric"]
    metrics = trainer_mod.Engine(cfg).train()["last_metrics"]
    assert list(metrics) == ["recall1", "recall5"] and metrics["recall1"] > 0.0


def test_use_visualdl_without_visualdl_installed_warns_and_trains(tmp_path, capsys, monkeypatch):
    import builtins
    real_import = builtins.__import__

    def no_visualdl(name, *args, **kwargs):
        if name == "visualdl":
            raise ImportError("No module named 'visualdl'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_visualdl)
    engine = build_engine(QUICKSTART, fast(tmp_path, iters=1, extra=["Global.use_visualdl=True",
                                                                     "Global.eval_during_train=False"]))
    engine.train()
    assert "visualdl is not installed" in capsys.readouterr().out


def test_missing_always_read_global_keys_get_defaults(tmp_path):
    from paddle_losses.config import load_config
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cfg = load_config(str(QUICKSTART), overrides=fast(tmp_path, iters=1))
    for key in ("use_visualdl", "save_interval", "print_batch_step", "eval_interval", "checkpoints",
                "pretrained_model", "device", "eval_during_train"):
        cfg["Global"].pop(key, None)
    result = trainer_mod.Engine(cfg).train()
    assert result["last_metrics"] is not None  # eval_during_train defaults to True


def test_classification_mode_with_a_plain_classifier(tmp_path):
    cfg = {
        "Global": {"output_dir": str(tmp_path), "epochs": 2, "seed": 0, "eval_mode": "classification",
                   "print_batch_step": 5, "progress_bar": False},
        "Arch": {"name": "DigitsMLP", "class_num": 10, "hidden": 64, "out_dim": 32},
        "Loss": {"Train": [{"CELoss": {"weight": 1.0}}]},
        "Optimizer": {"name": "Adam", "lr": {"name": "ConstLR", "learning_rate": 0.01}},
        "DataLoader": {"Train": {"dataset": {"name": "DigitsDataset", "mode": "all"},
                                 "sampler": {"batch_size": 64, "shuffle": True, "drop_last": True}},
                       "Eval": {"dataset": {"name": "DigitsDataset", "mode": "all"}, "sampler": {"batch_size": 512}}},
        "Metric": {"Train": [{"TopkAcc": {"topk": [1, 5]}}], "Eval": [{"TopkAcc": {"topk": [1, 5]}}]},
    }
    path = tmp_path / "cls.yaml"
    path.write_text(yaml.safe_dump(cfg))
    engine = build_engine(path, [])
    assert not engine.is_rec
    result = engine.train()
    assert list(result["last_metrics"]) == ["top1", "top5"]
    assert result["last_metrics"]["top1"] > 0.8  # ten digit classes, chance is 0.1


def test_resuming_a_finished_run_says_there_is_nothing_to_do_without_warnings(tmp_path, capsys):
    build_engine(QUICKSTART, fast(tmp_path, epochs=1, iters=2)).train()
    before = {p.name: p.stat().st_mtime_ns for p in tmp_path.iterdir() if p.suffix != ".log"}
    capsys.readouterr()
    from paddle_losses.config import load_config
    cfg = load_config(str(QUICKSTART), overrides=fast(tmp_path, epochs=1, iters=2,
                                                        extra=[f"Global.checkpoints={tmp_path / 'latest'}"]))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        engine = trainer_mod.Engine(cfg)
        result = engine.train()
    out = capsys.readouterr().out
    assert "nothing to do: the run already finished at epoch 1 (Global.epochs is 1" in out
    assert "continuing at epoch" not in out and "[Train]" not in out
    assert result["last_metrics"] is None and result["history"]["epoch"] == [1]
    # Paddle's LinearWarmup reports its own saved key as "unused values in state_dict" on every resume
    assert not [w for w in caught if "unused values" in str(w.message)]
    after = {p.name: p.stat().st_mtime_ns for p in tmp_path.iterdir() if p.name in before}
    assert after == before  # no checkpoint rewritten


def test_large_class_demo_config_trains_and_logs_step_times(tmp_path, capsys):
    # configs/demo/large_class_synthetic.yaml at a test-sized class count (the demo itself uses 192,612)
    demo = QUICK_START_DIR.parent / "demo" / "large_class_synthetic.yaml"
    engine = build_engine(demo, [f"Global.output_dir={tmp_path}", "Arch.Head.class_num=300",
                                 "Global.iter_per_epoch=2", "Global.progress_bar=False"])
    assert engine.class_num == 300
    result = engine.train()
    out = capsys.readouterr().out
    assert len(re.findall(r"\[Iter: \d/2\].*CELoss: [\d.]+, TripletAngularMarginLoss: [\d.]+, .*batch_cost", out)) == 2
    assert np.isfinite(result["history"]["loss"][-1])
