#!/usr/bin/env python
"""Benchmark every registered metric loss and margin head: ``python tools/bench.py [--quick]``;
``--peers`` times the PML-compatible losses against pytorch-metric-learning (tools/bench_peers.py).

See ``paddle_losses/bench`` and docs/performance.md.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from paddle_losses.bench.cli import main  # noqa: E402

if __name__ == "__main__":
    if "--peers" in sys.argv[1:]:  # side by side with pytorch-metric-learning: tools/bench_peers.py
        from bench_peers import main as peers_main
        sys.exit(peers_main([a for a in sys.argv[1:] if a != "--peers"]))
    sys.exit(main())
