#!/usr/bin/env python
"""Benchmark every registered metric loss and margin head: ``python tools/bench.py [--quick]``;
``--classes`` runs the large-class grid, ``--peers`` times the PML-compatible losses against
pytorch-metric-learning.

The benchmark lives in ``benchmarks/`` at the repository root (not in the installed package); see
docs/performance.md.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


if __name__ == "__main__":
    if "--peers" in sys.argv[1:]:  # its own options, and no Paddle import before it checks for torch
        from benchmarks.peers import main as peers_main
        sys.exit(peers_main([a for a in sys.argv[1:] if a != "--peers"]))
    from benchmarks.cli import main
    sys.exit(main())
