"""The training / evaluation loop (PaddleClas's ``Engine``), for metric learning and classification.

Build order follows PaddleClas: seed, logger and config print, device, data loaders, losses, metrics,
model, pretrained weights, optimizers, data parallelism, resume. One training step:
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
* missing "always read" Global keys get defaults instead of a KeyError.
"""
import os
import random
import time
import warnings
from collections import OrderedDict

import numpy as np
import paddle
import paddle.nn.functional as F

from ..combined import build_loss
from ..heads.shards import save_shard, sharded_keys
from ..config import AttrDict, format_config
from ..errors import ConfigError, ConfigWarning
from . import checkpoint as ckpt
from . import distributed as dist_utils
from .data import build_dataset
from .diagnostics import batch_diagnostics, feature_key_and_margin, memory_fill
from .logging import (AverageMeter, Progress, VisualDLWriter, banner_lines, best_line, diag_line, epoch_line,
                      eval_line, plot_curves, progress_wanted, setup_logger, step_line)
from .metrics import build_retrieval_metrics, build_train_metrics, evaluate_retrieval
from .model import build_model, is_rec
from .optim import build_optimizer
from .rerank import re_ranking
from .samplers import EvalShardSampler, build_sampler

GLOBAL_DEFAULTS = {
    "output_dir": "./output/", "device": "cpu", "eval_during_train": True, "eval_interval": 1,
    "use_visualdl": False, "pretrained_model": None, "checkpoints": None, "print_batch_step": 10,
    "save_interval": 1, "eval_mode": "classification", "retrieval_feature_from": "features",
    "feature_normalize": True, "feature_binarize": None, "re_ranking": False, "sim_block_size": 64,
    "seed": None, "update_freq": 1, "iter_per_epoch": None, "start_eval_epoch": 0, "log_ranks": "0",
    "gather_embeddings": False, "eval_before_train": False, "plot_curves": True, "progress_bar": None,
    "diagnostics": True,
}


def _resolve_device(name, logger):
    name = str(name or "cpu").lower()
    if name.startswith("gpu") and not paddle.device.is_compiled_with_cuda():
        logger.warning(f"Global.device is {name!r} but this Paddle build has no CUDA; falling back to cpu")
        warnings.warn(f"Global.device {name!r} is not available in this Paddle build; using cpu",
                      ConfigWarning, stacklevel=3)
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
        config.setdefault("profiler_options", None)
        if not isinstance(config.get("Global"), dict):
            config["Global"] = AttrDict()
        g = config["Global"]
        for k, v in GLOBAL_DEFAULTS.items():
            g.setdefault(k, v)
        self.g = g
        if mode == "train" and "epochs" not in g:
            raise ConfigError("Global.epochs is missing (the number of training epochs)")
        self.world = dist_utils.init_if_needed()
        self.rank = dist_utils.world()[0]
        self.seed = g["seed"]
        if self.seed is not None:
            _reseed(self.seed, 0, 0)  # identical initial weights on every rank
        self.logger = setup_logger(g["output_dir"], self.rank, g["log_ranks"], mode)
        for line in banner_lines() + format_config(config):
            self.logger.info(line)
        self.device = _resolve_device(g["device"], self.logger)
        self.logger.info(f"device: {self.device}, world size: {self.world}, rank: {self.rank}, "
                         f"OMP_NUM_THREADS: {os.environ.get('OMP_NUM_THREADS', 'unset (Paddle uses 1 thread)')}")
        for section in ("AMP", "EMA"):
            if config.get(section):
                self.logger.warning(f"the {section} section is ignored by this trainer (CPU float32, no EMA)")
        self.eval_mode = g["eval_mode"]
        if self.eval_mode not in ("retrieval", "classification"):
            raise ConfigError(f"Global.eval_mode must be retrieval or classification, got {self.eval_mode!r}")
        arch = config.get("Arch")
        if not isinstance(arch, dict):
            raise ConfigError("the Arch section is missing")
        self.is_rec = is_rec(arch)
        self.update_freq = int(g["update_freq"])
        self.class_num = self._class_num(arch)

        self.train_loader = None
        if mode == "train":
            self.train_loader, self.train_sampler = self._train_loader()
            n = int(g["iter_per_epoch"] or len(self.train_loader))
            self.iter_per_epoch = max(self.update_freq, n - n % self.update_freq)
        self.eval_sets = self._eval_loaders() if (mode == "eval" or g["eval_during_train"]) else None

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

        self.model = build_model(arch)
        if g["pretrained_model"]:
            unused = ckpt.load_weights(str(g["pretrained_model"]), self.model, self.train_loss,
                                       strict=(mode == "eval"), what="Global.pretrained_model")
            self.logger.info(f"Loaded pretrained weights from {g['pretrained_model']}"
                             + (f" ({len(unused)} unused keys)" if unused else ""))
        elif mode == "eval" and g["checkpoints"]:
            ckpt.load_weights(str(g["checkpoints"]), self.model, None, strict=True, what="Global.checkpoints")

        self.optimizers, self.schedulers = [], []
        if mode == "train":
            self.optimizers, self.schedulers = build_optimizer(
                config.get("Optimizer") or {}, int(g["epochs"]), self.iter_per_epoch // self.update_freq,
                self.model, self.train_loss)

        self.model_dp, self.loss_dp = self.model, self.train_loss
        if self.world > 1:
            self.model_dp = paddle.DataParallel(self.model, find_unused_parameters=True)
            if _has_trainable(self.train_loss):
                self.loss_dp = paddle.DataParallel(self.train_loss, find_unused_parameters=True)

        self.best_metric, self.best_epoch, self.start_epoch, self.global_step = -1.0, 0, 1, 0
        self.history = {"epoch": [], "loss": [], "eval": {}}
        if mode == "train" and g["checkpoints"] and self.world > 1 and sharded_keys(self.model):
            # the .pdparams/.pdopt hold rank 0's head shard and its optimizer moments only
            raise ConfigError("Global.checkpoints: resuming a run with class_parallel heads is not supported yet "
                              "(the optimizer moments of the other ranks' head shards are not saved); start from "
                              "its weights with paddle_losses.heads.shards.load_shard instead")
        if mode == "train" and g["checkpoints"]:
            states = ckpt.load_checkpoint(str(g["checkpoints"]), self.model, self.train_loss, self.optimizers)
            self.start_epoch = int(states.get("epoch", 0)) + 1
            self.best_metric = float(states.get("metric", -1.0))
            self.best_epoch = int(states.get("best_epoch", 0))
            self.global_step = int(states.get("global_step", 0))
            self.history = states.get("history") or self.history
            self.logger.info(f"Resumed from {g['checkpoints']}: continuing at epoch {self.start_epoch}, "
                             f"best metric {self.best_metric} (epoch {self.best_epoch})")
        if self.train_loss is not None:
            self.diag_key, self.diag_margin = feature_key_and_margin(self.train_loss)
            self.diag_enabled = bool(g["diagnostics"]) and any(
                hasattr(s, "feature_from") or hasattr(s, "margin") for s in self.train_loss.loss_func)
        self.vdl = VisualDLWriter(bool(g["use_visualdl"]) and self.rank == 0, g["output_dir"], self.logger)

    # ------------------------------------------------------------------------------------- building
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

    def _make_loader(self, dataset, batch_sampler, loader_cfg):
        loader_cfg = loader_cfg or {}
        workers = int(loader_cfg.get("num_workers", 0) or 0)
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
        return self._make_loader(dataset, sampler, sec.get("loader")), sampler

    def _eval_loader(self, sec, path):
        dataset = build_dataset(sec.get("dataset"), f"{path}.dataset")
        bs = int((sec.get("sampler") or {}).get("batch_size", 64))
        sampler = EvalShardSampler(dataset, bs)
        return dataset, self._make_loader(dataset, sampler, sec.get("loader"))

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
            for batch in self.train_loader:
                got = True
                yield batch
            if not got:
                raise ConfigError("the train loader yields no batch (dataset smaller than one batch?)")
            restart += 1

    def train(self):
        g, epochs = self.g, int(self.g["epochs"])
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
        for iter_id in range(self.iter_per_epoch):
            if iter_id == 5:
                batch_costs, reader_costs = [], []
            batch = next(batches)
            reader_costs.append(time.time() - t_end)
            images = batch[0]
            labels = batch[1].reshape([batch[0].shape[0], -1]).astype("int64")
            out = self.model_dp(images, labels) if self.is_rec else self.model_dp(images)
            if gather:
                # the gather's backward scales by the world size (paddle_losses.distributed)
                loss_in, loss_labels = dist_utils.gather_batch(out, labels)
                with dist_utils.global_batch():
                    loss_dict = self.loss_dp(loss_in, loss_labels)
            else:
                loss_in, loss_labels = out, labels
                loss_dict = self.loss_dp(loss_in, loss_labels)
            (loss_dict["loss"] / self.update_freq).backward()
            if (iter_id + 1) % self.update_freq == 0:
                for opt in self.optimizers:
                    opt.step()
                    opt.clear_grad()
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
            # a loss configured with reduction "none" reports its mean (the total already sums it)
            values.update({k: float(v) if v.size == 1 else float(v.mean()) for k, v in loss_dict.items()})
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
        if self.diag_enabled:
            d = diag.averages()
            fill = memory_fill(self.train_loss)
            if fill is not None:
                d["xbm_fill"] = fill
            if d:
                self.logger.info(diag_line(epoch, epochs, d))
        return avg

    def _save(self, prefix, epoch):
        # class-parallel heads: every rank writes its shard (paddle_losses.heads.shards)
        save_shard(self.model, os.path.join(self.g["output_dir"], prefix), self.rank, self.world)
        if self.rank != 0:
            return
        states = {"metric": self.best_metric, "epoch": epoch, "best_epoch": self.best_epoch,
                  "global_step": self.global_step, "history": self.history}
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
        for batch in loader:
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
        self.model.eval()
        try:
            if self.eval_mode == "classification":
                metrics = self._eval_classification()
            else:
                metrics = self._eval_retrieval()
        finally:
            self.model.train()
        self.logger.info(eval_line(epoch, metrics))
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
