"""Datasets: PaddleClas's list-file ``ImageNetDataset`` and the embedded ``DigitsDataset``.

Every dataset returns ``(image float32 CHW, label int64)`` or, with a third list-file column,
``(image, label, camera_or_unique_id)``, exactly the tuples PaddleClas's loaders deliver.
"""
import logging
import multiprocessing
import os

import numpy as np
import paddle

from ..errors import ConfigError, InputError
from ..registry import registry
from ..validation import constructor_params
from .transforms import apply_transforms, build_transforms

BAD_SAMPLE_POLICIES = ("skip", "error")


@registry("dataset").register
class ImageNetDataset(paddle.io.Dataset):
    """A list file of ``relative/path label [camera_or_uid]`` lines, paths joined onto ``image_root``.

    Args:
        image_root: folder the list-file paths are relative to.
        cls_label_path: the list file.
        transform_ops: PaddleClas ``transform_ops`` list (see :mod:`.transforms`).
        delimiter: column separator (default: any whitespace run, as PaddleClas's ``" "`` on clean files).
        relabel: map the labels to ``0..K-1``. Divergence: we map them in **sorted** order, so the result is
            reproducible; PaddleClas uses set-iteration order, which is arbitrary.
        class_num: when given, a label outside ``[0, class_num)`` (after relabelling) is an error.
        on_bad_sample: what an image that cannot be read or decoded does while loading. ``skip`` (default,
            PaddleClas's behaviour): a warning names the file and its list line, and the next sample in list
            order is delivered instead (the number skipped is in :attr:`bad_samples`, which the trainer
            reports per epoch); ``error``: an :class:`~paddle_losses.errors.InputError` with that message.

    Errors are raised at construction: a missing list file, a malformed line (file and line number), a
    missing image file (named), a label outside ``class_num``.
    """

    def __init__(self, image_root, cls_label_path, transform_ops=None, delimiter=None, relabel=False,
                 class_num=None, on_bad_sample="skip", **unused):
        super().__init__()
        if on_bad_sample not in BAD_SAMPLE_POLICIES:
            raise ConfigError(f"on_bad_sample must be one of {', '.join(BAD_SAMPLE_POLICIES)}, "
                              f"got {on_bad_sample!r}")
        self.on_bad_sample = on_bad_sample
        self.list_file = cls_label_path
        # shared with forked loader workers, so the trainer sees what every worker skipped
        self._bad = multiprocessing.Value("l", 0)
        self._error = multiprocessing.Array("c", 4096)  # the on_bad_sample: error message of a worker
        self.image_root = image_root
        self.ops = build_transforms(transform_ops)
        if not os.path.isfile(cls_label_path):
            raise ConfigError(f"ImageNetDataset: list file {cls_label_path} does not exist")
        paths, labels, extra, linenos = [], [], [], []
        with open(cls_label_path, encoding="utf-8") as fh:
            for lineno, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                cols = line.strip().split(delimiter) if delimiter not in (None, " ") else line.split()
                try:
                    if len(cols) < 2:
                        raise ValueError("expected at least two columns (path label)")
                    label = int(cols[1])
                    uid = int(cols[2]) if len(cols) > 2 else None
                except ValueError as exc:
                    raise ConfigError(f"{cls_label_path}:{lineno}: malformed line {line.rstrip()!r}: {exc}; "
                                      f"expected `relative/path.jpg <int label> [<int camera/uid>]`") from None
                path = os.path.join(image_root, cols[0])
                if not os.path.isfile(path):
                    raise ConfigError(f"{cls_label_path}:{lineno}: image file {path} does not exist")
                paths.append(path)
                linenos.append(lineno)
                labels.append(label)
                extra.append(uid)
        if not paths:
            raise ConfigError(f"ImageNetDataset: list file {cls_label_path} has no samples")
        labels = np.asarray(labels, dtype=np.int64)
        if relabel:
            uniq = np.unique(labels)  # sorted
            labels = np.searchsorted(uniq, labels).astype(np.int64)
        if class_num is not None:
            bad = np.flatnonzero((labels < 0) | (labels >= class_num))
            if bad.size:
                i = int(bad[0])
                raise ConfigError(f"{cls_label_path}:{linenos[i]}: label {int(labels[i])} of {paths[i]} is outside "
                                  f"[0, {class_num}) (the head's class_num); set relabel: True or fix class_num")
        has_extra = [u is not None for u in extra]
        if any(has_extra) and not all(has_extra):
            raise ConfigError(f"{cls_label_path}: some lines have a third column (camera/unique id) and some "
                              f"do not; use it on every line or on none")
        self.images = paths
        self.linenos = linenos
        self.labels = labels
        self.cameras = np.asarray(extra, dtype=np.int64) if all(has_extra) else None

    def __len__(self):
        return len(self.images)

    @property
    def bad_samples(self):
        """How many unreadable samples were skipped so far (in every loader worker)."""
        return int(self._bad.value)

    @property
    def error(self):
        """The message of the sample that stopped a loader worker (``on_bad_sample: error``), or ''."""
        return self._error.value.decode("utf-8", "replace")

    def _fail(self, message):
        if paddle.io.get_worker_info() is None:
            raise InputError(message)
        # in a loader worker a raised error reaches the main process only as Paddle's "blocking queue is
        # killed" plus a traceback on stderr; instead leave the message for the trainer and end the worker
        self._error.value = message.encode("utf-8")[: len(self._error) - 1]
        os._exit(1)

    def _image(self, idx):
        with open(self.images[idx], "rb") as fh:
            data = fh.read()
        img = apply_transforms(self.ops, data)
        if img.ndim == 3 and img.shape[-1] in (1, 3) and img.shape[0] not in (1, 3):
            img = img.transpose(2, 0, 1)  # the dataset delivers CHW, as PaddleClas's does
        return np.ascontiguousarray(img, dtype=np.float32)

    def __getitem__(self, idx):
        n = len(self.images)
        for attempt in range(n):
            i = (idx + attempt) % n
            try:
                img = self._image(i)
                break
            except Exception as exc:  # any decoder error: PIL, OpenCV, a truncated file, a transform
                where = (f"{self.list_file}:{self.linenos[i]}: cannot read image {self.images[i]} "
                         f"({type(exc).__name__}: {exc})")
                if self.on_bad_sample == "error":
                    self._fail(f"{where}; fix or remove the line, or set on_bad_sample: skip")
                with self._bad.get_lock():
                    self._bad.value += 1
                logging.getLogger("ppcls").warning(f"{where}; skipped, the next sample is used instead")
        else:
            raise InputError(f"{self.list_file}: no image of the list can be read")
        if self.cameras is not None:
            return img, self.labels[i], self.cameras[i]
        return img, self.labels[i]


# alias used by the vehicle / product configs: the same list-file format with a third column
@registry("dataset").register
class VeriWild(ImageNetDataset):
    """Alias of :class:`ImageNetDataset` (``path label [unique_id]`` lines), the name PaddleClas configs use."""


def load_digits_arrays():
    """scikit-learn's 8×8 handwritten digits as ``(images float32 [1797, 1, 8, 8] in [0, 1], labels int64)``."""
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise ConfigError("the embedded digits dataset needs scikit-learn: pip install scikit-learn "
                          "(or pip install -e \".[data]\")") from None
    digits = load_digits()
    images = (digits.images.astype(np.float32) / 16.0)[:, None, :, :]
    return images, digits.target.astype(np.int64)


@registry("dataset").register
class DigitsDataset(paddle.io.Dataset):
    """The embedded zero-shot retrieval benchmark on scikit-learn's digits (1,797 images, 10 classes).

    ``mode: train`` holds every image of ``train_classes``; ``query`` and ``gallery`` split the images of
    ``eval_classes`` per class, ``query_ratio`` of each class to the query side, with a seeded permutation
    (``split_seed``), so query and gallery are disjoint and identical across runs. Images are ``[1, 8, 8]``
    float32 in ``[0, 1]``; ``transform_ops`` are not used (the data are already tensors). ``random_shift: s``
    translates each training image by up to ``s`` pixels in each direction (zero fill), drawn from NumPy's
    global generator, which the trainer seeds per epoch.
    """

    def __init__(self, mode="train", train_classes=(0, 1, 2, 3, 4), eval_classes=(5, 6, 7, 8, 9),
                 query_ratio=0.3, split_seed=0, relabel=False, random_shift=0, transform_ops=None, **unused):
        super().__init__()
        self.random_shift = int(random_shift)
        if mode not in ("train", "query", "gallery", "all"):
            raise ConfigError(f"DigitsDataset.mode must be train, query, gallery or all, got {mode!r}")
        if not 0.0 < query_ratio < 1.0:
            raise ConfigError(f"DigitsDataset.query_ratio must be in (0, 1), got {query_ratio!r}")
        images, labels = load_digits_arrays()
        if mode == "all":
            keep = np.arange(len(labels))
        elif mode == "train":
            keep = np.flatnonzero(np.isin(labels, list(train_classes)))
        else:
            rng = np.random.RandomState(split_seed)
            side = []
            for c in sorted(eval_classes):
                idx = rng.permutation(np.flatnonzero(labels == c))
                n_query = max(1, int(round(query_ratio * len(idx))))
                side.append(idx[:n_query] if mode == "query" else idx[n_query:])
            keep = np.sort(np.concatenate(side))
        self.images = images[keep]
        labels = labels[keep]
        if relabel:
            labels = np.searchsorted(np.unique(labels), labels).astype(np.int64)
        self.labels = labels
        self.cameras = None

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, idx):
        img = self.images[idx]
        s = self.random_shift
        if s > 0:
            dy, dx = np.random.randint(-s, s + 1, size=2)
            padded = np.pad(img, ((0, 0), (s, s), (s, s)))
            h, w = img.shape[1:]
            img = padded[:, s + dy:s + dy + h, s + dx:s + dx + w]
        return np.ascontiguousarray(img), self.labels[idx]


@registry("dataset").register
class SyntheticClassesDataset(paddle.io.Dataset):
    """Random ``[1, 8, 8]`` images over ``class_num`` classes: times training steps at large class counts.

    Sample ``i`` has label ``i // samples_per_class`` (so ``samples_per_class`` consecutive samples per class,
    every class ``0 .. class_num − 1`` present) and an image of uniform [0, 1) values drawn from a generator
    seeded by ``(seed, i)``: nothing is stored but the labels, and the data are the same in every run. There
    is nothing to learn; use it to measure step time and memory (configs/demo/large_class_synthetic.yaml),
    not accuracy. ``class_num`` defaults to the head's; ``transform_ops`` are not used.
    """

    def __init__(self, class_num, samples_per_class=2, seed=0, transform_ops=None, **unused):
        super().__init__()
        if int(class_num) < 1 or int(samples_per_class) < 1:
            raise ConfigError(f"SyntheticClassesDataset: class_num and samples_per_class must be positive, got "
                              f"{class_num!r} and {samples_per_class!r}")
        self.seed = int(seed)
        self.labels = np.repeat(np.arange(int(class_num), dtype=np.int64), int(samples_per_class))
        self.cameras = None

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, idx):
        image = np.random.default_rng((self.seed, int(idx))).random((1, 8, 8), dtype=np.float32)
        return image, self.labels[idx]


class SynchronousLoader:
    """The ``num_workers: 0`` loader: batches are read and collated in the calling thread.

    Paddle's single-process DataLoader reads in a helper thread; when a sample raises there, the thread
    dies and the main thread waits forever. Here an exception simply propagates. Batches are lists of
    tensors, as ``paddle.io.DataLoader(..., return_list=True)`` delivers them.
    """

    def __init__(self, dataset, batch_sampler):
        self.dataset, self.batch_sampler = dataset, batch_sampler

    def __len__(self):
        return len(self.batch_sampler)

    def __iter__(self):
        from paddle.io.dataloader.collate import default_collate_fn
        for indices in self.batch_sampler:
            fields = default_collate_fn([self.dataset[i] for i in indices])
            yield [paddle.to_tensor(f) for f in fields]


def loader_failure(dataset, exc):
    """The InputError to raise when a loader over ``dataset`` failed with ``exc`` (None: re-raise ``exc``)."""
    message = getattr(dataset, "error", "")
    return InputError(message) if message else None


def bad_samples(dataset):
    """Unreadable samples a dataset skipped so far (0 for datasets that never skip)."""
    return int(getattr(dataset, "bad_samples", 0))


def build_dataset(cfg, path, class_num=None):
    """Build the dataset named by ``cfg['name']`` (a dict copy is used; the config is not mutated)."""
    if not isinstance(cfg, dict) or "name" not in cfg:
        raise ConfigError(f"{path} must be a mapping with a `name` (one of "
                          f"{', '.join(registry('dataset').names())})")
    params = {k: v for k, v in cfg.items() if k != "name"}
    cls = registry("dataset").get(cfg["name"], f"{path}.name")
    if class_num is not None and "class_num" in constructor_params(cls)[0]:
        params.setdefault("class_num", class_num)
    return registry("dataset").build(cfg["name"], params, path)
