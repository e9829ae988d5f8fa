"""Benchmark of the registered losses against the matmul floor and PaddleClas's own algorithms.

Not part of the installed package: run it from a checkout as ``python tools/bench.py`` (which puts the
repository root on ``sys.path``). It times forward + backward of every registered metric loss and margin
head on P×K batches, next to

* the *matmul floor* of the same shape (``x·xᵀ`` forward + backward; ``x·Mᵀ`` for a cross-batch memory of
  M rows; ``x·W`` for a head with a ``[D, C]`` weight), and
* a straightforward re-implementation of the algorithm PaddleClas's own code runs (``masked_select`` +
  ``reshape`` mining, ``paddle.max``/``min`` reductions, per-row Python loops, XBM index assignment), in
  :mod:`benchmarks.paddleclas_ref`; docs/performance.md describes each one.

Modules: ``paddleclas_ref`` (the reference algorithms), ``cases`` (how each loss is built and fed),
``measure`` (timing, peak memory, calibration of the skip predictor), ``worker`` (one thread setting, one
process), ``report`` (markdown tables and the target summary), ``profile`` (top Paddle operators of one
loss), ``cli`` (the command line, one worker subprocess per thread setting because Paddle reads
``OMP_NUM_THREADS`` only at import).
"""
