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
