"""tools/bench.py (the benchmark in benchmarks/): the --quick smoke run prints markdown tables with ratio
columns and nothing empty (no timed assertions), and the PaddleClas-algorithm references it times compute the
same values as our losses on P×K batches."""
import ast
import os
import re
import subprocess
import sys
import textwrap

import numpy as np
import paddle
import pytest

import paddle_losses as pl
from benchmarks import cases as C
from benchmarks import paddleclas_ref as ref
from benchmarks.cli import parse_args
from benchmarks.measure import time_calls
from benchmarks.report import render

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _table_rows(text, title):
    section = text.split(title, 1)[1].split("\n## ", 1)[0]
    return [line for line in section.splitlines() if line.startswith("| ") and not line.startswith("| loss")]


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    # From a directory outside the checkout: the script and its worker processes find benchmarks/ and
    # paddle_losses/ from the script's own location.
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "bench.py"), "--quick"],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path_factory.mktemp("elsewhere"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


@pytest.fixture(scope="module")
def quick_report(quick_run):
    return quick_run.stdout


def test_quick_run_prints_one_table_per_thread_setting_with_ratio_columns(quick_report):
    assert "## 1 thread (OMP_NUM_THREADS=1)" in quick_report
    assert "## 2 threads (OMP_NUM_THREADS=2)" in quick_report
    header = next(line for line in quick_report.splitlines() if line.startswith("| loss | B |"))
    for column in ("ours ms", "floor ms", "**ours/floor**", "PaddleClas alg. ms", "**PaddleClas/ours**",
                   "**peak ÷ main matrix**"):
        assert column in header


def test_quick_run_reports_numeric_ratios_for_registered_losses(quick_report):
    rows = _table_rows(quick_report, "## 1 thread")
    by_loss = {}
    for line in rows:
        cells = [c.strip() for c in line.strip("|").split("|")]
        by_loss.setdefault(cells[0], []).append(cells)
    for name in ("TripletAngularMarginLoss", "TripletLossV2", "ContrastiveLoss", "TripletAngularMarginLoss_XBM"):
        if not pl.registry.is_loss(name):
            continue
        for cells in by_loss[name]:
            assert re.fullmatch(r"[0-9.,e+]+", cells[6]), cells  # ours/floor
            assert float(cells[6].replace(",", "")) > 0
            assert re.fullmatch(r"≈?[0-9.,e+]+", cells[8]), cells  # PaddleClas/ours


def _markdown_tables(text):
    """``[(section title, header cells, body rows as cell lists)]`` of every table in ``text``."""
    tables, title, block = [], None, []
    for line in text.splitlines() + [""]:
        if line.startswith("|"):
            block.append([c.strip() for c in line.strip().strip("|").split("|")])
            continue
        if block:
            tables.append((title, block[0], block[2:]))
            block = []
        if line.startswith("#"):
            title = line
    return tables


def test_quick_report_has_no_empty_table_or_column(quick_report):
    tables = _markdown_tables(quick_report)
    assert len(tables) >= 6  # summary, by feature size, losses and miners at each thread setting
    for title, header, body in tables:
        assert body, title
        for j, column in enumerate(header):
            assert any(row[j] not in ("", "n/a", "—") for row in body), (title, column)


def test_quick_report_names_the_targets_its_small_grid_cannot_evaluate(quick_report):
    targets = quick_report.split("## Targets", 1)[1].split("\n## ", 1)[0]
    assert targets.count("(not evaluated: this grid has no such shape)") == 4
    summary = quick_report.split("## Summary", 1)[1].split("\n## ", 1)[0]
    assert "growth exponent ours / floor" in summary and "≤2× floor" not in summary
    assert "## Ours ÷ floor by feature size (worst over B ≥ 32;" in quick_report


def test_quick_run_progress_lines_name_only_known_shapes(quick_run):
    assert "None" not in quick_run.stderr
    assert "[1t] done in" in quick_run.stderr and "[2t] done in" in quick_run.stderr


def test_help_lists_every_option_and_the_quick_repeats(capsys):
    with pytest.raises(SystemExit):
        parse_args(["--help"])
    text = capsys.readouterr().out
    for option in ("--quick", "--batch-sizes", "--dims", "--xbm-sizes", "--xbm-sweep-batch", "--threads", "--only",
                   "--no-references", "--no-miners", "--extras", "--ref-budget", "--budget", "--output", "--json",
                   "--from-json", "--traceback", "--profile"):
        assert option in text
    assert "up to 3 timed repeats" in " ".join(text.split())


def test_references_that_would_take_too_long_are_reported_as_estimates():
    rows = [dict(case="TripletLoss", name="TripletLoss", B=4096, D=512, M=0, floor_kind="pair",
                 unit_bytes=4 * 4096 ** 2, targets=[], floor_s=1.0, ours_s=2.0, ours_reps=2, ours_peak=2 ** 30,
                 ref_status="skipped", ref_s=900.0, ref_note="est. (Python double loop over B² entries)")]
    text = render({1: rows}, C.CASES)
    line = next(l for l in text.splitlines() if l.startswith("| TripletLoss | 4096"))
    assert "≈900,000 (skipped: est. (Python double loop" in line
    assert "| ≈450 |" in line


def test_time_calls_returns_median_of_the_repeats_and_a_peak():
    calls = []
    t = time_calls(lambda: calls.append(1), budget=0.0, min_reps=3, max_reps=5)
    assert t.reps == 3 and len(calls) == 4  # one warm-up + three timed
    assert t.median >= 0 and (t.peak is None or t.peak >= 0)


def test_rerange_index_orders_self_then_group_then_others():
    idx = ref.rerange_index(6, 3).reshape(6, 6) % 6
    np.testing.assert_array_equal(idx[4], [4, 3, 5, 0, 1, 2])
    np.testing.assert_array_equal(idx[0], [0, 1, 2, 3, 4, 5])


def _pk_inputs(b=16, d=8, seed=0):
    rng = np.random.default_rng(seed)
    x = paddle.to_tensor(rng.standard_normal((b, d)).astype("float32"))
    labels = C.labels_for(C.Shape(b, d))
    return x, labels


REFERENCE_PAIRS = [
    ("TripletAngularMarginLoss", {}, lambda s: ref.TripletAngularMarginRef()),
    ("TripletAngularMarginLoss", C.ANGULAR_ABS, lambda s: ref.TripletAngularMarginRef(**C.ANGULAR_ABS)),
    ("TripletLossV2", {}, lambda s: ref.TripletLossV2Ref()),
    ("TripletLoss", {}, lambda s: ref.TripletLossRef()),
    ("TriHardLoss", dict(batch_size=16, samples_each_class=4), lambda s: ref.TriHardRef(16, 4)),
    ("MSMLoss", dict(batch_size=16, samples_each_class=4), lambda s: ref.MSMRef(16, 4)),
    ("EmlLoss", dict(batch_size=16, samples_each_class=4), lambda s: ref.EmlRef(16, 4)),
    ("NpairsLoss", {}, lambda s: ref.NpairsRef()),
    ("ContrastiveLoss", dict(margin=0.2, embedding_size=8), lambda s: ref.ContrastiveRef(margin=0.2)),
    ("SupConLoss", dict(views=4), lambda s: ref.SupConRef(4)),
    ("PairwiseCosface", dict(margin=0.35, gamma=64.0), lambda s: ref.PairwiseCosfaceRef()),
]


@pytest.mark.parametrize("name,params,make_ref", REFERENCE_PAIRS, ids=[f"{p[0]}{'+abs' if p[1] is C.ANGULAR_ABS else ''}"
                                                                     for p in REFERENCE_PAIRS])
def test_paddleclas_reference_matches_our_loss_on_a_pk_batch(name, params, make_ref):
    if not pl.registry.is_loss(name):
        pytest.skip(f"{name} not registered yet")
    x, labels = _pk_inputs()
    ours = next(iter(pl.get_loss(name)(**params)({"features": x}, labels).values()))
    theirs = make_ref(None)(x, labels.reshape([-1]))
    np.testing.assert_allclose(float(ours), float(theirs), rtol=1e-4, atol=1e-5)


def test_center_reference_matches_center_loss_with_the_same_centers():
    x, labels = _pk_inputs()
    ours = pl.get_loss("CenterLoss")(num_classes=8, feat_dim=8)
    theirs = ref.CenterRef(8, 8)
    theirs.centers.set_value(ours.centers)
    np.testing.assert_allclose(float(ours({"features": x}, labels)["CenterLoss"]),
                               float(theirs(x, labels.reshape([-1]))), rtol=1e-5)


def test_xbm_reference_memory_keeps_paddleclas_write_policy():
    mem = ref.CrossBatchMemoryRef(5, 2)
    for labels in ([1, 2], [3, 4], [5, 6], [7, 8]):
        mem.enqueue_dequeue(paddle.zeros([2, 2]), paddle.to_tensor(labels, dtype="int64"))
    # writes at the pointer while the batch fits, else overwrites the last n slots and restarts at 0:
    # [1 2 0 0 0] -> [1 2 3 4 0] -> [1 2 3 5 6] -> [7 8 3 5 6]
    np.testing.assert_array_equal(mem.targets.numpy(), [7, 8, 3, 5, 6])


def test_xbm_reference_matches_our_xbm_loss_after_prefill():
    if not pl.registry.is_loss("TripletAngularMarginLoss_XBM"):
        pytest.skip("not registered yet")
    s = C.Shape(8, 4, 16)
    ours = pl.get_loss("TripletAngularMarginLoss_XBM")(start_iter=0, xbm_size=16, xbm_weight=1.0, feat_dim=4)
    theirs = ref.TripletAngularMarginXBMRef(16, 4)
    rng = np.random.default_rng(1)
    for _ in range(3):
        x = paddle.to_tensor(rng.standard_normal((8, 4)).astype("float32"))
        labels = C.labels_for(s)
        a = float(ours({"features": x}, labels)["TripletAngularMarginLoss_XBM"])
        b = float(theirs(x, labels.reshape([-1])))
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


HEAD_PAIRS = [
    ("ArcMargin", {}, ref.ArcMarginRef),
    ("CosMargin", {}, ref.CosMarginRef),
    ("CircleMargin", dict(margin=0.35, scale=64.0), ref.CircleMarginRef),
]


@pytest.mark.parametrize("name,params,make_ref", HEAD_PAIRS, ids=[p[0] for p in HEAD_PAIRS])
def test_head_reference_matches_our_head_in_training_mode(name, params, make_ref):
    x, labels = _pk_inputs()
    ours = pl.get_head(name)(embedding_size=8, class_num=6, **params)
    ours.train()
    theirs = make_ref(8, 6, **params)
    theirs.weight.set_value(ours.weight)
    np.testing.assert_allclose(ours(x, labels).numpy(), theirs.logits(x, labels).numpy(), rtol=1e-4, atol=1e-4)


def _summary_line(text, name):
    section = text.split("## Summary", 1)[1].split("\n## ", 1)[0]
    return next(line for line in section.splitlines() if line.startswith(f"| {name} |"))


def _row(case, B, D, ours, floor, **extra):
    return dict(dict(case=case, name=case, B=B, D=D, M=0, floor_kind="pair", unit_bytes=4 * B * B, targets=[],
                     ours_s=ours, floor_s=floor, ours_reps=3, ours_peak=None), **extra)


def test_summary_marks_the_floor_target_met_or_missed_from_the_worst_ratio_at_b_256_and_above():
    rows = [_row("TripletLossV2", 64, 128, 9.0, 1.0),  # B < 256 does not count
            _row("TripletLossV2", 256, 128, 1.5, 1.0), _row("TripletLossV2", 1024, 512, 1.9, 1.0),
            _row("TripletLoss", 256, 128, 1.2, 1.0), _row("TripletLoss", 1024, 128, 2.5, 1.0)]
    text = render({1: rows}, C.CASES)
    assert "| 1.90 ✓ (B=1024, D=512) |" in _summary_line(text, "TripletLossV2")
    assert "| 2.50 ✗ (B=1024, D=128) |" in _summary_line(text, "TripletLoss")


def test_summary_memory_target_uses_the_peak_at_4096_by_512():
    rows = [_row("TriHardLoss", 4096, 512, 2.0, 1.0, ours_peak=9 * 4 * 4096 * 4096)]
    assert "| 9.00 ✗ |" in _summary_line(render({1: rows}, C.CASES), "TriHardLoss")


def test_profile_prints_top_operators_without_writing_trace_files(tmp_path):
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "bench.py"), "--profile", "TripletLossV2",
                           "--batch-sizes", "16", "--dims", "8"], capture_output=True, text=True, timeout=120,
                          cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "| operator | calls/step | ms/step | % |" in proc.stdout
    assert "matmul" in proc.stdout
    assert not any(tmp_path.iterdir())


@pytest.mark.skipif(not os.path.exists("/proc/self/clear_refs"), reason="needs Linux /proc")
def test_peak_bytes_reports_a_block_allocated_inside_the_call_on_every_call():
    # In a fresh interpreter: after hundreds of other tests the heap may already hold a free 8 MiB block,
    # and reusing it raises no high-water mark.
    code = textwrap.dedent("""
        import paddle
        from benchmarks.measure import peak_bytes

        def allocate():
            t = paddle.ones([2048, 1024], dtype="float32")  # 8 MiB
            return float(t[0, 0])

        print([peak_bytes(allocate)[1] for _ in range(3)])
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120,
                         cwd=ROOT)
    peaks = ast.literal_eval(out.stdout.strip().splitlines()[-1])
    assert all(peak >= 7 * 2 ** 20 for peak in peaks), peaks
