"""PaddleClas's log-line formats, the progress-bar policy, the log file, and the curves PNG."""
import io
import logging
import re

from PIL import Image

from paddle_losses.engine.logging import (AverageMeter, best_line, epoch_axis, epoch_line, eval_line, plot_curves,
                                          progress_wanted, setup_logger, step_line)


def test_step_line_matches_paddleclas_format_exactly():
    line = step_line(1, 120, 0, 202, [("LinearWarmup", 0.0000035), ("Constant", 1000.0)],
                     {"CELoss": 6.6, "TripletLossV2": 0.3, "CenterLoss": 0.001, "loss": 6.901},
                     batch_cost=0.25, reader_cost=0.01, batch_size=64, eta_seconds=6060)
    assert line == ("[Train][Epoch 1/120][Iter: 0/202]lr(LinearWarmup): 0.00000350, lr(Constant): 1000.00000000, "
                    "CELoss: 6.60000, TripletLossV2: 0.30000, CenterLoss: 0.00100, loss: 6.90100, "
                    "batch_cost: 0.25000s, reader_cost: 0.01000, ips: 256.00000 samples/s, eta: 1:41:00")


def test_epoch_eval_and_best_lines():
    assert epoch_line(3, 10, {"CELoss": 1.0, "loss": 1.5}) == "[Train][Epoch 3/10][Avg]CELoss: 1.00000, loss: 1.50000"
    assert eval_line(3, {"recall1": 0.9, "mAP": 0.25}) == "[Eval][Epoch 3][Avg]recall1: 0.90000, mAP: 0.25000"
    assert best_line(3, 0.9) == "[Eval][Epoch 3][best metric: 0.9]"


def test_average_meter_weights_by_batch_size():
    m = AverageMeter()
    m.update({"loss": 1.0}, 10)
    m.update({"loss": 4.0}, 30)
    assert m.averages() == {"loss": 3.25}


def test_logger_record_format_and_file_on_rank_zero(tmp_path, capsys):
    logger = setup_logger(str(tmp_path), rank=0, log_ranks="0", mode="train")
    logger.info("hello")
    out = capsys.readouterr().out
    assert re.fullmatch(r"\[\d{4}/\d\d/\d\d \d\d:\d\d:\d\d\] ppcls INFO: hello\n", out)
    assert (tmp_path / "train.log").read_text().endswith("ppcls INFO: hello\n")
    other = setup_logger(str(tmp_path / "r1"), rank=1, log_ranks="0", mode="train")
    assert other.level == logging.ERROR and not (tmp_path / "r1").exists()


class FakeStream(io.StringIO):
    def __init__(self, tty):
        super().__init__()
        self._tty = tty

    def isatty(self):
        return self._tty


def test_progress_bar_only_on_an_interactive_terminal_and_never_under_ci(monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    assert progress_wanted(None, FakeStream(True))
    assert not progress_wanted(None, FakeStream(False))
    monkeypatch.setenv("CI", "true")
    assert not progress_wanted(None, FakeStream(True))
    assert progress_wanted(True, FakeStream(False))


def test_curves_png_is_drawn_with_pillow(tmp_path):
    path = plot_curves(str(tmp_path / "c.png"), {"epoch": [1, 2, 3], "loss": [1.0, 0.6, 0.5],
                                                 "eval": {"recall1": [(0, 0.5), (1, 0.6), (3, 0.8)]}})
    img = Image.open(path)
    assert img.size == (900, 420)
    colours = {c for _, c in img.getcolors(100000)}
    assert (31, 119, 180) in colours  # a curve was drawn, not just the frame


def test_epoch_axis_ticks_every_epoch_of_a_short_run():
    assert epoch_axis([1, 2, 3]) == (1, 3, [1, 2, 3])
    assert epoch_axis([0, 1, 2, 3, 4, 5]) == (0, 5, [0, 1, 2, 3, 4, 5])


def test_epoch_axis_of_a_one_epoch_run_labels_only_that_epoch():
    lo, hi, ticks = epoch_axis([1])
    assert ticks == [1] and lo < 1 < hi and hi - lo == 1  # no phantom "epoch 2"


def test_epoch_axis_thins_long_runs_and_keeps_the_last_epoch():
    lo, hi, ticks = epoch_axis(list(range(1, 101)))
    assert (lo, hi) == (1, 100) and ticks[0] == 1 and ticks[-1] == 100 and len(ticks) <= 11
    assert all(b > a for a, b in zip(ticks, ticks[1:]))
    assert epoch_axis([0, 120])[2][-1] == 120
