"""Timing, peak memory and calibration primitives (Linux /proc based memory, wall-clock timing).

Peak memory: writing ``5`` to ``/proc/self/clear_refs`` resets the kernel's high-water mark ``VmHWM`` to
the current ``VmRSS``; the peak of a call is ``VmHWM`` after it minus ``VmRSS`` before it. Paddle's CPU
allocator hands freed blocks to glibc, whose heap would serve later blocks (up to its dynamic mmap threshold,
32 MiB) from memory that is already resident, hiding them from the peak. So during the measured call glibc
is told to map every block of 64 KiB or more separately (``mallopt``), and afterwards to keep blocks under
32 MiB in its heap, which is what its dynamic threshold converges to anyway, so timed calls are unaffected.
"""
import math
import ctypes
import ctypes.util
import re
import statistics
import time

import paddle

_STATUS = "/proc/self/status"


def _status_kib(field):
    with open(_STATUS) as f:
        match = re.search(rf"^{field}:\s+(\d+)\s+kB", f.read(), re.MULTILINE)
    return int(match.group(1)) if match else None


_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3


def _libc():
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc if hasattr(libc, "mallopt") else None
    except OSError:
        return None


_LIBC = _libc()


def _malloc_mode(measuring):
    """glibc: map blocks >= 64 KiB individually while measuring; otherwise heap-serve blocks < 32 MiB."""
    if _LIBC is None:
        return
    if measuring:
        _LIBC.mallopt(_M_MMAP_THRESHOLD, 64 * 1024)
        _LIBC.mallopt(_M_TRIM_THRESHOLD, 128 * 1024)
    else:
        _LIBC.mallopt(_M_MMAP_THRESHOLD, 32 * 2 ** 20)
        _LIBC.mallopt(_M_TRIM_THRESHOLD, 64 * 2 ** 20)


def peak_bytes(fn):
    """Run ``fn()`` once; return ``(result, extra peak resident bytes during the call or None)``."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return fn(), None
    _malloc_mode(measuring=True)
    try:
        base = _status_kib("VmRSS")
        result = fn()
        peak = max(0, _status_kib("VmHWM") - base) * 1024
    finally:
        _malloc_mode(measuring=False)
    return result, peak


def _timed(fn):
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


class Timing:
    """Median wall time of repeated calls, after a warm-up call whose peak memory is recorded."""

    def __init__(self, times, peak, warmup_time):
        self.times, self.peak, self.warmup_time = times, peak, warmup_time

    @property
    def median(self):
        return statistics.median(self.times)

    @property
    def reps(self):
        return len(self.times)


def _reps(warm, budget, min_reps, max_reps, slow_call, slow_min_reps):
    floor = slow_min_reps if warm > slow_call else min_reps
    return max(floor, min(max_reps, int(budget / max(warm, 1e-6))))


def time_calls(fn, budget=1.0, min_reps=3, max_reps=30, single_call_over=None, slow_call=1.0, slow_min_reps=2):
    """Warm up once (measuring peak memory), then time ``reps`` calls and keep every time.

    ``reps`` fills ``budget`` seconds, clamped to ``[min_reps, max_reps]`` (``slow_min_reps`` when the
    warm-up took over ``slow_call`` seconds). If ``single_call_over`` is set and the warm-up call alone
    takes longer, that call is the only measurement (for reference implementations that take seconds per
    call, where one-off warm-up costs are negligible).
    """
    start = time.perf_counter()
    _, peak = peak_bytes(fn)
    warm = time.perf_counter() - start
    if single_call_over is not None and warm > single_call_over:
        return Timing([warm], peak, warm)
    reps = _reps(warm, budget, min_reps, max_reps, slow_call, slow_min_reps)
    return Timing([_timed(fn) for _ in range(reps)], peak, warm)


def time_paired(fn, floor_fn, budget=1.0, min_reps=3, max_reps=30, slow_call=1.0, slow_min_reps=2,
                slow_warmup_counts=False):
    """Time ``fn`` and its floor alternately, so that both see the same machine load; two Timings.

    Each is warmed up once (peak memory measured then); the repeats interleave ``fn, floor_fn, fn, ...``.
    With ``slow_warmup_counts``, when a warm-up call takes over ``slow_call`` seconds it also counts as a
    repeat (one-off first-call costs are negligible against seconds), which saves a call per slow shape.
    """
    timings = []
    for f in (floor_fn, fn):
        start = time.perf_counter()
        _, peak = peak_bytes(f)
        timings.append((time.perf_counter() - start, peak))
    (floor_warm, floor_peak), (warm, peak) = timings
    reps = _reps(warm + floor_warm, budget, min_reps, max_reps, slow_call, slow_min_reps)
    ours, floor = [], []
    if slow_warmup_counts and warm > slow_call:
        ours.append(warm)
        floor.append(floor_warm)
        reps -= 1
    for _ in range(reps):
        ours.append(_timed(fn))
        floor.append(_timed(floor_fn))
    return Timing(ours, peak, warm), Timing(floor, floor_peak, floor_warm)


def calibrate_quadratic_reductions():
    """Seconds per unit of the two quadratic ``paddle.max`` backward costs measured on this CPU.

    Returns ``{"axis": c, "flat": c'}``: a reduction along an axis of length L over R rows costs about
    ``c·R·L²`` forward + backward, a reduction over all n elements about ``c'·n²``. The benchmark predicts
    PaddleClas-algorithm times with them and skips calls that would take too long.
    """
    def reduce_backward(shape, axis):
        x = paddle.randn(shape)
        x.stop_gradient = False
        return lambda: (paddle.max(x, axis=axis) if axis is not None else paddle.max(x)).sum().backward()

    rows, length, flat = 32, 1024, 4096
    axis_fn, flat_fn = reduce_backward([rows, length], 1), reduce_backward([flat], None)
    axis_fn(), flat_fn()  # first-call overheads
    axis_t = min(_timed(axis_fn) for _ in range(3))
    flat_t = min(_timed(flat_fn) for _ in range(3))
    return {"axis": axis_t / (rows * length ** 2), "flat": flat_t / flat ** 2}


def loglog_slope(b0, t0, b1, t1):
    """Exponent p of ``t ∝ B^p`` between two measurements."""
    if min(b0, t0, b1, t1) <= 0 or b0 == b1:
        return float("nan")
    return math.log(t1 / t0) / math.log(b1 / b0)
