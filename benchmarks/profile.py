"""Where does a loss spend its time? Paddle's profiler over a few forward+backward steps, top operators.

``python tools/bench.py --profile TripletAngularMarginLoss_XBM --batch-sizes 256 --dims 512``
"""
import contextlib
import io
import re

import paddle
import paddle.profiler as profiler

from . import cases as C
from .worker import floor_step, ours_step

_ROW = re.compile(r"^(\S+(?: \S+)?)\s+(\d+)\s+([\d.]+) / ([\d.]+) / [\d.]+ / [\d.]+ / ([\d.]+)")


def top_operators(step, steps=3, top=12):
    """``[(operator, calls per step, ms per step, % of step)]`` sorted by CPU time, after one warm-up step."""
    step()
    prof = profiler.Profiler(targets=[profiler.ProfilerTarget.CPU], on_trace_ready=lambda _: None)
    prof.start()
    for _ in range(steps):
        step()
        prof.step()
    prof.stop()
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        prof.summary(sorted_by=profiler.SortedKeys.CPUTotal, op_detail=False, thread_sep=False, time_unit="ms")
    text = buf.getvalue()
    section = text.split("Operator Summary", 1)[-1]
    rows = []
    for line in section.splitlines():
        m = _ROW.match(line.strip())
        if m:
            name, calls, total, _avg, ratio = m.groups()
            rows.append((name, int(calls) / steps, float(total) / steps, float(ratio)))
    return rows[:top]


def profile_case(label, s, steps=3, top=12):
    """Markdown: the loss's top operators at shape ``s`` next to its floor time."""
    case = next(c for c in C.CASES if c.label == label or c.name == label)
    if case.floor == "pair":
        s = C.Shape(s.B, s.D)
    elif case.floor == "memory" and not s.M:
        s = C.Shape(s.B, s.D, 16384)
    elif case.floor == "head":
        s = C.Shape(s.B, s.D, C.head_classes(s))
    paddle.seed(0)
    rows = top_operators(ours_step(case, s), steps, top)
    floor = top_operators(floor_step(case.floor, s), steps, 4)
    floor_ms = sum(r[2] for r in floor if r[0].startswith(("matmul", "Global_MatmulGradNode")))
    out = [f"### {case.label} at B={s.B}, D={s.D}{f', M={s.M}' if s.M else ''} "
           f"(floor matmul fwd+bwd ≈ {floor_ms:.1f} ms)", "",
           "| operator | calls/step | ms/step | % |", "|---|---|---|---|"]
    out += [f"| {n} | {c:g} | {t:.1f} | {r:.1f} |" for n, c, t, r in rows]
    return "\n".join(out)
