"""Command line of the benchmark: runs one worker subprocess per thread setting and prints markdown."""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

from . import cases as C
from .report import render

FULL = dict(batch_sizes=[64, 256, 1024, 4096], dims=[128, 512], xbm_sizes=[1024, 4096, 16384],
            xbm_sweep_batch=256, miner_max_batch=1024, extra_max_batch=1024, budget=1.0, min_reps=3, max_reps=30,
            single_call_over=2.0, ref_budget=15.0, ref_mem_limit=3 * 2 ** 30, ref_max_batch=1024,
            slow_warmup_counts=True, extras=False)
QUICK = dict(FULL, batch_sizes=[16, 32], dims=[16], xbm_sizes=[64, 128], xbm_sweep_batch=32,
             miner_max_batch=32, extra_max_batch=32, budget=0.05, min_reps=1, max_reps=3, ref_budget=2.0,
             extras=True)


def _ints(text):
    return [int(v) for v in text.split(",") if v.strip()]


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        prog="tools/bench.py",
        description="Time forward+backward of every registered metric loss and margin head on P×K batches "
                    "(K=4) against the matmul floor and a re-implementation of PaddleClas's algorithm.")
    p.add_argument("--quick", action="store_true",
                   help="smoke run (under a minute): B 16,32, D 16, XBM M 64,128; after one warm-up call, 1 to 3 "
                        "timed repeats (as many as fit in 0.05 s); cross-framework losses included")
    p.add_argument("--batch-sizes", type=_ints, help="comma list, default 64,256,1024,4096")
    p.add_argument("--dims", type=_ints, help="comma list of feature sizes D, default 128,512")
    p.add_argument("--xbm-sizes", type=_ints,
                   help="memory sizes M, default 1024,4096,16384; the largest is run at every B, the others "
                        "at --xbm-sweep-batch")
    p.add_argument("--xbm-sweep-batch", type=int, help="batch size for the smaller memory sizes, default 256")
    p.add_argument("--threads", type=_ints, default=[1, 2], help="OMP_NUM_THREADS settings, default 1,2")
    p.add_argument("--only", action="append", help="fnmatch pattern on the row name (repeatable)")
    p.add_argument("--no-references", action="store_true", help="skip the PaddleClas-algorithm timings")
    p.add_argument("--no-miners", action="store_true", help="skip the miner timings")
    p.add_argument("--extras", action="store_true",
                   help="also time the registered non-PaddleClas (cross-framework) metric losses, B <= 1024")
    p.add_argument("--ref-budget", type=float, help="skip a reference whose predicted call exceeds this many seconds, default 15")
    p.add_argument("--budget", type=float, help="seconds of repeats per measurement (after warm-up), default 1")
    p.add_argument("--output", help="also write the markdown report to this file")
    p.add_argument("--json", help="also write the raw rows (JSON lines) to this file")
    p.add_argument("--from-json", metavar="FILE", help="render the report from rows saved with --json")
    p.add_argument("--traceback", action="store_true", help="print tracebacks of failing losses")
    p.add_argument("--peers", action="store_true",
                   help="instead of the grid: the PML-compatible losses against pytorch-metric-learning on torch "
                        "(optional; benchmarks/peers.py; its options: tools/bench.py --peers --help)")
    p.add_argument("--classes", action="store_true",
                   help="instead of the grid: CELoss over FC and the margin heads at 1k-193k classes "
                        "(benchmarks/classes.py; its options: tools/bench.py --classes --help)")
    p.add_argument("--profile", metavar="LOSS", action="append",
                   help="instead of the grid: top Paddle operators of LOSS at the first --batch-sizes/--dims "
                        "(in this process, threads from OMP_NUM_THREADS)")
    return p.parse_args(argv)


def config_from(args):
    cfg = dict(QUICK if args.quick else FULL)
    for key in ("batch_sizes", "dims", "xbm_sizes", "xbm_sweep_batch", "ref_budget", "budget"):
        value = getattr(args, key)
        if value is not None:
            cfg[key] = value
    cfg.update(only=args.only, references=not args.no_references, miners=not args.no_miners,
               traceback=args.traceback, extras=args.extras or cfg["extras"])
    return cfg


REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# The worker's entry: the repository root goes first on sys.path, so that the worker imports this
# checkout's benchmarks and paddle_losses whatever the current directory (works on every Python >= 3.9).
_WORKER_ENTRY = "import sys; sys.path.insert(0, sys.argv[1]); from benchmarks.worker import main; main(sys.argv[2:])"


def run_worker(cfg, threads, rows_path=None):
    """Run the grid in a fresh interpreter with ``OMP_NUM_THREADS=threads``; return its rows.

    The worker appends each row to ``rows_path`` as soon as it is measured (a temporary file if None), so
    a long run that is interrupted keeps what it measured.
    """
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    with tempfile.TemporaryDirectory() as tmp:
        out = rows_path or os.path.join(tmp, "rows.jsonl")
        cmd = [sys.executable, "-W", "ignore", "-c", _WORKER_ENTRY, REPO_ROOT, json.dumps(cfg), out]
        proc = subprocess.run(cmd, env=env)
        rows = []
        if os.path.exists(out):
            with open(out) as f:
                rows = [json.loads(line) for line in f if line.strip()]
        if proc.returncode != 0:
            rows.append(dict(case="__worker__", error=f"worker exited with {proc.returncode}"))
        return rows


def profile(args, cfg):
    from .profile import profile_case
    s = C.Shape(cfg["batch_sizes"][0], cfg["dims"][0], max(cfg["xbm_sizes"]))
    for label in args.profile:
        print(profile_case(label, s) + "\n")
    return 0


def load_rows(path):
    rows_by_threads = {}
    with open(path) as f:
        for line in f:
            if line.strip():
                row = json.loads(line)
                rows_by_threads.setdefault(row["threads"], []).append(row)
    return rows_by_threads


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--classes" in argv:  # the class-count grid has its own options (benchmarks/classes.py)
        from .classes import main as classes_main
        return classes_main([a for a in argv if a != "--classes"])
    if "--peers" in argv:  # side by side with pytorch-metric-learning, its own options (benchmarks/peers.py)
        from .peers import main as peers_main
        return peers_main([a for a in argv if a != "--peers"])
    args = parse_args(argv)
    cfg = config_from(args)
    if args.profile:
        return profile(args, cfg)
    start = time.perf_counter()
    if args.from_json:
        rows_by_threads = load_rows(args.from_json)
        took = sum(r.get("seconds", 0) for rows in rows_by_threads.values() for r in rows
                   if r.get("case") == "__meta__")
    else:
        rows_by_threads = {t: run_worker(cfg, t, f"{args.json}.{t}t" if args.json else None)
                           for t in args.threads}
        took = time.perf_counter() - start
    header = (f"# paddle_losses benchmark\n\nCommand: `python tools/bench.py "
              f"{' '.join(argv if argv is not None else sys.argv[1:])}`. "
              f"B ∈ {cfg['batch_sizes']}, D ∈ {cfg['dims']}, XBM M ∈ {cfg['xbm_sizes']} "
              f"(largest M at every B, the others at B = {cfg['xbm_sweep_batch']}), K = {C.K}. "
              f"Total time {took / 60:.1f} min.")
    text = render(rows_by_threads, C.CASES, header)
    print(text)
    if args.output:
        with open(args.output, "w") as f:
            f.write(text)
    if args.json:
        with open(args.json, "w") as f:
            for t, rows in rows_by_threads.items():
                for r in rows:
                    f.write(json.dumps(dict(r, threads=t)) + "\n")
    failed = any(r.get("case") == "__worker__" for rows in rows_by_threads.values() for r in rows)
    return 1 if failed else 0
