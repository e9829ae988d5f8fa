"""Bodies of the multi-process tests: each runs on every rank (gloo) and, with one process, as the reference.

A case computes on the rows its rank owns (``sizes[rank]`` rows of a seeded global batch); with one process
it owns the whole batch, which is the single-process run on the global batch the ranks must reproduce.
Results are written as JSON to ``<out_dir>/rank<r>.json``.
"""
import json
import os

import numpy as np

STEPS = 3
D_IN, D = 6, 4
CLASSES = 3


def _init(world_expected):
    import paddle.distributed as dist
    if world_expected > 1 and not dist.is_initialized():
        dist.init_parallel_env()
    return dist.get_rank(), dist.get_world_size()


def _dump(out_dir, rank, record):
    with open(os.path.join(out_dir, f"rank{rank}.json"), "w") as fh:
        json.dump(record, fh)


def _batches(n):
    rng = np.random.RandomState(0)
    xs = [rng.randn(n, D_IN).astype("float32") for _ in range(STEPS)]
    ys = [rng.randint(0, CLASSES, n).astype("int64") for _ in range(STEPS)]
    return rng, xs, ys


def _arr(t):
    return np.asarray(t.numpy(), dtype="float64").tolist()


def gathered_losses_case(out_dir, sizes):
    """Three SGD steps of a Linear embedding under three ``gather: true`` losses (triplet with batch-hard
    mining, contrastive with a cross-batch memory, CenterLoss with learnable centers); then, with several
    ranks, inputs on which the ranks disagree."""
    import paddle

    from paddle_losses import build_loss
    from paddle_losses.distributed import gathered
    from paddle_losses.errors import InputError

    rank, world = _init(len(sizes))
    lo, hi = sum(sizes[:rank]), sum(sizes[:rank + 1])
    rng, xs, ys = _batches(sum(sizes))
    paddle.seed(0)
    model = paddle.nn.Linear(D_IN, D)
    model.weight.set_value(rng.randn(D_IN, D).astype("float32") * 0.5)
    model.bias.set_value(np.zeros(D, "float32"))
    loss = build_loss([
        {"TripletLossV2": {"weight": 1.0, "margin": 0.3, "gather": True}},
        {"ContrastiveLoss_XBM": {"weight": 0.5, "xbm_size": 2 * sum(sizes) + 4, "xbm_weight": 1.0,
                                 "start_iter": 0, "margin": 0.2, "embedding_size": D, "gather": True}},
        {"CenterLoss": {"weight": 0.1, "num_classes": CLASSES, "feat_dim": D, "gather": True}}])
    centers = loss.loss_func[2].centers
    centers.set_value(rng.randn(CLASSES, D).astype("float32"))
    model_dp, loss_dp = model, loss
    if world > 1:
        model_dp = paddle.DataParallel(model)
        loss_dp = paddle.DataParallel(loss)
    opt = paddle.optimizer.SGD(learning_rate=0.1, parameters=model.parameters() + loss.parameters())
    rec = {"world": world, "rows": [lo, hi], "loss": [], "x_grad": [], "w_grad": [], "b_grad": [],
           "c_grad": []}
    for step in range(STEPS):
        x = paddle.to_tensor(xs[step][lo:hi], stop_gradient=False)
        y = paddle.to_tensor(ys[step][lo:hi])
        out = loss_dp({"features": model_dp(x)}, y)
        out["loss"].backward()
        rec["loss"].append(float(out["loss"]))
        rec["x_grad"].append(_arr(x.grad))
        rec["w_grad"].append(_arr(model.weight.grad))
        rec["b_grad"].append(_arr(model.bias.grad))
        rec["c_grad"].append(_arr(centers.grad))
        opt.step()
        opt.clear_grad()
    xbm = loss.loss_func[1].xbm
    rec.update(weight=_arr(model.weight), centers=_arr(centers), xbm_feats=_arr(xbm.feats),
               xbm_targets=xbm.targets.numpy().tolist(), xbm_ptr=int(xbm.ptr))
    if world > 1:
        plain = gathered(paddle.nn.Layer())  # any layer: the hook checks before the forward runs
        plain.forward = lambda input, labels: input
        errors = {}
        cases = {"feature size": (paddle.zeros([2, D + rank]), paddle.zeros([2], "int64")),
                 "dtype": (paddle.zeros([2, D], "float64" if rank == 1 else "float32"), paddle.zeros([2], "int64")),
                 "keys": ({"features" if rank == 0 else "embedding": paddle.zeros([2, D])},
                          paddle.zeros([2], "int64"))}
        for what, (inp, lab) in cases.items():
            try:
                plain(inp, lab)
                errors[what] = None
            except InputError as exc:
                errors[what] = str(exc)
        rec["errors"] = errors
    _dump(out_dir, rank, rec)


HEADS = [  # name, parameters, CELoss epsilon, class count
    ("FC", {}, None, 7),
    ("ArcMargin", {"margin": 0.3, "scale": 8.0}, None, 8),
    ("CosMargin", {"margin": 0.2, "scale": 8.0}, 0.1, 7),
    ("CircleMargin", {"margin": 0.25, "scale": 8.0}, None, 7),
    ("AdaMargin", {"m": 0.4, "h": 0.333, "s": 8.0, "t_alpha": 0.5}, 0.1, 8),
]


def class_parallel_heads_case(out_dir, sizes):
    """For each margin head: a Linear backbone and the head (``class_parallel`` with several ranks) trained
    3 SGD steps with CELoss; then, with several ranks, heads whose class count differs between ranks."""
    import paddle

    from paddle_losses import get_head, get_loss
    from paddle_losses.errors import InputError

    rank, world = _init(len(sizes))
    lo, hi = sum(sizes[:rank]), sum(sizes[:rank + 1])
    rec = {"world": world, "rows": [lo, hi]}
    for name, params, epsilon, classes in HEADS:
        rng, xs, _ = _batches(sum(sizes))
        ys = [rng.randint(0, classes, sum(sizes)).astype("int64") for _ in range(STEPS)]
        backbone = paddle.nn.Linear(D_IN, D)
        backbone.weight.set_value(rng.randn(D_IN, D).astype("float32") * 0.5)
        backbone.bias.set_value(np.zeros(D, "float32"))
        head = get_head(name)(embedding_size=D, class_num=classes, class_parallel=world > 1, **params)
        full = rng.randn(D, classes).astype("float32")
        start, stop = getattr(head, "class_start", 0), getattr(head, "class_stop", classes)
        weight = head.fc.weight if name == "FC" else head.kernel if name == "AdaMargin" else head.weight
        weight.set_value(full[:, start:stop])
        shard_params = [weight] + ([head.fc.bias] if name == "FC" else [])
        if name == "FC":
            head.fc.bias.set_value(rng.randn(classes).astype("float32")[start:stop])

        class Net(paddle.nn.Layer):
            def __init__(self):
                super().__init__()
                self.backbone, self.head = backbone, head

            def forward(self, x, y):
                return {"logits": self.head(self.backbone(x), y)}

        net = Net()
        net_dp = paddle.DataParallel(net) if world > 1 else net
        ce = get_loss("CELoss")(epsilon=epsilon)
        opt = paddle.optimizer.SGD(learning_rate=0.5, parameters=net.parameters())
        r = {"loss": [], "x_grad": [], "w_grad": [], "shard": [start, stop]}
        for step in range(STEPS):
            x = paddle.to_tensor(xs[step][lo:hi], stop_gradient=False)
            y = paddle.to_tensor(ys[step][lo:hi])
            loss = ce(net_dp(x, y), y)["CELoss"]
            loss.backward()
            r["loss"].append(float(loss))
            r["x_grad"].append(_arr(x.grad))
            r["w_grad"].append(_arr(backbone.weight.grad))
            opt.step()
            opt.clear_grad()
        r["head"] = [_arr(p) for p in shard_params]
        r["backbone"] = _arr(backbone.weight)
        if world > 1:  # checkpoint as the trainer writes it: rank 0's state plus every rank's shard
            from paddle_losses.heads.shards import save_shard
            save_shard(net, os.path.join(out_dir, name), rank, world)
            if rank == 0:
                paddle.save(net.state_dict(), os.path.join(out_dir, name + ".pdparams"))
        if name == "AdaMargin":
            r["batch_mean"], r["batch_std"] = float(head.batch_mean.numpy()[0]), float(head.batch_std.numpy()[0])
        rec[name] = r
    if world > 1:
        try:
            get_head("FC")(embedding_size=D, class_num=7 + rank, class_parallel=True)(
                paddle.zeros([2, D]), paddle.zeros([2], "int64"))
            rec["class_count_error"] = None
        except InputError as exc:
            rec["class_count_error"] = str(exc)
    _dump(out_dir, rank, rec)


def both_cases(out_dir, sizes):
    """Both cases in one launch (each process start costs seconds), results under ``losses/`` and ``heads/``."""
    for sub, case in (("losses", gathered_losses_case), ("heads", class_parallel_heads_case)):
        os.makedirs(os.path.join(out_dir, sub), exist_ok=True)
        case(os.path.join(out_dir, sub), sizes)


def class_parallel_trainer_case(out_dir, sizes):
    """The trainer with ``Arch.Head.class_parallel`` on the quick start: two steps, the files it writes, and
    the refusal to resume such a run from ``Global.checkpoints``."""
    import warnings
    from pathlib import Path

    from paddle_losses.config import load_config
    from paddle_losses.engine.trainer import Engine
    from paddle_losses.errors import ConfigError

    rank, world = _init(len(sizes))
    config = str(Path(__file__).resolve().parents[1] / "configs" / "quickstart.yaml")
    run_dir = os.path.join(out_dir, "run")
    overrides = [f"Global.output_dir={run_dir}", "Global.epochs=1", "Global.iter_per_epoch=2", "Global.seed=0",
                 "Global.eval_before_train=False", "Global.eval_during_train=False", "Global.plot_curves=False",
                 "Global.progress_bar=False", "Arch.Head.class_parallel=True"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        engine = Engine(load_config(config, overrides=overrides), mode="train")
        engine.train()
        head = engine.model.head
        rec = {"shard": [head.class_start, head.class_stop], "width": head.fc.weight.shape[1]}
        try:
            Engine(load_config(config, overrides=overrides + [f"Global.checkpoints={run_dir}/latest"]), mode="train")
            rec["resume"] = None
        except ConfigError as exc:
            rec["resume"] = str(exc)
    rec["files"] = sorted(os.listdir(run_dir))
    _dump(out_dir, rank, rec)
