#!/usr/bin/env python
"""Side-by-side timing against pytorch-metric-learning: ``python tools/bench.py --peers [options]``.

torch and pytorch-metric-learning are optional: they are never imported by the package or its tests,
only by the peer worker processes started here. Each measurement (one loss, one batch size, one side)
runs in a fresh worker process with one thread; the sides alternate (ours, PML, ours, PML, ...) so that
a change in machine load hits both, and each side's best time (forward + backward, ms) is kept. A worker
that runs out of memory (``--memory-gib`` address-space limit) or time is reported as such.

Options: ``--sizes 256,1024,4096`` (batch sizes), ``--rounds 2`` (alternations), ``--reps 3`` (timed
calls per worker), ``--cases name,...`` (default all), ``--peer-path DIR`` (extra ``sys.path`` entries
for the peer workers, e.g. a ``pip install --target`` folder), ``--memory-gib 24``, ``--timeout 600``.
Prints a Markdown table: loss, B, PML ms, ours ms, ours / PML, and our matmul floor measured in the same
worker, alternated with ours (``x·xᵀ`` forward only for the pair and triplet losses, ``x·W`` forward +
backward for the losses that own class weights), with ours / floor.
"""
import argparse
import importlib.util
import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
D, K, C = 512, 4, 1000

# name -> (PML construction, our construction); both read `labels`, D and C.
CASES = {
    "batch-hard triplet": (
        "loss = losses.TripletMarginLoss(margin=0.2); miner = miners.BatchHardMiner()",
        "loss = pl.get_loss('PMLTripletMarginLoss')(margin=0.2, miner='BatchHardMiner')"),
    "semihard triplet": (
        "loss = losses.TripletMarginLoss(margin=0.2); miner = miners.TripletMarginMiner(margin=0.2, "
        "type_of_triplets='semihard')",
        "loss = pl.get_loss('PMLTripletMarginLoss')(margin=0.2, miner={'name': 'TripletMarginMiner', "
        "'margin': 0.2, 'type_of_triplets': 'semihard'})"),
    "MultiSimilarity + miner": (
        "loss = losses.MultiSimilarityLoss(); miner = miners.MultiSimilarityMiner()",
        "loss = pl.get_loss('MultiSimilarityLoss')(miner='MultiSimilarityMiner')"),
    "NTXent": ("loss = losses.NTXentLoss()", "loss = pl.get_loss('NTXentLoss')()"),
    "Circle": ("loss = losses.CircleLoss()", "loss = pl.get_loss('CircleLoss')()"),
    "Lifted": ("loss = losses.LiftedStructureLoss()", "loss = pl.get_loss('LiftedStructureLoss')()"),
    "Contrastive": ("loss = losses.ContrastiveLoss()", "loss = pl.get_loss('PMLContrastiveLoss')()"),
    "ArcFace C=1000": ("loss = losses.ArcFaceLoss(num_classes=C, embedding_size=D)",
                       "loss = pl.get_loss('ArcFaceLoss')(num_classes=C, embedding_size=D)"),
    "CosFace C=1000": ("loss = losses.CosFaceLoss(num_classes=C, embedding_size=D)",
                       "loss = pl.get_loss('CosFaceLoss')(num_classes=C, embedding_size=D)"),
    "SubCenterArcFace C=1000": ("loss = losses.SubCenterArcFaceLoss(num_classes=C, embedding_size=D)",
                                "loss = pl.get_loss('SubCenterArcFaceLoss')(num_classes=C, embedding_size=D)"),
    "ProxyAnchor C=1000": ("loss = losses.ProxyAnchorLoss(num_classes=C, embedding_size=D)",
                           "loss = pl.get_loss('ProxyAnchorLoss')(num_classes=C, embedding_size=D)"),
}


CLASS_CASES = {c for c in CASES if "C=" in c}


def _data(b):
    import numpy as np
    rng = np.random.default_rng(0)
    x = rng.normal(size=(b, D)).astype("float32")
    labels = (np.arange(b) // K) % C
    return x, labels.astype("int64")


def _best(fn, reps):
    fn()  # warm-up
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return 1000.0 * min(times)


def worker(side, case, b, reps):
    """Time one side on one case in this process; print ``{"ms": ...}``."""
    x_np, y_np = _data(b)
    env = {"C": C, "D": D, "miner": None}
    if side == "pml":
        import torch
        from pytorch_metric_learning import losses, miners
        torch.set_num_threads(1)
        exec(CASES[case][0], {"losses": losses, "miners": miners, **env}, env)  # noqa: S102 (fixed table above)
        loss, miner = env["loss"], env["miner"]
        labels = torch.from_numpy(y_np)

        def step():
            x = torch.from_numpy(x_np).requires_grad_(True)
            tup = None if miner is None else miner(x, labels)
            loss(x, labels, tup).backward()
    else:
        sys.path.insert(0, ROOT)
        import paddle
        import paddle_losses as pl
        exec(CASES[case][1], {"pl": pl, **env}, env)  # noqa: S102 (fixed table above)
        loss = env["loss"]
        labels = paddle.to_tensor(y_np)
        name = type(loss).__name__

        def step():
            x = paddle.to_tensor(x_np, stop_gradient=False)
            loss({"features": x}, labels)[name].backward()

        floor = _floor(paddle, x_np, case)
        ms, floor_ms = [], []
        for _ in range(reps):  # alternated, so that a change of load hits both
            ms.append(_best(step, 1))
            floor_ms.append(_best(floor, 1))
        print(json.dumps({"ms": min(ms), "floor_ms": min(floor_ms)}), flush=True)
        return
    print(json.dumps({"ms": _best(step, reps)}), flush=True)


def _floor(paddle, x_np, case):
    """Our matmul floor of a case: ``x·xᵀ`` forward only for the pair and triplet losses (the issue's
    reference), ``x·W`` forward + backward (``W [D, C]``) for the losses that own class weights."""
    x = paddle.to_tensor(x_np)
    if case not in CLASS_CASES:
        return lambda: paddle.matmul(x, x, transpose_y=True)
    xg = paddle.to_tensor(x_np, stop_gradient=False)
    w = paddle.randn([D, C * (3 if case.startswith("SubCenter") else 1)])
    w.stop_gradient = False

    def floor():
        paddle.matmul(xg, w).sum().backward()
        xg.clear_gradient()
        w.clear_gradient(set_to_zero=False)
    return floor


def _run_worker(side, case, b, args):
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    if side == "pml" and args.peer_path:
        env["PYTHONPATH"] = os.pathsep.join(args.peer_path + [env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    limit = int(args.memory_gib * (1 << 30))

    def cap():
        import resource
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    cmd = [sys.executable, os.path.abspath(__file__), "--worker", side, "--case", case, "--batch", str(b),
           "--reps", str(args.reps)]
    try:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=args.timeout, preexec_fn=cap)
    except subprocess.TimeoutExpired:
        return None, f"timeout {args.timeout} s"
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("{"):
            return json.loads(line), None
    err = proc.stderr.strip().splitlines()
    memory = proc.returncode < 0 or any("MemoryError" in e or "alloc" in e.lower() for e in err[-5:])
    return None, "out of memory" if memory else (err[-1] if err else f"exit {proc.returncode}")


def peers_available(peer_path=()):
    saved = list(sys.path)
    sys.path[:0] = list(peer_path)
    try:
        return all(importlib.util.find_spec(m) is not None for m in ("torch", "pytorch_metric_learning"))
    finally:
        sys.path[:] = saved


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="256,1024,4096")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--cases", default=",".join(CASES))
    p.add_argument("--peer-path", action="append", default=[])
    p.add_argument("--memory-gib", type=float, default=24.0)
    p.add_argument("--timeout", type=int, default=600)
    p.add_argument("--worker", choices=["pml", "ours"])
    p.add_argument("--case")
    p.add_argument("--batch", type=int)
    args = p.parse_args(argv)
    if args.worker:
        worker(args.worker, args.case, args.batch, args.reps)
        return 0
    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    unknown = [c for c in cases if c not in CASES]
    if unknown:
        print(f"error: unknown case(s) {unknown}; known: {list(CASES)}", file=sys.stderr)
        return 2
    if not peers_available(args.peer_path):
        print("error: --peers needs torch and pytorch-metric-learning importable (optional; not a dependency "
              "of paddle_losses); install them, or pass --peer-path DIR", file=sys.stderr)
        return 2
    sizes = [int(s) for s in args.sizes.split(",")]
    print("| loss | B | PML on torch ms | ours ms | **ours / PML** | our floor ms | ours / floor |")
    print("|---|---|---|---|---|---|---|")
    for case in cases:
        for b in sizes:
            best = {"ours": None, "pml": None, "floor": None}
            note = {}
            for _ in range(args.rounds):
                for side in ("ours", "pml"):
                    result, why = _run_worker(side, case, b, args)
                    if result is None:
                        note[side] = why
                        continue
                    for key, ms in ((side, result["ms"]), ("floor", result.get("floor_ms"))):
                        if ms is not None:
                            best[key] = ms if best[key] is None else min(best[key], ms)
            cell = {s: f"{best[s]:.1f}" if best[s] is not None else note.get(s, "--") for s in best}
            ratio = f"{best['ours'] / best['pml']:.2f}" if best["ours"] and best["pml"] else "--"
            to_floor = f"{best['ours'] / best['floor']:.2f}" if best["ours"] and best["floor"] else "--"
            print(f"| {case} | {b} | {cell['pml']} | {cell['ours']} | {ratio} | {cell['floor']} | {to_floor} |",
                  flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
