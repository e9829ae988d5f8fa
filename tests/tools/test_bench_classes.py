"""tools/bench.py --classes (benchmarks/classes.py): one worker process per case, a Markdown row per case with
its ratio and peak, bad options refused (no timed assertions)."""
import json
import os
import subprocess
import sys

import pytest

from benchmarks.classes import cases, main, run_case

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_a_tiny_grid_prints_one_row_per_case_from_fresh_workers(tmp_path):
    rows = tmp_path / "rows.jsonl"
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "bench.py"), "--classes", "--batch-sizes",
                           "4", "--class-counts", "50", "--dim", "8", "--heads", "CosMargin", "--labels", "eps",
                           "--reps", "1", "--json", str(rows)],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    table = [line for line in proc.stdout.splitlines() if line.startswith("| CE")]
    assert [line.split(" | ")[0] for line in table] == ["| CE(CosMargin)", "| CELoss alone (floor: logsumexp fw)"]
    saved = [json.loads(line) for line in rows.read_text().splitlines()]
    assert all(r["ms"] > 0 and r["floor_ms"] > 0 and r["ratio"] > 0 and r["C"] == 50 for r in saved)


def test_a_case_measured_in_process_has_every_column():
    row = run_case({"kind": "head", "head": "AdaMargin", "B": 4, "D": 8, "C": 30, "labels": "hard", "reps": 1})
    assert {"ms", "floor_ms", "ratio", "peak_mib", "peak_bc", "first_ms"} <= set(row)


def test_cases_cover_heads_labels_and_celoss_alone():
    class Args:
        batch_sizes, class_counts, dim, heads, labels = [8], [10, 20], 4, ["FC"], ["hard", "eps"]
        no_alone, reps = False, 1
    grid = list(cases(Args))
    assert len(grid) == 2 * 2 * 2 and {c["kind"] for c in grid} == {"head", "alone"}


def test_unknown_head_is_refused(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--heads", "FC,ArcFace"])
    assert exc.value.code == 2
    assert "unknown ['ArcFace']" in capsys.readouterr().err
