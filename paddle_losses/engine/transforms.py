"""Image transform ops named as in PaddleClas's ``transform_ops`` lists (Pillow + NumPy only).

A config names ops as a list of one-key mappings::

    transform_ops:
      - DecodeImage: {to_rgb: True, channel_first: False}
      - ResizeImage: {size: 224}
      - RandFlipImage: {flip_code: 1}
      - NormalizeImage: {scale: 1.0/255.0, mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225], order: ''}
      - ToCHWImage:

Images travel between ops as HWC ``uint8``/``float32`` NumPy arrays (RGB). Random ops draw from NumPy's
global generator, which the trainer reseeds per epoch (and per data-loader worker) so that runs and resumed
runs see the same augmentations. ``NormalizeImage.scale`` is parsed with the numeric-only evaluator
(``1.0/255.0``), never with ``eval``.

Divergence from PaddleClas: resizing uses Pillow's bilinear filter, not OpenCV's, so pixel values differ
slightly from PaddleClas's cv2 backend.
"""
import io
import numbers

import numpy as np
from PIL import Image

from ..config import eval_numeric
from ..errors import ConfigError
from ..registry import registry


def _pil(img):
    return Image.fromarray(img)


@registry("transform").register
class DecodeImage:
    """Bytes -> HWC uint8 RGB array (``to_rgb``); ``channel_first`` gives CHW."""

    def __init__(self, to_rgb: bool = True, to_np: bool = False, channel_first: bool = False,
                 backend: str = "pil"):
        self.to_rgb, self.channel_first = to_rgb, channel_first

    def __call__(self, data):
        if isinstance(data, np.ndarray):
            img = data
        else:
            with Image.open(io.BytesIO(data)) as im:
                img = np.asarray(im.convert("RGB"))
            if not self.to_rgb:
                img = img[:, :, ::-1]  # BGR, as OpenCV would decode it
        if img.ndim == 2:
            img = np.stack([img] * 3, axis=-1)
        if self.channel_first:
            img = img.transpose(2, 0, 1)
        return np.ascontiguousarray(img)


@registry("transform").register
class ResizeImage:
    """Resize to ``size`` (int: square, or ``[w, h]``) or the short side to ``resize_short``."""

    def __init__(self, size=None, resize_short=None, interpolation=None, backend: str = "pil"):
        if size is None and resize_short is None:
            raise ConfigError("ResizeImage needs `size` or `resize_short`")
        if size is not None and isinstance(size, numbers.Integral):
            size = (size, size)
        self.size, self.resize_short = size, resize_short

    def __call__(self, img):
        h, w = img.shape[:2]
        if self.size is not None:
            tw, th = int(self.size[0]), int(self.size[1])
        else:
            ratio = float(self.resize_short) / min(h, w)
            tw, th = int(round(w * ratio)), int(round(h * ratio))
        return np.asarray(_pil(img).resize((tw, th), Image.BILINEAR))


@registry("transform").register
class RandFlipImage:
    """Flip with probability 0.5: ``flip_code`` 1 horizontal, 0 vertical, -1 both."""

    def __init__(self, flip_code: int = 1):
        if flip_code not in (-1, 0, 1):
            raise ConfigError(f"RandFlipImage.flip_code must be 1, 0 or -1, got {flip_code!r}")
        self.flip_code = flip_code

    def __call__(self, img):
        if np.random.randint(0, 2) == 1:
            if self.flip_code == 1:
                img = img[:, ::-1]
            elif self.flip_code == 0:
                img = img[::-1]
            else:
                img = img[::-1, ::-1]
        return np.ascontiguousarray(img)


@registry("transform").register
class Pad:
    """Pad every side by ``padding`` pixels with ``fill`` (constant)."""

    def __init__(self, padding: int = 0, fill: int = 0, padding_mode: str = "constant", backend: str = "pil"):
        self.padding, self.fill = int(padding), fill

    def __call__(self, img):
        p = self.padding
        widths = ((p, p), (p, p)) + (((0, 0),) if img.ndim == 3 else ())
        return np.pad(img, widths, mode="constant", constant_values=self.fill)


@registry("transform").register
class RandCropImage:
    """Random-resized crop to ``size`` (scale and aspect-ratio ranges as Inception-style cropping)."""

    def __init__(self, size=224, scale=None, ratio=None, interpolation=None, backend: str = "pil"):
        self.size = (size, size) if isinstance(size, numbers.Integral) else tuple(size)
        self.scale = tuple(scale) if scale else (0.08, 1.0)
        self.ratio = tuple(ratio) if ratio else (3.0 / 4.0, 4.0 / 3.0)

    def __call__(self, img):
        h, w = img.shape[:2]
        area = h * w
        for _ in range(10):
            target = area * np.random.uniform(*self.scale)
            aspect = np.exp(np.random.uniform(np.log(self.ratio[0]), np.log(self.ratio[1])))
            cw, ch = int(round(np.sqrt(target * aspect))), int(round(np.sqrt(target / aspect)))
            if 0 < cw <= w and 0 < ch <= h:
                x0, y0 = np.random.randint(0, w - cw + 1), np.random.randint(0, h - ch + 1)
                break
        else:  # fall back to the centre square crop
            cw = ch = min(h, w)
            x0, y0 = (w - cw) // 2, (h - ch) // 2
        crop = img[y0:y0 + ch, x0:x0 + cw]
        return np.asarray(_pil(np.ascontiguousarray(crop)).resize(self.size, Image.BILINEAR))


@registry("transform").register
class NormalizeImage:
    """``(img * scale - mean) / std`` as float32; ``order='chw'`` means the input is already CHW."""

    def __init__(self, scale=None, mean=None, std=None, order: str = "chw", output_fp16: bool = False,
                 channel_num: int = 3):
        if isinstance(scale, str):
            try:
                scale = eval_numeric(scale)
            except (ValueError, ZeroDivisionError) as exc:
                raise ConfigError(f"NormalizeImage.scale {scale!r} is not numeric arithmetic ({exc}); "
                                  f"write e.g. 1.0/255.0") from None
        self.scale = np.float32(scale if scale is not None else 1.0 / 255.0)
        mean = mean if mean is not None else [0.485, 0.456, 0.406]
        std = std if std is not None else [0.229, 0.224, 0.225]
        shape = (len(mean), 1, 1) if order == "chw" else (1, 1, len(mean))
        self.mean = np.array(mean, dtype=np.float32).reshape(shape)
        self.std = np.array(std, dtype=np.float32).reshape(shape)

    def __call__(self, img):
        return ((img.astype(np.float32) * self.scale - self.mean) / self.std).astype(np.float32)


@registry("transform").register
class ToCHWImage:
    """HWC -> CHW."""

    def __call__(self, img):
        return np.ascontiguousarray(img.transpose(2, 0, 1))


def build_transforms(op_list, path="transform_ops"):
    """Build the ops of a ``transform_ops`` list; ``None`` or ``[]`` gives an empty pipeline."""
    ops = []
    for i, entry in enumerate(op_list or []):
        if not isinstance(entry, dict) or len(entry) != 1:
            raise ConfigError(f"{path}[{i}] must be a one-key mapping like `- ResizeImage: {{size: 224}}`, "
                              f"got {entry!r}")
        name, params = next(iter(entry.items()))
        if params is not None and not isinstance(params, dict):
            raise ConfigError(f"{path}[{i}].{name}: the parameters must be a mapping, got {params!r}")
        ops.append(registry("transform").build(name, params, f"{path}[{i}].{name}"))
    return ops


def apply_transforms(ops, data):
    for op in ops:
        data = op(data)
    return data
