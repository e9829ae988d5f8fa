"""Benchmark of the registered losses against the matmul floor and PaddleClas's own algorithms.

``tools/bench.py`` (or ``python -m paddle_losses.bench``) times forward + backward of every registered
metric loss and margin head on P×K batches, next to

* the *matmul floor* of the same shape (``x·xᵀ`` forward + backward; ``x·Mᵀ`` for a cross-batch memory of
  M rows; ``x·W`` for a head with a ``[D, C]`` weight), and
* a straightforward re-implementation of PaddleClas's algorithm as ``/work/shared/spec`` describes it
  (``masked_select`` + ``reshape`` mining, ``paddle.max``/``min`` reductions, per-row Python loops, XBM
  index assignment), in :mod:`paddle_losses.bench.paddleclas_ref`.

Modules: ``paddleclas_ref`` (the reference algorithms), ``cases`` (how each loss is built and fed),
``measure`` (timing, peak memory, calibration of the skip predictor), ``worker`` (one thread setting, one
process), ``report`` (markdown tables and the target summary), ``cli`` (the command line, one worker
subprocess per thread setting because Paddle reads ``OMP_NUM_THREADS`` only at import).
"""
