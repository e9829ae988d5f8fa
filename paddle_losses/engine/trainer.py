"""The training / evaluation loop (PaddleClas's ``Engine``), for metric learning and classification.

Build order follows PaddleClas, as named steps of ``__init__``: settings (every Global key validated first),
process (seed, logger and config print, device), data loaders, losses and metrics, model and pretrained
weights, optimizers and data parallelism, resume, reporting. One training step:
``out = model(x, label)`` (``model(x)`` when not ``is_rec``) -> optional global gather ->
``loss_dict = loss(out, label[B, 1])`` -> ``(loss_dict["loss"] / update_freq).backward()`` -> every
``update_freq`` steps each optimizer steps and each per-iteration LR schedule advances.

Deliberate differences from PaddleClas (docs/compatibility.md, "Trainer and metrics"):

* the data order and random augmentation of an epoch depend only on ``(Global.seed, epoch)``, and every
  epoch starts a fresh pass, so a resumed run continues exactly as the uninterrupted one would have;
* resume restores the best metric (PaddleClas resets it to 0.0);
* retrieval metrics need neither ``Loss.Eval`` nor ``Metric.Eval`` (default: Recallk 1, 5); masked gallery
  items are removed from the ranking; ``mINP`` uses 1-based ranks;
* ``Global.device: gpu`` on a CPU-only Paddle falls back to the CPU with a warning;
* missing "always read" Global keys get defaults instead of a KeyError, and every key is type- and
  range-checked at start-up;
* checkpoint sets are written atomically and loaded through a restricted unpickler (:mod:`.checkpoint`,
  :mod:`.safe_load`); a new run does not overwrite a finished one without ``Global.overwrite_output``;
* a NaN/Inf loss stops training (or skips the step); an unreadable image is skipped with a warning (or stops
  training), never hangs the loader.
"""
import os
import random
import time
import warnings
from collections import OrderedDict
from contextlib import nullcontext

import numpy as np
import paddle
import paddle.nn.functional as F

from .. import runtime
from ..combined import build_loss
from ..heads.shards import save_shard, sharded_keys
from ..config import AttrDict, format_config
from ..errors import ConfigError, ConfigWarning, InputError, TrainingError
from . import checkpoint as ckpt
from . import distributed as dist_utils
from .amp import AmpRunner, AmpSettings
from .data import SynchronousLoader, bad_samples, build_dataset, loader_failure
from .ema import ModelEMA, ema_decay
from .diagnostics import batch_diagnostics, feature_key_and_margin, memory_fill, nonfinite_report
from .global_config import validate_global
from .logging import (AverageMeter, Progress, VisualDLWriter, banner_lines, best_line, diag_line, epoch_line,
                      eval_line, plot_curves, progress_wanted, setup_logger, step_line)
from .metrics import build_retrieval_metrics, build_train_metrics, evaluate_retrieval
from .model import build_model, is_rec
from .optim import build_optimizer
from .rerank import re_ranking
from .samplers import EvalShardSampler, build_sampler

def _resolve_device(name, logger):
    name = str(name or "cpu").lower()
    if name.startswith("gpu") and not paddle.device.is_compiled_with_cuda():
        # one message, in the log the user reads (not also a Python warning on stderr)
        logger.warning(f"Global.device is {name!r} but this Paddle build has no CUDA; falling back to cpu")
        name = "cpu"
    paddle.set_device(name)
    return name


def _reseed(seed, epoch, rank):
    """Make the randomness of an epoch a function of (seed, epoch, rank) only."""
    if seed is None:
        return
    s = (int(seed) * 1_000_003 + epoch * 7919 + rank) % (2 ** 31)
    random.seed(s)
    np.random.seed(s)
    paddle.seed(s)


def _worker_init(seed):
    def init(worker_id):
        info = paddle.io.get_worker_info()
        base = (seed or 0) + (info.seed if info is not None else 0)
        np.random.seed((base + worker_id) % (2 ** 32))
        random.seed(base + worker_id)
    return init


def _has_trainable(layer):
    return layer is not None and any(not p.stop_gradient for p in layer.parameters())


class Engine:
    """Build everything from a config (:class:`~paddle_losses.config.AttrDict`); ``train()`` or ``eval()``."""

    def __init__(self, config, mode="train"):
        if mode not in ("train", "eval"):
            raise ValueError(f"mode must be 'train' or 'eval', got {mode!r}")
        self.config, self.mode = config, mode
        self._read_settings()
        self._start_process()
        self._build_data()
        self._build_losses_and_metrics()
        self._build_model()
        self._build_optimizers()
        self._build_precision()
        self._restore_checkpoint()
        self._start_reporting()

    # ------------------------------------------------------------------------------------- building
    def _read_settings(self):
        """Validate Global (every key, before anything is built) and the sections the trainer needs."""
        config = self.config
        config.setdefault("profiler_options", None)
        if not isinstance(config.get("Global"), dict):
            config["Global"] = AttrDict()
        self.g = g = validate_global(config["Global"], self.mode)
        self.eval_mode = g["eval_mode"]
        self.seed = g["seed"]
        self.update_freq = g["update_freq"]
        self.trust = g["trust_checkpoints"]
        arch = config.get("Arch")
        if not isinstance(arch, dict):
            raise ConfigError("the Arch section is missing")
        self.is_rec = is_rec(arch)
        self.class_num = self._class_num(arch)

    def _start_process(self):
        """Distributed init, initial seed, logger and config print, device; refuse to clobber a finished run."""
        g = self.g
        self.world = dist_utils.init_if_needed()
        self.rank = dist_utils.world()[0]
        if self.seed is not None:
            _reseed(self.seed, 0, 0)  # identical initial weights on every rank
        replaced = self._check_output_dir() if self.mode == "train" else []  # every rank, so all of them stop
        self.logger = setup_logger(g["output_dir"], self.rank, g["log_ranks"], self.mode)
        for line in banner_lines() + format_config(self.config):
            self.logger.info(line)
        if replaced:
            self.logger.warning(f"Global.overwrite_output is True: the previous run's checkpoints in "
                                f"{g['output_dir']} ({', '.join(replaced[:3])} ...) will be replaced")
        if self.mode == "train" and self.rank == 0:
            for path in ckpt.remove_stale_temporaries(g["output_dir"]):
                self.logger.warning(f"removed {path}, a leftover of an interrupted checkpoint save")
        self.device = _resolve_device(g["device"], self.logger)
        self.logger.info(f"device: {self.device}, world size: {self.world}, rank: {self.rank}, "
                         f"CPU threads: {runtime.threads() or 'not set (Paddle uses 1)'}")

    def _check_output_dir(self):
        """A new run (no ``Global.checkpoints``) must not overwrite the checkpoints of a previous run.

        Returns the checkpoint files that ``Global.overwrite_output`` allows to be replaced.
        """
        g = self.g
        out = str(g["output_dir"])
        if g["checkpoints"] or not os.path.isdir(out):
            return []
        previous = sorted(n for n in os.listdir(out)
                          if n.endswith(".pdparams") and (n[: -len(".pdparams")] in ("latest", "best_model")
                                                          or n.startswith("epoch_")))
        if previous and not g["overwrite_output"]:
            raise ConfigError(
                f"Global.output_dir {out} already holds a run ({', '.join(previous[:3])}"
                f"{' ...' if len(previous) > 3 else ''}); resume it with -o Global.checkpoints={out.rstrip('/')}"
                f"/latest, choose another output_dir, or set Global.overwrite_output=True to replace it")
        return previous

    def _build_data(self):
        g = self.g
        self.train_loader = self.train_sampler = None
        if self.mode == "train":
            self.train_loader, self.train_sampler = self._train_loader()
            n = g["iter_per_epoch"] or len(self.train_loader)
            self.iter_per_epoch = max(self.update_freq, n - n % self.update_freq)
        self.eval_sets = self._eval_loaders() if (self.mode == "eval" or g["eval_during_train"]) else None

    def _build_losses_and_metrics(self):
        config, mode = self.config, self.mode
        loss_cfg = config.get("Loss") or {}
        self.train_loss = build_loss(loss_cfg.get("Train"), "Loss.Train") if mode == "train" else None
        if mode == "train" and self.train_loss is None:
            raise ConfigError("Loss.Train is missing: list at least one loss, e.g. `- CELoss: {weight: 1.0}`")
        metric_cfg = config.get("Metric") or {}
        self.train_metrics = build_train_metrics(metric_cfg.get("Train"))
        if self.eval_mode == "retrieval":
            self.eval_metrics = build_retrieval_metrics(metric_cfg.get("Eval"))
        else:
            self.eval_metrics = build_train_metrics(metric_cfg.get("Eval") or [{"TopkAcc": {"topk": [1, 5]}}],
                                                    "Metric.Eval")

    def _build_model(self):
        """The model, with ``Global.pretrained_model`` (or, to evaluate, ``Global.checkpoints``) loaded."""
        g, mode = self.g, self.mode
        self.model = build_model(self.config["Arch"])
        if g["pretrained_model"]:
            unused = ckpt.load_weights(g["pretrained_model"], self.model, self.train_loss,
                                       strict=(mode == "eval"), what="Global.pretrained_model", trust=self.trust)
            self.logger.info(f"Loaded pretrained weights from {g['pretrained_model']}"
                             + (f" ({len(unused)} unused keys)" if unused else ""))
        elif mode == "eval" and g["checkpoints"]:
            ckpt.load_weights(g["checkpoints"], self.model, None, strict=True, what="Global.checkpoints",
                              trust=self.trust)

    def _build_optimizers(self):
        """Optimizers and LR schedules (train mode), then the data-parallel wrappers."""
        self.optimizers, self.schedulers = [], []
        if self.mode == "train":
            self.optimizers, self.schedulers = build_optimizer(
                self.config.get("Optimizer") or {}, self.g["epochs"], self.iter_per_epoch // self.update_freq,
                self.model, self.train_loss)
        self.model_dp, self.loss_dp = self.model, self.train_loss
        if self.world > 1:
            self.model_dp = paddle.DataParallel(self.model, find_unused_parameters=True)
            if _has_trainable(self.train_loss):
                self.loss_dp = paddle.DataParallel(self.train_loss, find_unused_parameters=True)

    def _build_precision(self):
        """The AMP section (auto_cast, O2 decoration, loss scaler) and the EMA section (weight averages)."""
        self.amp = AmpRunner(AmpSettings(self.config.get("AMP"), self.device), self.logger)
        if self.mode == "train":
            self.model, self.optimizers = self.amp.decorate(self.model, self.optimizers)
        decay = ema_decay(self.config.get("EMA"))  # validated in eval mode too, used in training only
        self.ema = ModelEMA(self.model, decay) if decay is not None and self.mode == "train" else None

    def _restore_checkpoint(self):
        """Resume from ``Global.checkpoints`` (train mode): weights, optimizer, LR, best metric, history."""
        g = self.g
        self.best_metric, self.best_epoch, self.start_epoch, self.global_step = -1.0, 0, 1, 0
        self.history = {"epoch": [], "loss": [], "eval": {}}
        if self.mode != "train" or not g["checkpoints"]:
            return
        if self.world > 1 and sharded_keys(self.model):
            # the .pdparams/.pdopt hold rank 0's head shard and its optimizer moments only
            raise ConfigError("Global.checkpoints: resuming a run with class_parallel heads is not supported yet "
                              "(the optimizer moments of the other ranks' head shards are not saved); start from "
                              "its weights with paddle_losses.heads.shards.load_shard instead")
        states = ckpt.load_checkpoint(g["checkpoints"], self.model, self.train_loss, self.optimizers,
                                      trust=self.trust)
        try:
            self.start_epoch = int(states.get("epoch", 0)) + 1
            self.best_metric = float(states.get("metric", -1.0))
            self.best_epoch = int(states.get("best_epoch", 0))
            self.global_step = int(states.get("global_step", 0))
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"Global.checkpoints: {g['checkpoints']}.pdstates has an unreadable value "
                              f"({exc})") from None
        self.history = states.get("history") or self.history
        self.amp.load_state_dict(states.get("amp_scaler"))
        if self.ema is not None:
            self.ema.load_state_dict(states.get("ema"), f"Global.checkpoints: {g['checkpoints']}.pdstates")
        if not states.get("verified"):
            self.logger.info(f"{g['checkpoints']} has no manifest (written by PaddleClas or an earlier version): "
                             f"its files are loaded without checking that they belong together")
        saved_epochs = states.get("epochs")
        if saved_epochs is not None and saved_epochs != g["epochs"]:
            msg = (f"Global.epochs is {g['epochs']} but the checkpoint was written by a run of {saved_epochs} "
                   f"epochs: the LR schedule, which spans all epochs, now differs from the interrupted run's")
            self.logger.warning(msg)
            warnings.warn(msg, ConfigWarning, stacklevel=3)
        if self.start_epoch > g["epochs"]:
            self.logger.info(f"nothing to do: the run already finished at epoch {self.start_epoch - 1} "
                             f"(Global.epochs is {g['epochs']}; raise it to train further)")
        else:
            self.logger.info(f"Resumed from {g['checkpoints']}: continuing at epoch {self.start_epoch}, "
                             f"best metric {self.best_metric} (epoch {self.best_epoch})")

    def _start_reporting(self):
        g = self.g
        self.diag_key, self.diag_margin, self.diag_enabled = "features", 0.5, False
        if self.train_loss is not None:
            self.diag_key, self.diag_margin = feature_key_and_margin(self.train_loss)
            self.diag_enabled = bool(g["diagnostics"]) and any(
                hasattr(s, "feature_from") or hasattr(s, "margin") for s in self.train_loss.loss_func)
        self.vdl = VisualDLWriter(bool(g["use_visualdl"]) and self.rank == 0, g["output_dir"], self.logger)

    def _class_num(self, arch):
        """Number of classes the model's logits cover (Head.class_num, or Arch.class_num of a classifier)."""
        head = arch.get("Head")
        if isinstance(head, dict):
            return head.get("class_num")
        return arch.get("class_num") if arch.get("name") != "RecModel" else None

    def _loader_section(self, key):
        dl = self.config.get("DataLoader")
        if not isinstance(dl, dict) or key not in dl:
            raise ConfigError(f"DataLoader.{key} is missing")
        return dl[key]

    def _make_loader(self, dataset, batch_sampler, loader_cfg, path):
        loader_cfg = loader_cfg or {}
        workers = loader_cfg.get("num_workers", 0) or 0
        if isinstance(workers, bool) or not isinstance(workers, int) or not 0 <= workers <= 1024:
            raise ConfigError(f"{path}.loader.num_workers must be an integer in [0, 1024], got {workers!r}")
        if workers == 0:
            return SynchronousLoader(dataset, batch_sampler)
        return paddle.io.DataLoader(dataset, batch_sampler=batch_sampler, num_workers=workers,
                                    use_shared_memory=bool(loader_cfg.get("use_shared_memory", False)),
                                    return_list=True,
                                    worker_init_fn=_worker_init(self.seed) if workers else None)

    def _train_loader(self):
        sec = self._loader_section("Train")
        dataset = build_dataset(sec.get("dataset"), "DataLoader.Train.dataset", class_num=self.class_num)
        labels = np.asarray(getattr(dataset, "labels", []))
        if self.class_num is not None and labels.size and (labels.min() < 0 or labels.max() >= self.class_num):
            raise ConfigError(f"DataLoader.Train.dataset has labels in [{labels.min()}, {labels.max()}] but the "
                              f"model has class_num {self.class_num}; labels must lie in [0, class_num) "
                              f"(relabel: True maps them to 0..K-1)")
        sampler = build_sampler(dataset, sec.get("sampler"), "DataLoader.Train.sampler", seed=self.seed or 0)
        return self._make_loader(dataset, sampler, sec.get("loader"), "DataLoader.Train"), sampler

    def _eval_loader(self, sec, path):
        dataset = build_dataset(sec.get("dataset"), f"{path}.dataset")
        bs = int((sec.get("sampler") or {}).get("batch_size", 64))
        sampler = EvalShardSampler(dataset, bs)
        return dataset, self._make_loader(dataset, sampler, sec.get("loader"), path)

    def _eval_loaders(self):
        ev = self._loader_section("Eval")
        if self.eval_mode == "classification":
            return {"Eval": self._eval_loader(ev, "DataLoader.Eval")}
        if "Query" in ev and "Gallery" in ev:
            return {"Query": self._eval_loader(ev["Query"], "DataLoader.Eval.Query"),
                    "Gallery": self._eval_loader(ev["Gallery"], "DataLoader.Eval.Gallery")}
        if len(ev) == 1:
            only = next(iter(ev.values()))
            return {"Query": self._eval_loader(only, f"DataLoader.Eval.{next(iter(ev))}")}
        raise ConfigError(f"DataLoader.Eval must have Query and Gallery (or a single set), got {sorted(ev)}")

    # ------------------------------------------------------------------------------------- training
    def _lrs(self):
        return [(type(s).__name__, float(s.last_lr)) for s in self.schedulers]

    def _batch_iter(self, epoch):
        """Batches of one epoch; a fresh, deterministically seeded pass whenever the loader runs out."""
        restart = 0
        while True:
            if hasattr(self.train_sampler, "set_epoch"):
                self.train_sampler.set_epoch(epoch + restart * 100_003)
            got = False
            for batch in self._guarded(self.train_loader):
                got = True
                yield batch
            if not got:
                raise ConfigError("the train loader yields no batch (dataset smaller than one batch?)")
            restart += 1

    @staticmethod
    def _guarded(loader):
        """Iterate ``loader``; a failure that a loader worker recorded is raised with its own message."""
        it = iter(loader)
        while True:
            try:
                batch = next(it)
            except StopIteration:
                return
            except Exception as exc:
                failure = loader_failure(loader.dataset, exc)
                if failure is None:
                    raise
                raise failure from None
            yield batch

    def train(self):
        g, epochs = self.g, self.g["epochs"]
        if self.start_epoch > epochs:  # a resumed run that already finished (logged when resuming)
            return {"best_metric": self.best_metric, "best_epoch": self.best_epoch, "last_metrics": None,
                    "history": self.history}
        if g["eval_before_train"] and self.start_epoch == 1 and self.eval_sets is not None:
            metrics = self.eval(0)
            self._record_eval(0, metrics)
        last_metrics = None
        for epoch in range(self.start_epoch, epochs + 1):
            _reseed(self.seed, epoch, self.rank)
            self.model.train()
            if self.train_loss is not None:
                self.train_loss.train()
            avg = self._train_epoch(epoch, epochs)
            self.history["epoch"].append(epoch)
            self.history["loss"].append(avg.get("loss", float("nan")))
            for s in self.schedulers:
                if s.by_epoch and not s.on_plateau:
                    s.step()
            if g["eval_during_train"] and epoch % int(g["eval_interval"]) == 0 \
                    and epoch >= int(g["start_eval_epoch"]):
                last_metrics = self.eval(epoch)
                metric = next(iter(last_metrics.values()))
                self._record_eval(epoch, last_metrics)
                for s in self.schedulers:
                    if s.on_plateau:
                        s.step(metric)
                if metric >= self.best_metric:
                    self.best_metric, self.best_epoch = metric, epoch
                    self._save("best_model", epoch)
                self.logger.info(best_line(epoch, self.best_metric))
                self.vdl.scalar("eval_acc", metric, epoch)
            if int(g["save_interval"]) > 0 and epoch % int(g["save_interval"]) == 0:
                self._save(f"epoch_{epoch}", epoch)
            self._save("latest", epoch)
            if g["plot_curves"] and self.rank == 0:
                plot_curves(os.path.join(g["output_dir"], "curves.png"), self.history)
        self.vdl.close()
        self._log_summary(epochs)
        return {"best_metric": self.best_metric, "best_epoch": self.best_epoch, "last_metrics": last_metrics,
                "history": self.history}

    def _log_summary(self, epochs):
        ev = self.history["eval"]
        first = {k: v[0] for k, v in ev.items() if v and v[0][0] == 0}
        if not first:
            return
        parts = [f"{k} {first[k][1]:.5f} -> {ev[k][-1][1]:.5f}" for k in first]
        self.logger.info(f"[Eval][Summary]untrained (epoch 0) -> trained (epoch {ev[next(iter(first))][-1][0]}): "
                         + ", ".join(parts))

    def _record_eval(self, epoch, metrics):
        for k, v in metrics.items():
            self.history["eval"].setdefault(k, []).append((epoch, v))

    def _train_epoch(self, epoch, epochs):
        g = self.g
        meter, diag = AverageMeter(), AverageMeter()
        batches = self._batch_iter(epoch)
        print_step = max(1, int(g["print_batch_step"]))
        progress = Progress(self.iter_per_epoch, f"epoch {epoch}/{epochs}",
                            progress_wanted(g["progress_bar"]) and self.rank == 0)
        gather = bool(g["gather_embeddings"]) and self.world > 1
        t_end = time.time()
        batch_costs, reader_costs = [], []
        skipped, bad_before = 0, bad_samples(self.train_loader.dataset)
        for iter_id in range(self.iter_per_epoch):
            if iter_id == 5:
                batch_costs, reader_costs = [], []
            batch = next(batches)
            reader_costs.append(time.time() - t_end)
            images = batch[0]
            labels = batch[1].reshape([batch[0].shape[0], -1]).astype("int64")
            with self.amp.autocast():
                out = self.model_dp(images, labels) if self.is_rec else self.model_dp(images)
            # the gather's backward scales by the world size (paddle_losses.distributed)
            loss_in, loss_labels = dist_utils.gather_batch(out, labels) if gather else (out, labels)
            try:
                with dist_utils.global_batch() if gather else nullcontext():
                    loss_dict = self.loss_dp(loss_in, loss_labels)
            except InputError as exc:  # e.g. NaN embeddings after a divergent step: say when it happened
                raise InputError(f"epoch {epoch} step {iter_id} (global step {self.global_step}): {exc}") from None
            # a loss configured with reduction "none" reports its mean (the total already sums it)
            loss_values = {k: float(v) if v.size == 1 else float(v.mean()) for k, v in loss_dict.items()}
            if not all(np.isfinite(v) for v in loss_values.values()):
                self._on_nonfinite_loss(epoch, iter_id, loss_values, loss_in, loss_labels)
                skipped += 1
                t_end = time.time()
                continue
            self.amp.backward(loss_dict["loss"] / self.update_freq)
            if (iter_id + 1) % self.update_freq == 0:
                for opt in self.optimizers:
                    self.amp.step(opt)
                    opt.clear_grad()
                if self.ema is not None:
                    self.ema.update()
                for s in self.schedulers:
                    if not s.by_epoch:
                        s.step()
                self.global_step += 1
            values = OrderedDict()
            if self.train_metrics:
                logits = out.get("logits") if isinstance(out, dict) else out
                if logits is not None:
                    for m in self.train_metrics:
                        values.update({k: float(v) for k, v in m(logits, labels).items()})
            values.update(loss_values)
            bs = int(images.shape[0])
            meter.update(values, bs)
            batch_costs.append(time.time() - t_end)
            progress.update()
            if iter_id % print_step == 0:
                if self.diag_enabled:
                    d = batch_diagnostics(loss_in, loss_labels, self.diag_key, self.diag_margin)
                    diag.update(d, 1)
                mean_cost = float(np.mean(batch_costs)) if batch_costs else 0.0
                eta = ((epochs - epoch + 1) * self.iter_per_epoch - iter_id) * mean_cost
                self.logger.info(step_line(epoch, epochs, iter_id, self.iter_per_epoch, self._lrs(),
                                           meter.averages(), mean_cost,
                                           float(np.mean(reader_costs)) if reader_costs else 0.0, bs, eta))
                for name, lr in self._lrs():
                    self.vdl.scalar(f"lr({name})", lr, self.global_step)
                for k, v in meter.averages().items():
                    self.vdl.scalar(f"train_{k}", v, self.global_step)
                batch_costs, reader_costs = [], []
            t_end = time.time()
        progress.close()
        avg = meter.averages()
        self.logger.info(epoch_line(epoch, epochs, avg))
        if skipped:
            self.logger.warning(f"[Train][Epoch {epoch}/{epochs}] skipped {skipped} of {self.iter_per_epoch} steps "
                                f"whose loss was not finite (Global.on_nonfinite_loss: skip)")
        bad = bad_samples(self.train_loader.dataset) - bad_before
        if bad:
            self.logger.warning(f"[Train][Epoch {epoch}/{epochs}] skipped {bad} unreadable samples (named above)")
        if self.diag_enabled:
            d = diag.averages()
            fill = memory_fill(self.train_loss)
            if fill is not None:
                d["xbm_fill"] = fill
            if d:
                self.logger.info(diag_line(epoch, epochs, d))
        return avg

    def _on_nonfinite_loss(self, epoch, iter_id, loss_values, loss_in, labels):
        """Stop (default) or skip the step (``Global.on_nonfinite_loss: skip``), with batch diagnostics."""
        bad = [k for k, v in loss_values.items() if not np.isfinite(v)]
        report = nonfinite_report(loss_in, labels, self.diag_key)
        where = (f"epoch {epoch} step {iter_id} (global step {self.global_step}): the loss is not finite "
                 f"({', '.join(f'{k}={loss_values[k]}' for k in bad)}); batch: {report}")
        for opt in self.optimizers:
            opt.clear_grad()  # nothing of this step reaches the weights
        if self.g["on_nonfinite_loss"] == "skip":
            self.logger.warning(f"{where}; step skipped (Global.on_nonfinite_loss: skip)")
            return
        raise TrainingError(f"{where}. Training stopped before this step changed the weights; lower the "
                            f"learning rate, check the data, or set Global.on_nonfinite_loss=skip")

    def _save(self, prefix, epoch):
        # class-parallel heads: every rank writes its shard (paddle_losses.heads.shards)
        save_shard(self.model, os.path.join(self.g["output_dir"], prefix), self.rank, self.world)
        if self.rank != 0:
            return
        states = {"metric": self.best_metric, "epoch": epoch, "epochs": self.g["epochs"], "best_epoch": self.best_epoch,
                  "global_step": self.global_step, "history": self.history}
        scaler_state = self.amp.state_dict()
        if scaler_state is not None:
            states["amp_scaler"] = scaler_state
        if self.ema is not None:
            states["ema"] = self.ema.state_dict()
        # the best model is the averaged one (it is what eval measured); other sets keep the trained weights
        swap = self.ema.swapped_in() if self.ema is not None and prefix == "best_model" else nullcontext()
        with swap:
            path = ckpt.save_checkpoint(self.g["output_dir"], prefix, self.model, self.train_loss, self.optimizers,
                                        states)
        self.logger.info(f"Already save model in {path}")

    # ------------------------------------------------------------------------------------- evaluation
    @paddle.no_grad()
    def _extract(self, name, dataset, loader):
        """``(features [N, D] or logits, labels [N], cameras [N] or None)`` over the whole dataset."""
        feats, labels, cams = [], [], []
        key = self.g["retrieval_feature_from"]
        progress = Progress(len(loader), f"{name} features", progress_wanted(self.g["progress_bar"])
                            and self.rank == 0)
        for batch in self._guarded(loader):
            x = batch[0]
            y = batch[1].reshape([x.shape[0], -1]).astype("int64")
            out = self.model(x, y) if self.is_rec else self.model(x)
            if self.eval_mode == "classification":
                f = out.get("logits") if isinstance(out, dict) else out
            elif isinstance(out, dict):
                if key not in out:
                    raise ConfigError(f"Global.retrieval_feature_from: the model output has no {key!r} "
                                      f"(keys: {sorted(out)})")
                f = out[key]
            else:
                f = out
            feats.append(f.astype("float32"))
            labels.append(y.reshape([-1]))
            if len(batch) > 2:
                cams.append(batch[2].reshape([-1]).astype("int64"))
            progress.update()
        progress.close()
        n = len(dataset)
        f = dist_utils.all_gather_array(paddle.concat(feats))[:n]
        y = dist_utils.all_gather_array(paddle.concat(labels))[:n]
        c = dist_utils.all_gather_array(paddle.concat(cams))[:n] if cams else None
        if self.eval_mode == "retrieval":
            if self.g["feature_normalize"]:
                f = F.normalize(f, p=2, axis=1)
            binarize = self.g["feature_binarize"]
            if binarize == "round":
                f = paddle.round(f) * 2.0 - 1.0
            elif binarize == "sign":
                f = paddle.sign(f)
            elif binarize not in (None, False):
                raise ConfigError(f"Global.feature_binarize must be round, sign or null, got {binarize!r}")
        return f, y, c

    def eval(self, epoch=0):
        """Evaluate; returns an ordered ``{metric key: value}`` (first key = the best-model criterion)."""
        if self.eval_sets is None:
            raise ConfigError("DataLoader.Eval is missing (or Global.eval_during_train is False)")
        dist_utils.broadcast_buffers(self.model)
        bad_before = sum(bad_samples(ds) for ds, _ in self.eval_sets.values())
        self.model.eval()
        weights = self.ema.swapped_in() if self.ema is not None else nullcontext()
        try:
            with weights, self.amp.autocast(train=False):
                if self.eval_mode == "classification":
                    metrics = self._eval_classification()
                else:
                    metrics = self._eval_retrieval()
        finally:
            self.model.train()
        self.logger.info(eval_line(epoch, metrics))
        bad = sum(bad_samples(ds) for ds, _ in self.eval_sets.values()) - bad_before
        if bad:
            self.logger.warning(f"[Eval][Epoch {epoch}] skipped {bad} unreadable samples (named above); other "
                                f"samples stood in for them")
        return metrics

    def _eval_retrieval(self):
        self.logger.info(f"re_ranking={bool(self.g['re_ranking'])}")
        q_set, q_loader = self.eval_sets["Query"]
        qf, qy, qc = self._extract("query", q_set, q_loader)
        if "Gallery" in self.eval_sets:
            g_set, g_loader = self.eval_sets["Gallery"]
            gf, gy, gc = self._extract("gallery", g_set, g_loader)
            same = False
        else:
            gf, gy, gc, same = qf, qy, qc, True
        self.logger.info(f"Build gallery done, all feat shape: {list(gf.shape)}")
        scores = None
        if self.g["re_ranking"]:
            # PaddleClas's call-site constants (k1=20, k2=6, lambda=0.3)
            scores = -re_ranking(qf.numpy(), gf.numpy(), k1=20, k2=6, lambda_value=0.3,
                                 normalized=bool(self.g["feature_normalize"]))
        return evaluate_retrieval(qf.numpy(), gf.numpy(), qy.numpy(), gy.numpy(), self.eval_metrics,
                                  None if qc is None else qc.numpy(), None if gc is None else gc.numpy(),
                                  same_set=same, block_size=int(self.g["sim_block_size"]), scores=scores)

    def _eval_classification(self):
        dataset, loader = self.eval_sets["Eval"]
        logits, labels, _ = self._extract("eval", dataset, loader)
        out = OrderedDict()
        for m in self.eval_metrics:
            out.update({k: float(v) for k, v in m(logits, labels).items()})
        return out
