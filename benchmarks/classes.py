"""Class-count grid: CELoss over the FC and margin heads, and CELoss alone, at 1k to 193k classes.

    python tools/bench.py --classes               # B in {64, 256}, D = 512, C in {1000, 16384, 65536, 192612}
    python tools/bench.py --classes --quick       # B = 16, D = 64, C in {1000, 16384}: a smoke run
    python tools/bench.py --classes --batch-sizes 64 --class-counts 65536 --heads FC,ArcMargin --labels eps

Every case runs in a fresh worker process (one thread, ``OMP_NUM_THREADS=1``), so that its peak memory is
that of a first call in a process holding nothing but the inputs and parameters. Per case:

* **head cases** ``CE(head(x, y), y)`` forward + backward (``x [B, D]`` and the head's weight with
  gradients), CELoss with hard labels or ``epsilon = 0.1``; the floor is ``x·W`` forward + backward
  (``W [D, C]``, both with gradients), timed alternately with the case so that both see the same load.
  Peak: resident growth during the first call minus the weight's gradient (``D·C`` floats, which any
  training step allocates), in float32 ``[B, C]`` matrices.
* **CELoss alone** on ``[B, C]`` logits (a leaf with gradient) against one forward pass of
  ``paddle.logsumexp`` over them.

Rows are printed as a Markdown table (and written as JSON lines with ``--json``). docs/performance.md,
"Large class counts", gives the targets and the results.
"""
import argparse
import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

HEADS = ("FC", "ArcMargin", "CosMargin", "CircleMargin", "AdaMargin")
HEAD_ARGS = {"ArcMargin": {"margin": 0.5, "scale": 80.0}, "CosMargin": {"margin": 0.35, "scale": 64.0},
             "CircleMargin": {"margin": 0.25, "scale": 256.0}, "AdaMargin": {}}
LABELS = {"hard": None, "eps": 0.1}


def _peak_bytes(fn):
    """Resident-set growth during ``fn()`` (Linux ``VmHWM`` after a ``clear_refs`` reset), or None."""
    from benchmarks.measure import peak_bytes
    return peak_bytes(fn)[1]


def _median(values):
    values = sorted(values)
    return values[len(values) // 2]


def _build(case):
    """``(step, floor, excluded_bytes)`` for a case: its forward + backward, its reference, and the bytes of
    the weight's gradient (which every training step allocates and the peak target excludes)."""
    import paddle
    import paddle_losses as pl

    b, d, c = case["B"], case["D"], case["C"]
    labels = paddle.randint(0, c, [b], dtype="int64")
    ce = pl.get_loss("CELoss")(epsilon=LABELS[case["labels"]])
    if case["kind"] == "head":
        x = paddle.randn([b, d])
        x.stop_gradient = False
        name = case["head"]
        if name == "FC":
            head = pl.get_head("FC")(d, c)
        else:
            head = pl.get_head(name)(embedding_size=d, class_num=c, **HEAD_ARGS[name])
        params = head.parameters()
        w = paddle.randn([d, c])
        w.stop_gradient = False

        def step():
            ce(head(x, labels), labels)["CELoss"].backward()
            x.clear_gradient()
            for p in params:
                p.clear_gradient(set_to_zero=False)

        def floor():
            paddle.matmul(x, w).sum().backward()
            x.clear_gradient()
            w.clear_gradient(set_to_zero=False)
        excluded = d * c * 4  # the weight's gradient
    else:
        z = paddle.randn([b, c]) * 4
        z.stop_gradient = False

        def step():
            ce(z, labels)["CELoss"].backward()
            z.clear_gradient(set_to_zero=False)

        def floor():
            with paddle.no_grad():
                paddle.logsumexp(z, axis=1)
        excluded = 0
    return step, floor, excluded


def run_case(case):
    """Measure one case in this process; returns the result row (dict)."""
    import paddle

    paddle.seed(0)
    b, c = case["B"], case["C"]
    # A tiny call of the same code first: Paddle's one-time allocations stay out of the measured peak.
    _build(dict(case, B=2, C=min(c, 64)))[0]()
    step, floor, excluded = _build(case)
    start = time.perf_counter()
    peak = _peak_bytes(step)  # first call at this size
    first = time.perf_counter() - start
    floor()
    ours, ref = [], []
    for _ in range(case["reps"]):
        for fn, out in ((step, ours), (floor, ref)):
            t0 = time.perf_counter()
            fn()
            out.append(time.perf_counter() - t0)
    row = dict(case, ms=_median(ours) * 1e3, floor_ms=_median(ref) * 1e3, first_ms=first * 1e3)
    row["ratio"] = row["ms"] / row["floor_ms"]
    row["peak_mib"] = None if peak is None else max(0, peak - excluded) / 2 ** 20
    row["peak_bc"] = None if peak is None else max(0, peak - excluded) / (b * c * 4)
    return row


def cases(args):
    for b in args.batch_sizes:
        for c in args.class_counts:
            for lab in args.labels:
                for head in args.heads:
                    yield {"kind": "head", "head": head, "B": b, "D": args.dim, "C": c, "labels": lab,
                           "reps": args.reps}
                if not args.no_alone:
                    yield {"kind": "alone", "head": "-", "B": b, "D": args.dim, "C": c, "labels": lab,
                           "reps": args.reps}


def _fmt(v, digits=3):
    if v is None:
        return "—"
    return f"{v:,.{digits}g}" if abs(v) < 1000 else f"{v:,.0f}"


def _ints(text):
    return [int(v) for v in text.split(",") if v.strip()]


def _names(allowed):
    def parse(text):
        names = [v.strip() for v in text.split(",") if v.strip()]
        unknown = [n for n in names if n not in allowed]
        if unknown:
            raise argparse.ArgumentTypeError(f"unknown {unknown}; choose from {', '.join(allowed)}")
        return names
    return parse


def main(argv=None):
    p = argparse.ArgumentParser(prog="tools/bench.py --classes", description=__doc__.split("\n")[0])
    p.add_argument("--batch-sizes", type=_ints, default=[64, 256], help="comma list, default 64,256")
    p.add_argument("--class-counts", type=_ints, default=[1000, 16384, 65536, 192612],
                   help="comma list, default 1000,16384,65536,192612")
    p.add_argument("--dim", type=int, default=512)
    p.add_argument("--heads", type=_names(HEADS), default=list(HEADS), help="comma list, default all five")
    p.add_argument("--labels", type=_names(tuple(LABELS)), default=list(LABELS),
                   help="comma list of hard, eps (epsilon = 0.1); default both")
    p.add_argument("--no-alone", action="store_true", help="skip the CELoss-alone rows")
    p.add_argument("--reps", type=int, default=3, help="timed repeats per case after the first call")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--quick", action="store_true", help="B = 16, D = 64, C in {1000, 16384}, one repeat")
    p.add_argument("--json", help="append the rows to this JSON-lines file")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        print(json.dumps(run_case(json.loads(args.worker))))
        return 0
    if args.quick:
        args.batch_sizes, args.dim, args.class_counts, args.reps = [16], 64, [1000, 16384], 1
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), PYTHONPATH=ROOT + os.pathsep
               + os.environ.get("PYTHONPATH", ""))
    print(f"threads={args.threads}, load average {os.getloadavg()[0]:.2f} at start\n")
    print("| case | labels | B | D | C | ms | floor ms | **ratio** | peak MiB | **peak ÷ B×C** |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    failures = 0
    for case in cases(args):
        proc = subprocess.run([sys.executable, os.path.abspath(__file__), "--worker", json.dumps(case)],
                              env=env, capture_output=True, text=True)
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
        if proc.returncode != 0 or not lines:
            failures += 1
            tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
            print(f"| {case['head']} | {case['labels']} | {case['B']} | {case['D']} | {case['C']} | failed: {tail} |")
            continue
        row = json.loads(lines[-1])
        label = f"CE({row['head']})" if row["kind"] == "head" else "CELoss alone (floor: logsumexp fw)"
        print(f"| {label} | {row['labels']} | {row['B']} | {row['D']} | {row['C']} | {_fmt(row['ms'])} | "
              f"{_fmt(row['floor_ms'])} | {row['ratio']:.2f} | {_fmt(row['peak_mib'])} | "
              f"{_fmt(row['peak_bc'], 2)} |", flush=True)
        if args.json:
            with open(args.json, "a") as f:
                f.write(json.dumps(row) + "\n")
    print(f"\nload average {os.getloadavg()[0]:.2f} at end")
    return 1 if failures else 0


if __name__ == "__main__":  # the worker processes run this file
    sys.path.insert(0, ROOT)
    sys.exit(main())
