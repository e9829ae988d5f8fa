"""Helpers for the trainer tests: fast overrides of the shipped configs, engine building, a tiny image folder."""
import os
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = ROOT / "configs" / "quickstart.yaml"
QUICK_START_DIR = ROOT / "configs" / "quick_start"


def fast(out_dir, epochs=1, iters=3, extra=()):
    """Overrides that shrink any shipped config to a few steps writing into ``out_dir``."""
    return [f"Global.output_dir={out_dir}", f"Global.epochs={epochs}", f"Global.iter_per_epoch={iters}",
            "Global.eval_before_train=False", "Global.print_batch_step=1", "Global.seed=0",
            "Global.progress_bar=False", *extra]


def build_engine(config_path, overrides, mode="train"):
    from paddle_losses.config import load_config
    from paddle_losses.engine.trainer import Engine
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cfg = load_config(str(config_path), overrides=overrides)
        return Engine(cfg, mode=mode)


def state_arrays(engine):
    from paddle_losses.engine.checkpoint import merged_state
    return {k: v.numpy().copy() for k, v in merged_state(engine.model, engine.train_loss).items()}


def write_png(path, array):
    from PIL import Image
    Image.fromarray(array).save(path)


def make_image_folder(tmp_path):
    """A tiny image dataset on disk: 4 identities × 4 PNGs (train) and query/gallery lists with cameras."""
    rng = np.random.default_rng(0)
    root = tmp_path / "images"
    root.mkdir()
    lines = {"train": [], "query": [], "gallery": []}
    for pid in range(4):
        base = rng.integers(0, 255, size=(3, 3, 3)).astype(np.uint8)
        for i in range(6):
            img = np.kron(base, np.ones((6, 6, 1), dtype=np.uint8))
            img = np.clip(img.astype(int) + rng.integers(-20, 20, size=img.shape), 0, 255).astype(np.uint8)
            name = f"{pid}/{i}.png"
            (root / str(pid)).mkdir(exist_ok=True)
            write_png(root / name, img)
            lines["train"].append(f"{name} {pid + 10}")
            side = "query" if i < 2 else "gallery"
            lines[side].append(f"{name} {pid} {i % 2}")
    for k, v in lines.items():
        (tmp_path / f"{k}_list.txt").write_text("\n".join(v) + "\n")
    return tmp_path


def distributed_worker(out_dir):
    """Body of each process of the 2-rank test: train briefly with the embedding gather and record facts."""
    import json

    import paddle
    import paddle.distributed as dist

    engine = build_engine(QUICKSTART, fast(out_dir, epochs=1, iters=3,
                                           extra=["Global.gather_embeddings=True", "Global.plot_curves=False"]))
    rank = dist.get_rank()
    sampler_batches = []
    engine.train_sampler.set_epoch(1)
    sampler_batches = [list(map(int, b)) for b in engine.train_sampler]
    seen = []
    real_forward = engine.loss_dp.forward

    def recording_forward(input, label):
        seen.append(int(input["features"].shape[0]))
        return real_forward(input, label)

    engine.loss_dp.forward = recording_forward
    result = engine.train()
    # after eval every rank holds rank 0's BatchNorm statistics too, so the whole state must agree
    weights = {k: float(paddle.abs(v.astype("float64")).sum()) for k, v in engine.model.state_dict().items()}
    with open(os.path.join(out_dir, f"rank{rank}.json"), "w") as fh:
        json.dump({"world": dist.get_world_size(), "loss_batch_sizes": seen, "batches": sampler_batches,
                   "weights": weights, "metrics": result["last_metrics"]}, fh)
