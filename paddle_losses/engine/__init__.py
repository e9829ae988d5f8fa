"""The PaddleClas-style trainer behind ``tools/train.py`` and ``tools/eval.py``.

Modules: ``data`` (datasets), ``transforms``, ``samplers``, ``model`` (RecModel), ``optim`` (optimizers, LR),
``metrics`` (retrieval metrics), ``rerank`` (k-reciprocal re-ranking), ``checkpoint``, ``logging``, ``diagnostics``, ``distributed``, ``trainer``
(the loop) and ``cli`` (``run(argv, mode)`` for the command line, ``execute(argv, mode)`` returning the results). Nothing is imported here so that ``tools/train.py`` can read
the thread count before Paddle is imported.
"""
