"""One benchmark process: runs the grid under the thread setting fixed at its start and writes JSON rows.

Started by :func:`benchmarks.cli.run_worker` in a fresh interpreter that puts the repository root first on
``sys.path`` and calls :func:`main` with ``[CONFIG_JSON, OUT_JSONL]``, with ``OMP_NUM_THREADS`` set in its
environment (Paddle reads it only when it is imported).
"""
import fnmatch
import gc
import importlib
import json
import os
import sys
import time
import traceback

import paddle

import paddle_losses as pl

from . import cases as C
from .measure import calibrate_quadratic_reductions, time_calls, time_paired

MINERS = [
    ("BatchHardMiner", {"name": "BatchHardMiner"}),
    ("SemiHardMiner (pml)", {"name": "SemiHardMiner", "definition": "pml"}),
    ("SemiHardMiner (tfa)", {"name": "SemiHardMiner", "definition": "tfa"}),
    ("TripletMarginMiner (all)", {"name": "TripletMarginMiner", "type_of_triplets": "all"}),
    ("MultiSimilarityMiner", {"name": "MultiSimilarityMiner"}),
    ("BatchAllMiner", {"name": "BatchAllMiner"}),
]


def _features(s, seed):
    paddle.seed(seed)
    x = paddle.randn([s.B, s.D], dtype="float32")
    x.stop_gradient = False
    return x


def _clear(x, params):
    x.clear_gradient()
    for p in params:
        p.clear_gradient()


def floor_step(kind, s):
    """Forward + backward of the matmul the loss cannot avoid (x needs a gradient; a head's W does too)."""
    x = _features(s, 1)
    params = []
    if kind == "pair":
        def product():
            return paddle.matmul(x, x, transpose_y=True)
    elif kind == "memory":
        mem = paddle.randn([s.M, s.D], dtype="float32")

        def product():
            return paddle.matmul(x, mem, transpose_y=True)
    elif kind == "head":
        w = paddle.randn([s.D, s.M], dtype="float32")
        w.stop_gradient = False
        params = [w]

        def product():
            return paddle.matmul(x, w)
    elif kind == "pair_forward":
        def step():
            with paddle.no_grad():
                paddle.matmul(x, x, transpose_y=True)
        return step
    else:
        raise ValueError(kind)

    def step():
        product().sum().backward()
        _clear(x, params)
    return step


def _prefill_batches(s):
    """Random batches that fill an M-row memory exactly (at most 16 calls; ``n`` divides ``M``)."""
    n = min(max(s.B, s.M // 16), s.M)
    for i in range((s.M + n - 1) // n):
        paddle.seed(100 + i)
        feats = paddle.randn([n, s.D], dtype="float32")
        labels = paddle.randint(1, s.P + 2, [n, 1], dtype="int64")
        yield feats, labels


def ours_step(case, s):
    module = (pl.get_head if case.head else pl.get_loss)(case.name)(**case.params(s))
    if case.head:
        module.train()
    x, labels = _features(s, 2), C.labels_for(s)
    call = case.call or C.default_call
    if case.floor == "memory":
        with paddle.no_grad():
            for feats, lab in _prefill_batches(s):
                call(module, feats, lab)
    params = [p for p in module.parameters() if not p.stop_gradient]

    def step():
        call(module, x, labels).backward()
        _clear(x, params)
    return step


def ref_step(case, s):
    impl = case.ref(s)
    x, labels = _features(s, 2), C.labels_for(s).reshape([-1])
    if hasattr(impl, "prefill"):
        with paddle.no_grad():
            impl.prefill((f, l.reshape([-1])) for f, l in _prefill_batches(s))
    params = impl.parameters() if hasattr(impl, "parameters") else []

    def step():
        impl(x, labels).backward()
        _clear(x, params)
    return step


def miner_step(spec, s):
    from paddle_losses.functional.mining import build_miner
    miner = build_miner(dict(spec))
    x, labels = _features(s, 3), C.labels_for(s).reshape([-1])
    x.stop_gradient = True
    return lambda: miner(x, labels)


def predict_ref(case, s, calib, prev):
    """Predicted seconds of one reference call (None if nothing to predict from) and its largest
    intermediates' bytes."""
    model = case.model
    quad = model.quad(s, calib)
    t = quad
    if prev is not None:
        b0, t0, quad0 = prev
        t += max(t0 - quad0, 0.0) * (s.B / b0) ** model.exp
    elif quad == 0:
        t = None
    return t, model.mem(s)


def _short_error(exc):
    text = f"{type(exc).__name__}: {exc}".replace("\n", " ").replace("|", "/")
    return text[:160]


class Worker:
    def __init__(self, cfg, out):
        self.cfg, self.out = cfg, out
        self.threads = int(os.environ.get("OMP_NUM_THREADS", "1"))
        self.prev_ref = {}

    def emit(self, row):
        row["threads"] = self.threads
        self.out.write(json.dumps(row) + "\n")
        self.out.flush()
        self.log(row)

    def log(self, row):
        if row.get("case") == "__meta__":
            print(f"[{self.threads}t] done in {row['seconds']:.0f} s", file=sys.stderr, flush=True)
            return
        bits = [f"[{self.threads}t]", row.get("case", "")]
        bits += [f"{key}={row[key]}" for key in ("B", "D", "M") if row.get(key) is not None]
        for key in ("ours_s", "floor_s", "ref_s"):
            if row.get(key) is not None:
                bits.append(f"{key}={row[key]:.4g}")
        if row.get("error"):
            bits.append("ERROR " + row["error"])
        print(" ".join(bits), file=sys.stderr, flush=True)

    def time_reference(self, fn):
        """A PaddleClas-algorithm call: one measurement suffices once a call takes seconds."""
        cfg = self.cfg
        return time_calls(fn, cfg["budget"], 1, cfg["max_reps"], single_call_over=cfg["single_call_over"])

    def paired(self, fn, floor_kind, s):
        """Our time and the floor's, measured alternately (the machine may be shared)."""
        cfg = self.cfg
        return time_paired(fn, floor_step(floor_kind, s), cfg["budget"], cfg["min_reps"], cfg["max_reps"],
                           slow_warmup_counts=cfg.get("slow_warmup_counts", False))

    def shapes(self, case):
        cfg = self.cfg
        if case.floor == "memory":
            big = max(cfg["xbm_sizes"])
            grid = [C.Shape(b, d, big) for d in cfg["dims"] for b in cfg["batch_sizes"] if b <= big]
            grid += [C.Shape(cfg["xbm_sweep_batch"], d, m) for d in cfg["dims"] for m in cfg["xbm_sizes"]
                     if m != big and m >= cfg["xbm_sweep_batch"]]
            return grid
        if case.floor == "head":
            return [C.Shape(b, d, C.head_classes(C.Shape(b, d))) for d in cfg["dims"] for b in cfg["batch_sizes"]]
        limit = cfg["extra_max_batch"] if case.extra else max(cfg["batch_sizes"])
        return [C.Shape(b, d) for d in cfg["dims"] for b in cfg["batch_sizes"] if b <= limit]

    def selected(self, label):
        pats = self.cfg.get("only") or ["*"]
        return any(fnmatch.fnmatchcase(label, p) for p in pats)

    def run(self):
        start, load = time.perf_counter(), os.getloadavg()
        cases = list(C.CASES)
        if self.cfg.get("extras", True):
            cases += C.extra_cases(pl.list_losses, pl.get_loss)
        if self.cfg.get("miners", True):
            importlib.import_module("paddle_losses.functional.mining")  # imported before the freeze below
        gc.freeze()  # a full collection then scans only objects created by the benchmark (~ms, not ~0.1 s)
        self.calib = calibrate_quadratic_reductions()
        for case in cases:
            if not self.selected(case.label):
                continue
            registered = (pl.registry.is_head if case.head else pl.registry.is_loss)(case.name)
            if not registered:
                self.emit(dict(case=case.label, name=case.name, error="not registered"))
                continue
            for s in self.shapes(case):
                self.run_case(case, s)
        if self.cfg.get("miners", True):
            self.run_miners()
        self.emit(dict(case="__meta__", calib=self.calib, seconds=time.perf_counter() - start,
                       load_start=load, load_end=os.getloadavg()))

    def run_case(self, case, s):
        gc.collect()  # cycles left by the previous configuration must not count in this one's baseline
        row = dict(case=case.label, name=case.name, B=s.B, D=s.D, M=s.M, floor_kind=case.floor,
                   unit_bytes=4 * case.main_matrix_elems(s), targets=list(case.targets))
        try:
            t, f = self.paired(ours_step(case, s), case.floor, s)
            row.update(ours_s=t.median, ours_reps=t.reps, ours_peak=t.peak, floor_s=f.median, floor_peak=f.peak)
        except Exception as exc:  # noqa: BLE001 - a broken loss is reported in the table, not fatal
            row["error"] = _short_error(exc)
            if self.cfg.get("traceback"):
                traceback.print_exc()
        if case.ref is not None and self.cfg.get("references", True):
            self.run_ref(case, s, row)
        self.emit(row)

    def run_ref(self, case, s, row):
        key = (case.label, s.D, s.M if case.floor == "memory" else 0)  # a head's C changes with B
        predicted, mem = predict_ref(case, s, self.calib, self.prev_ref.get(key))
        row["ref_predicted_s"] = predicted
        limit = self.cfg.get("ref_max_batch")
        if limit and s.B > limit:
            row.update(ref_status="skipped", ref_s=predicted, ref_note=f"est.; not run above B={limit}")
            return
        if mem > self.cfg["ref_mem_limit"]:
            row.update(ref_status="skipped", ref_s=predicted,
                       ref_note=f"needs ≈{mem / 2**30:.0f} GiB ({case.model.why})")
            return
        if predicted is not None and predicted > self.cfg["ref_budget"]:
            row.update(ref_status="skipped", ref_s=predicted, ref_note=f"est. ({case.model.why})")
            return
        try:
            t = self.time_reference(ref_step(case, s))
            row.update(ref_status="measured", ref_s=t.median, ref_reps=t.reps, ref_peak=t.peak)
            self.prev_ref[key] = (s.B, t.median, case.model.quad(s, self.calib))
        except Exception as exc:  # noqa: BLE001
            row.update(ref_status="error", ref_note=_short_error(exc))

    def run_miners(self):
        try:
            from paddle_losses.functional.mining import list_miners
            available = set(list_miners())
        except ImportError:
            return
        cfg = self.cfg
        for label, spec in MINERS:
            if spec["name"] not in available or not self.selected(label):
                continue
            for d in cfg["dims"]:
                for b in cfg["batch_sizes"]:
                    if b > cfg["miner_max_batch"]:
                        continue
                    s = C.Shape(b, d)
                    gc.collect()
                    row = dict(case=label, name=spec["name"], B=b, D=d, M=0, floor_kind="pair_forward",
                               unit_bytes=4 * b * b, miner=True)
                    try:
                        t, f = self.paired(miner_step(spec, s), "pair_forward", s)
                        row.update(ours_s=t.median, ours_reps=t.reps, ours_peak=t.peak, floor_s=f.median)
                    except Exception as exc:  # noqa: BLE001
                        row["error"] = _short_error(exc)
                    self.emit(row)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    cfg = json.loads(argv[0])
    with open(argv[1], "w") as out:
        Worker(cfg, out).run()
