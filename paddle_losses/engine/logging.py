"""Trainer output: PaddleClas's log lines, an optional progress bar, VisualDL, and a PNG of the curves.

Line formats (PaddleClas's, kept exactly so that greps for ``best``, ``Epoch N`` and ``ips:`` work)::

    [2024/10/18 17:05:11] ppcls INFO: [Train][Epoch 1/120][Iter: 0/202]lr(LinearWarmup): 0.00000350, CELoss: 6.60000, loss: 6.90100, batch_cost: 0.25000s, reader_cost: 0.01000, ips: 256.00000 samples/s, eta: 1:41:00
    ... [Train][Epoch 1/120][Avg]CELoss: 6.60000, loss: 6.90100
    ... [Eval][Epoch 1][Avg]recall1: 0.91000, recall5: 0.98000, mAP: 0.75000
    ... [Eval][Epoch 1][best metric: 0.91]

Loss values on step lines are epoch-to-date averages, as in PaddleClas. Metric-learning diagnostics go on
their own ``[Train][Epoch e/E][Diag]`` line so the PaddleClas lines stay unchanged.
"""
import datetime
import logging
import os
import sys

LOGGER_NAME = "ppcls"
_FORMAT = "[%(asctime)s] %(name)s %(levelname)s: %(message)s"
_DATEFMT = "%Y/%m/%d %H:%M:%S"


def setup_logger(output_dir=None, rank=0, log_ranks="0", mode="train"):
    """The ``ppcls`` logger: stdout on the ranks in ``log_ranks`` (others at ERROR), ``{mode}.log`` on rank 0."""
    logger = logging.getLogger(LOGGER_NAME)
    for h in list(logger.handlers):
        logger.removeHandler(h)
        h.close()
    logger.propagate = False
    fmt = logging.Formatter(_FORMAT, datefmt=_DATEFMT)
    stream = logging.StreamHandler(sys.stdout)
    stream.setFormatter(fmt)
    logger.addHandler(stream)
    ranks = {int(r) for r in str(log_ranks).split(",") if str(r).strip().lstrip("-").isdigit()}
    logger.setLevel(logging.INFO if rank in ranks else logging.ERROR)
    if output_dir and rank == 0:
        os.makedirs(output_dir, exist_ok=True)
        fh = logging.FileHandler(os.path.join(output_dir, f"{mode}.log"), mode="a", encoding="utf-8")
        fh.setFormatter(fmt)
        logger.addHandler(fh)
    return logger


def banner_lines():
    text = "PaddleClas is powered by PaddlePaddle ! (paddle_losses trainer)"
    bar = "=" * (len(text) + 4)
    return [bar, f"= {text} =", bar]


def _fmt_items(items):
    return ", ".join(f"{k}: {v:.5f}" for k, v in items)


def step_line(epoch, epochs, iter_id, iters, lrs, values, batch_cost, reader_cost, batch_size, eta_seconds):
    """The ``[Train][Epoch e/E][Iter: i/N]`` line; ``lrs`` is ``[(scheduler class name, lr)]``."""
    lr_part = ", ".join(f"lr({name}): {lr:.8f}" for name, lr in lrs)
    parts = [p for p in (lr_part, _fmt_items(values.items())) if p]
    ips = batch_size / batch_cost if batch_cost > 0 else 0.0
    eta = str(datetime.timedelta(seconds=int(eta_seconds)))
    timing = f"batch_cost: {batch_cost:.5f}s, reader_cost: {reader_cost:.5f}, ips: {ips:.5f} samples/s, eta: {eta}"
    return f"[Train][Epoch {epoch}/{epochs}][Iter: {iter_id}/{iters}]" + ", ".join(parts + [timing])


def epoch_line(epoch, epochs, values):
    return f"[Train][Epoch {epoch}/{epochs}][Avg]" + _fmt_items(values.items())


def diag_line(epoch, epochs, values):
    return f"[Train][Epoch {epoch}/{epochs}][Diag]" + _fmt_items(values.items())


def eval_line(epoch, metrics):
    return f"[Eval][Epoch {epoch}][Avg]" + _fmt_items(metrics.items())


def best_line(epoch, best):
    return f"[Eval][Epoch {epoch}][best metric: {best}]"


class AverageMeter:
    """Sample-weighted running average of every key (PaddleClas's epoch-to-date averages)."""

    def __init__(self):
        self.sums, self.counts = {}, {}

    def update(self, values, n):
        for k, v in values.items():
            self.sums[k] = self.sums.get(k, 0.0) + float(v) * n
            self.counts[k] = self.counts.get(k, 0) + n

    def averages(self):
        return {k: self.sums[k] / max(self.counts[k], 1) for k in self.sums}


# ----------------------------------------------------------------------------------------- progress bar
def progress_wanted(setting=None, stream=None):
    """A bar only on an interactive terminal, never under ``CI=true``; ``Global.progress_bar`` overrides."""
    if setting is not None:
        return bool(setting)
    stream = stream or sys.stderr
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        return False
    return bool(getattr(stream, "isatty", lambda: False)())


class Progress:
    """tqdm when installed, else a single ``\\r``-rewritten line on stderr; a no-op when disabled."""

    def __init__(self, total, desc, enabled):
        self.enabled, self.total, self.desc, self.n = enabled, total, desc, 0
        self.bar = None
        if enabled:
            try:
                from tqdm import tqdm
                self.bar = tqdm(total=total, desc=desc, leave=False, file=sys.stderr)
            except ImportError:
                self.bar = None

    def update(self, n=1):
        if not self.enabled:
            return
        self.n += n
        if self.bar is not None:
            self.bar.update(n)
        else:
            sys.stderr.write(f"\r{self.desc} {self.n}/{self.total}")
            sys.stderr.flush()

    def close(self):
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.close()
        else:
            sys.stderr.write("\r" + " " * (len(self.desc) + 24) + "\r")
            sys.stderr.flush()


# ----------------------------------------------------------------------------------------- VisualDL
class VisualDLWriter:
    """``LogWriter(logdir=output_dir)`` when ``use_visualdl`` and visualdl is installed, else a no-op."""

    def __init__(self, enabled, output_dir, logger):
        self.writer = None
        if enabled:
            try:
                from visualdl import LogWriter
                self.writer = LogWriter(logdir=output_dir)
            except ImportError:
                logger.warning("Global.use_visualdl is True but visualdl is not installed "
                               "(pip install visualdl); continuing without it")

    def scalar(self, tag, value, step):
        if self.writer is not None:
            self.writer.add_scalar(tag=tag, value=float(value), step=int(step))

    def close(self):
        if self.writer is not None:
            self.writer.close()


# ----------------------------------------------------------------------------------------- curves
def plot_curves(path, history, width=900, height=420):
    """Draw per-epoch train loss (left) and eval metrics (right) into a PNG with Pillow only.

    ``history``: ``{"epoch": [...], "loss": [...], "eval": {metric: [(epoch, value), ...]}}``.
    """
    from PIL import Image, ImageDraw

    img = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(img)
    colours = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75)]
    panels = [("train loss", {"loss": list(zip(history.get("epoch", []), history.get("loss", [])))}),
              ("eval metrics", history.get("eval", {}))]
    pw = width // 2
    for pi, (title, series) in enumerate(panels):
        x0, y0, x1, y1 = pi * pw + 50, 30, (pi + 1) * pw - 20, height - 60
        draw.rectangle([x0, y0, x1, y1], outline=(0, 0, 0))
        draw.text((x0, 8), title, fill=(0, 0, 0))
        pts = [p for s in series.values() for p in s]
        if not pts:
            draw.text((x0 + 10, y0 + 10), "no data", fill=(128, 128, 128))
            continue
        xs, ys = [p[0] for p in pts], [p[1] for p in pts]
        xmin, xmax = min(xs), max(xs) if max(xs) > min(xs) else min(xs) + 1
        ymin, ymax = min(ys), max(ys)
        if ymax - ymin < 1e-12:
            ymin, ymax = ymin - 0.5, ymax + 0.5
        draw.text((x0 - 45, y0 - 4), f"{ymax:.3g}", fill=(0, 0, 0))
        draw.text((x0 - 45, y1 - 8), f"{ymin:.3g}", fill=(0, 0, 0))
        draw.text((x0, y1 + 4), f"epoch {xmin}", fill=(0, 0, 0))
        draw.text((x1 - 60, y1 + 4), f"epoch {xmax}", fill=(0, 0, 0))

        def to_px(x, y):
            return (x0 + (x - xmin) / (xmax - xmin) * (x1 - x0), y1 - (y - ymin) / (ymax - ymin) * (y1 - y0))

        for si, (name, s) in enumerate(series.items()):
            colour = colours[si % len(colours)]
            pxs = [to_px(x, y) for x, y in s]
            if len(pxs) > 1:
                draw.line(pxs, fill=colour, width=2)
            for px, py in pxs:
                draw.ellipse([px - 2, py - 2, px + 2, py + 2], fill=colour)
            draw.text((x0 + 8 + 110 * (si % 3), y1 + 20 + 14 * (si // 3)), name, fill=colour)
    img.save(path)
    return path
