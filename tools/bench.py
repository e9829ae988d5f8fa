#!/usr/bin/env python
"""Benchmark every registered metric loss and margin head: ``python tools/bench.py [--quick]``.

See ``paddle_losses/bench`` and docs/performance.md.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from paddle_losses.bench.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
