"""Markdown rendering of benchmark rows: one table per thread setting, a miner table, a target summary."""
import math

from .cases import FLOOR_2X, MEM_8X, REF_10X, XBM_2X
from .measure import loglog_slope

MiB = 2 ** 20

TARGETS = {
    FLOOR_2X: "ours ≤ 2× the x·xᵀ floor at every B ≥ 256, both D",
    REF_10X: "≥ 10× faster than the PaddleClas algorithm at B = 1024 (both D); \"PaddleClas ÷ floor\" is the "
             "largest speed-up possible for a loss that pays the full x·xᵀ forward + backward",
    XBM_2X: "≤ 2× the B×M floor at B = 256, M = 16384 (both D)",
    MEM_8X: "peak < 8× one main matrix (B×B; B×M for XBM) at B = 4096, D = 512",
}


def _ms(seconds):
    if seconds is None:
        return "—"
    ms = seconds * 1e3
    if ms >= 100:
        return f"{ms:,.0f}"
    if ms >= 10:
        return f"{ms:.1f}"
    return f"{ms:.2f}"


def _ratio(x):
    if x is None or not math.isfinite(x):
        return "—"
    return f"{x:.2f}" if x < 10 else f"{x:.0f}" if x < 1e4 else f"{x:.1e}"


def _mib(b):
    return "—" if b is None else f"{b / MiB:.1f}" if b < 100 * MiB else f"{b / MiB:,.0f}"


def _ref_cells(row):
    status = row.get("ref_status")
    if status is None:
        return "—", "—"
    if status == "error":
        return f"error: {row.get('ref_note', '')}", "—"
    ours, ref = row.get("ours_s"), row.get("ref_s")
    speedup = ref / ours if ours and ref else None
    if status == "skipped":
        if not ref:
            return f"not run ({row.get('ref_note', '').replace('est.; ', '')})", "—"
        return f"≈{_ms(ref)} (skipped: {row.get('ref_note', '')})", f"≈{_ratio(speedup)}"
    return _ms(ref), _ratio(speedup)


def loss_table(rows):
    head = ("| loss | B | D | M/C | ours ms | floor ms | **ours/floor** | PaddleClas alg. ms | "
            "**PaddleClas/ours** | ours peak MiB | **peak ÷ main matrix** | reps |")
    out = [head, "|" + "---|" * 12]
    for r in rows:
        if r.get("miner") or r.get("case") == "__meta__":
            continue
        if r.get("error") and r.get("ours_s") is None:
            out.append(f"| {r['case']} | {r.get('B', '')} | {r.get('D', '')} | {r.get('M') or ''} | "
                       f"error: {r['error']} | {_ms(r.get('floor_s'))} | — | — | — | — | — | |")
            continue
        ref, speed = _ref_cells(r)
        ratio = r["ours_s"] / r["floor_s"] if r.get("floor_s") else None
        unit = r["ours_peak"] / r["unit_bytes"] if r.get("ours_peak") is not None else None
        out.append(f"| {r['case']} | {r['B']} | {r['D']} | {r['M'] or ''} | {_ms(r['ours_s'])} | "
                   f"{_ms(r['floor_s'])} | {_ratio(ratio)} | {ref} | {speed} | {_mib(r.get('ours_peak'))} | "
                   f"{_ratio(unit)} | {r.get('ours_reps', '')} |")
    return "\n".join(out)


def miner_table(rows):
    rows = [r for r in rows if r.get("miner")]
    if not rows:
        return ""
    out = ["| miner | B | D | miner ms | x·xᵀ forward ms | **miner/floor** | peak MiB | **peak ÷ B×B** |",
           "|" + "---|" * 8]
    for r in rows:
        if r.get("ours_s") is None:
            out.append(f"| {r['case']} | {r['B']} | {r['D']} | error: {r.get('error')} | | | | |")
            continue
        out.append(f"| {r['case']} | {r['B']} | {r['D']} | {_ms(r['ours_s'])} | {_ms(r['floor_s'])} | "
                   f"{_ratio(r['ours_s'] / r['floor_s'])} | {_mib(r['ours_peak'])} | "
                   f"{_ratio(r['ours_peak'] / r['unit_bytes'] if r['ours_peak'] is not None else None)} |")
    return "\n".join(out)


def _measured(rows, case):
    return [r for r in rows if r.get("case") == case and r.get("ours_s") is not None]


def _verdict(value, ok, row=None, estimated=False, fmt=_ratio, bound=None):
    """``"1.42 ✓ (B=1024, D=128)"``; ``≈`` marks a value built on an estimated (not run) reference time;
    ``bound`` is PaddleClas's time over the floor (the best speed-up for a loss paying the whole floor)."""
    if value is None:
        return "n/a"
    mark = "✓" if ok(value) else "✗"
    where = ""
    if row is not None:
        limit = f"; PaddleClas ÷ floor {fmt(bound)}" if bound is not None else ""
        where = f" (B={row['B']}, D={row['D']}{limit})"
    return f"{'≈' if estimated else ''}{fmt(value)} {mark}{where}"


def _worst(hits, value, worst=max):
    """``(value, row)`` of the worst row by ``value(row)``, or ``(None, None)``."""
    if not hits:
        return None, None
    row = worst(hits, key=value)
    return value(row), row


def floor_target(rows, case):
    hits = [r for r in _measured(rows, case) if r["B"] >= 256 and r.get("floor_s") and r["floor_kind"] == "pair"]
    return _worst(hits, lambda r: r["ours_s"] / r["floor_s"])


def ref_target(rows, case):
    hits = [r for r in _measured(rows, case) if r["B"] == 1024 and r.get("ref_s")]
    return _worst(hits, lambda r: r["ref_s"] / r["ours_s"], min)


def xbm_target(rows, case, batch=256):
    measured = _measured(rows, case)
    hits = [r for r in measured if r["B"] == batch and r["M"] == max(x["M"] for x in measured) and r.get("floor_s")]
    return _worst(hits, lambda r: r["ours_s"] / r["floor_s"])


def memory_target(rows, case):
    hits = [r for r in _measured(rows, case) if r["B"] == 4096 and r["D"] == 512 and r.get("ours_peak") is not None]
    if not hits:
        return None
    return max(r["ours_peak"] / r["unit_bytes"] for r in hits)


def growth(rows, case, key):
    """Exponent of ``time ∝ B^p`` between the two largest batch sizes, at the largest D."""
    measured = _measured(rows, case)
    if not measured:
        return None
    d = max(r["D"] for r in measured)
    pts = sorted((r["B"], r[key]) for r in measured if r["D"] == d and r.get(key)
                 and (r["floor_kind"] != "memory" or r["M"] == max(x["M"] for x in _measured(rows, case))))
    if len(pts) < 2:
        return None
    (b0, t0), (b1, t1) = pts[-2], pts[-1]
    return loglog_slope(b0, t0, b1, t1), b0, b1


LARGE_B = 256  # the batch size from which the floor target applies


def large_batch(rows_by_threads):
    """``LARGE_B``, or the largest measured batch size when the grid stops below it (a --quick run)."""
    sizes = [r["B"] for rows in rows_by_threads.values() for r in rows
             if r.get("ours_s") is not None and not r.get("miner")]
    if not sizes:
        return None
    return LARGE_B if max(sizes) >= LARGE_B else max(sizes)


def by_dimension_table(rows_by_threads, cases, min_batch=LARGE_B):
    """Worst ours/floor over B ≥ ``min_batch`` for each D and thread setting (XBM: at the largest M);
    an empty string when no case has such a row."""
    threads = sorted(rows_by_threads)
    dims = sorted({r["D"] for rows in rows_by_threads.values() for r in rows if r.get("D")})
    cols = [(t, d) for t in threads for d in dims]
    body = []
    for case in cases:
        cells, seen = [], False
        for t, d in cols:
            measured = _measured(rows_by_threads[t], case.label)
            big_m = max((r["M"] for r in measured), default=0)
            hits = [r for r in measured if r["D"] == d and r["B"] >= min_batch and r.get("floor_s")
                    and (case.floor != "memory" or r["M"] == big_m)]
            v, row = _worst(hits, lambda r: r["ours_s"] / r["floor_s"])
            seen = seen or v is not None
            cells.append("n/a" if v is None else f"{_ratio(v)} (B={row['B']})")
        if seen:
            body.append(f"| {case.label} | " + " | ".join(cells) + " |")
    if not body:
        return ""
    head = ["| loss | " + " | ".join(f"{t}t, D={d}" for t, d in cols) + " |", "|" + "---|" * (len(cols) + 1)]
    return "\n".join(head + body)


_NO_VALUE = ("n/a", "—")


def _summary_columns(rows_by_threads):
    """``(header, target tag or None, cell(case) -> text)`` for every column of the summary."""
    threads = sorted(rows_by_threads)
    first = rows_by_threads[threads[0]]

    def floor_cell(rows):
        def cell(case):
            if FLOOR_2X not in case.targets:
                return "—"
            v, row = floor_target(rows, case.label)
            return _verdict(v, lambda x: x <= 2.0, row)
        return cell

    def ref_cell(rows):
        def cell(case):
            if REF_10X not in case.targets:
                return "—"
            v, row = ref_target(rows, case.label)
            est = row is not None and row.get("ref_status") == "skipped"
            bound = row["ref_s"] / row["floor_s"] if row is not None and row.get("floor_s") else None
            return _verdict(v, lambda x: x >= 10.0, row, est, bound=bound)
        return cell

    def xbm_cell(rows):
        def cell(case):
            if XBM_2X not in case.targets:
                return "—"
            v, row = xbm_target(rows, case.label)
            return _verdict(v, lambda x: x <= 2.0, row)
        return cell

    def memory_cell(case):
        mem = memory_target(first, case.label)
        if MEM_8X in case.targets:
            return _verdict(mem, lambda x: x < 8.0)
        return _ratio(mem) if mem else "—"

    def growth_cell(case):
        g_ours, g_floor = growth(first, case.label, "ours_s"), growth(first, case.label, "floor_s")
        if not (g_ours and g_floor):
            return "n/a"
        return f"{g_ours[0]:.2f} / {g_floor[0]:.2f} (B {g_ours[1]}→{g_ours[2]})"

    cols = [(f"≤2× floor, B≥256 ({t}t)", FLOOR_2X, floor_cell(rows_by_threads[t])) for t in threads]
    cols += [(f"≥10× PaddleClas alg., B=1024 ({t}t)", REF_10X, ref_cell(rows_by_threads[t])) for t in threads]
    cols += [(f"XBM ≤2× B×M floor ({t}t)", XBM_2X, xbm_cell(rows_by_threads[t])) for t in threads]
    cols += [("peak ÷ main matrix < 8 (B=4096, D=512)", MEM_8X, memory_cell),
             ("growth exponent ours / floor (largest D)", None, growth_cell)]
    return cols


def summary_table(rows_by_threads, cases):
    """The target verdicts per loss; columns without a single value in this grid are left out.

    Returns ``(markdown or "", target tags that no column could evaluate)``.
    """
    shown = [case for case in cases
             if any(_measured(rows, case.label) for rows in rows_by_threads.values())]
    columns = []
    for header, tag, cell in _summary_columns(rows_by_threads):
        cells = [cell(case) for case in shown]
        if any(c not in _NO_VALUE for c in cells):
            columns.append((header, tag, cells))
    evaluated = {tag for _, tag, _ in columns}
    missing = [tag for tag in TARGETS if tag not in evaluated]
    if not columns:
        return "", missing
    out = ["| loss | " + " | ".join(h for h, _, _ in columns) + " |", "|" + "---|" * (len(columns) + 1)]
    for i, case in enumerate(shown):
        out.append(f"| {case.label} | " + " | ".join(cells[i] for _, _, cells in columns) + " |")
    return "\n".join(out), missing


def render(rows_by_threads, cases, header=""):
    parts = [header] if header else []
    summary, missing = summary_table(rows_by_threads, cases)
    targets = [f"* `{k}`: {v}" + (" (not evaluated: this grid has no such shape)" if k in missing else "")
               for k, v in TARGETS.items()]
    parts.append("## Targets\n\n" + "\n".join(targets))
    if summary:
        legend = ("" if len(missing) == len(TARGETS) else
                  " (✓ met, ✗ missed, ≈ from an estimated PaddleClas time; each cell is the worst configuration, "
                  "named in brackets)")
        parts.append(f"## Summary{legend}\n\n" + summary)
    min_batch = large_batch(rows_by_threads)
    by_dim = by_dimension_table(rows_by_threads, cases, min_batch) if min_batch else ""
    if by_dim:
        parts.append(f"## Ours ÷ floor by feature size (worst over B ≥ {min_batch}; XBM at the largest M)\n\n"
                     + by_dim)
    for t in sorted(rows_by_threads):
        rows = rows_by_threads[t]
        meta = next((r for r in rows if r.get("case") == "__meta__"), {})
        took = ""
        if "seconds" in meta:
            took = (f" — worker took {meta['seconds']:.0f} s; load average (1 min) "
                    f"{meta['load_start'][0]:.1f} at start, {meta['load_end'][0]:.1f} at end")
        parts.append(f"## {t} thread{'s' if t > 1 else ''} (OMP_NUM_THREADS={t}){took}\n\n" + loss_table(rows))
        mt = miner_table(rows)
        if mt:
            parts.append(f"### Miners, {t} thread{'s' if t > 1 else ''} (no gradient; floor = x·xᵀ forward)\n\n"
                         + mt)
    return "\n\n".join(parts) + "\n"
