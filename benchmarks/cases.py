"""What the benchmark runs: for each loss, its constructor arguments, how it is called, its matmul floor,
the PaddleClas-algorithm reference and a cost model that predicts how long that reference would take.

Batches are P×K with K = 4 consecutive rows per identity (the layout PaddleClas's PK sampler produces and
that TriHard/MSM/Eml/SupCon/Npairs require), labels ``1..P`` as ``[B, 1]`` int64 (the engine's shape; 1-based
so that PaddleClas's memory "full" test, ``targets[-1] != 0``, behaves in the reference).
"""
import inspect
from dataclasses import dataclass, field
from typing import Callable, Optional

import paddle
import paddle.nn.functional as F

from . import paddleclas_ref as ref

K = 4
HEAD_MIN_CLASSES = 1000

# Target tags (see report.TARGETS for their wording).
FLOOR_2X, REF_10X, XBM_2X, MEM_8X = "floor2x", "ref10x", "xbm2x", "mem8x"


@dataclass(frozen=True)
class Shape:
    """One configuration: batch ``B``, feature size ``D``, memory rows or classes ``M`` (0 if unused)."""

    B: int
    D: int
    M: int = 0

    @property
    def P(self):
        return self.B // K


@dataclass(frozen=True)
class RefModel:
    """Predicted seconds for one call of a reference: ``quad`` (calibrated quadratic reductions, absolute)
    plus the rest, scaled from the previous measured batch size as ``B^exp``; ``mem`` predicts the bytes of
    its largest intermediates."""

    exp: float = 2.0
    quad: Callable = lambda s, c: 0.0
    mem: Callable = lambda s: 0
    why: str = ""


@dataclass(frozen=True)
class Case:
    label: str                      # row name in the tables
    name: str                       # registry name
    floor: str                      # "pair" (x·xᵀ), "memory" (x·Mᵀ), "head" (x·W)
    params: Callable = lambda s: {}
    ref: Optional[Callable] = None  # Shape -> callable(x, labels) (PaddleClas's algorithm)
    model: RefModel = field(default_factory=RefModel)
    targets: tuple = ()
    head: bool = False
    call: Optional[Callable] = None  # (module, x, labels) -> scalar; default: loss({"features": x}, labels)
    extra: bool = False             # not a PaddleClas loss (cross-framework family): smaller grid

    def main_matrix_elems(self, s):
        """Elements of the loss's principal matrix (the unit of the peak-memory multiple)."""
        return s.B * (s.M if self.floor in ("memory", "head") else s.B)


def head_classes(s):
    return max(HEAD_MIN_CLASSES, s.P + 1)


def _rowpack_quad(s, c):
    # max/min backward along rows of the packed negatives [B, B-K] and positives [B, K]
    return c["axis"] * s.B * ((s.B - K) ** 2 + K ** 2)


def _grouped_quad(s, c):
    return c["axis"] * s.B * ((s.B - K) ** 2 + (K - 1) ** 2)


def _global_quad(s, c):
    return c["flat"] * ((s.B * (s.B - K)) ** 2 + (s.B * (K - 1)) ** 2)


def _sentinel_quad(s, c):
    # min and max over the key axis, for the batch-vs-batch core and the batch-vs-memory core
    return 2 * c["axis"] * s.B * (s.B ** 2 + s.M ** 2)


def _bbd_bytes(s):
    # the [B, B, D] difference, its square, and their gradients
    return 4 * s.B * s.B * s.D * 4


_ROWPACK = RefModel(2.0, _rowpack_quad, why="paddle.max/min backward over masked_select rows")
_GROUPED = RefModel(2.0, _grouped_quad, _bbd_bytes, "[B,B,D] differences + paddle.max/min backward")
_GLOBAL = RefModel(2.0, _global_quad, _bbd_bytes, "[B,B,D] differences + global paddle.max backward")
_LOOP = RefModel(2.0, why="Python double loop over B² entries")
_ROWLOOP = RefModel(1.5, why="Python loop over rows with masked_select")
# Each row slice's backward writes a full [B, M] gradient: O(B²·M) in all (measured exponent ≈ 3 at M=16384).
_ROWLOOP_MEMORY = RefModel(3.0, why="Python loop over rows; each row's backward writes a full B×M gradient")
_SENTINEL = RefModel(1.0, _sentinel_quad, why="paddle.max/min backward over the memory axis")
_VECTOR = RefModel(2.0, why="vectorised")


def _softsupcon_call(module, x, labels):
    b = x.shape[0] // 2
    feat = x.reshape([b, 2, x.shape[1]])
    batch = {"max_probs": paddle.full([b], 0.9, dtype="float32"), "p_targets_u_w": labels.reshape([-1])[0::2]}
    return _first_value(module(feat, batch))


def _head_call(module, x, labels):
    return F.cross_entropy(module(x, labels), labels)


def _first_value(out):
    if isinstance(out, dict):
        return next(iter(out.values()))
    return out


def default_call(module, x, labels):
    return _first_value(module({"features": x}, labels))


ANGULAR_ABS = dict(add_absolute=True, absolute_loss_weight=0.1, ap_value=0.8, an_value=0.4)

CASES = [
    Case("TripletAngularMarginLoss", "TripletAngularMarginLoss", "pair",
         ref=lambda s: ref.TripletAngularMarginRef(), model=_ROWPACK, targets=(FLOOR_2X, REF_10X, MEM_8X)),
    Case("TripletAngularMarginLoss (add_absolute)", "TripletAngularMarginLoss", "pair",
         params=lambda s: dict(ANGULAR_ABS), ref=lambda s: ref.TripletAngularMarginRef(**ANGULAR_ABS),
         model=_ROWPACK, targets=(FLOOR_2X, REF_10X, MEM_8X)),
    Case("TripletLossV2", "TripletLossV2", "pair", ref=lambda s: ref.TripletLossV2Ref(), model=_ROWPACK,
         targets=(FLOOR_2X, REF_10X, MEM_8X)),
    Case("TripletLoss", "TripletLoss", "pair", ref=lambda s: ref.TripletLossRef(), model=_LOOP,
         targets=(FLOOR_2X, REF_10X, MEM_8X)),
    Case("TriHardLoss", "TriHardLoss", "pair", params=lambda s: dict(batch_size=s.B, samples_each_class=K),
         ref=lambda s: ref.TriHardRef(s.B, K), model=_GROUPED, targets=(FLOOR_2X, REF_10X, MEM_8X)),
    Case("MSMLoss", "MSMLoss", "pair", params=lambda s: dict(batch_size=s.B, samples_each_class=K),
         ref=lambda s: ref.MSMRef(s.B, K), model=_GLOBAL, targets=(FLOOR_2X, REF_10X, MEM_8X)),
    Case("EmlLoss", "EmlLoss", "pair", params=lambda s: dict(batch_size=s.B, samples_each_class=K),
         ref=lambda s: ref.EmlRef(s.B, K), model=_GROUPED, targets=(MEM_8X,)),
    Case("NpairsLoss", "NpairsLoss", "pair", ref=lambda s: ref.NpairsRef(), model=_VECTOR, targets=(MEM_8X,)),
    Case("ContrastiveLoss", "ContrastiveLoss", "pair", params=lambda s: dict(margin=0.5, embedding_size=s.D),
         ref=lambda s: ref.ContrastiveRef(), model=_ROWLOOP, targets=(FLOOR_2X, REF_10X, MEM_8X)),
    Case("SupConLoss", "SupConLoss", "pair", params=lambda s: dict(views=K),
         ref=lambda s: ref.SupConRef(K), model=_VECTOR, targets=(FLOOR_2X, MEM_8X)),
    Case("SoftSupConLoss", "SoftSupConLoss", "pair", call=_softsupcon_call, targets=(MEM_8X,)),
    Case("CenterLoss", "CenterLoss", "pair", params=lambda s: dict(num_classes=s.B, feat_dim=s.D),
         ref=lambda s: ref.CenterRef(s.B, s.D), model=_VECTOR, targets=(FLOOR_2X, MEM_8X)),
    Case("PairwiseCosface", "PairwiseCosface", "pair", params=lambda s: dict(margin=0.35, gamma=64.0),
         ref=lambda s: ref.PairwiseCosfaceRef(), model=_VECTOR, targets=(MEM_8X,)),
    Case("TripletAngularMarginLoss_XBM", "TripletAngularMarginLoss_XBM", "memory",
         params=lambda s: dict(start_iter=0, xbm_size=s.M, xbm_weight=1.0, feat_dim=s.D),
         ref=lambda s: ref.TripletAngularMarginXBMRef(s.M, s.D), model=_SENTINEL, targets=(XBM_2X, MEM_8X)),
    Case("ContrastiveLoss_XBM", "ContrastiveLoss_XBM", "memory",
         params=lambda s: dict(xbm_size=s.M, xbm_weight=1.0, start_iter=0, margin=0.5, embedding_size=s.D),
         ref=lambda s: ref.ContrastiveXBMRef(s.M, s.D), model=_ROWLOOP_MEMORY, targets=(XBM_2X, MEM_8X)),
    Case("ArcMargin (+CE)", "ArcMargin", "head", head=True, call=_head_call,
         params=lambda s: dict(embedding_size=s.D, class_num=s.M),
         ref=lambda s: ref.ArcMarginRef(s.D, s.M), model=_VECTOR),
    Case("CosMargin (+CE)", "CosMargin", "head", head=True, call=_head_call,
         params=lambda s: dict(embedding_size=s.D, class_num=s.M),
         ref=lambda s: ref.CosMarginRef(s.D, s.M), model=_VECTOR),
    Case("CircleMargin (+CE)", "CircleMargin", "head", head=True, call=_head_call,
         params=lambda s: dict(embedding_size=s.D, class_num=s.M, margin=0.35, scale=64.0),
         ref=lambda s: ref.CircleMarginRef(s.D, s.M), model=_VECTOR),
    Case("AdaMargin (+CE)", "AdaMargin", "head", head=True, call=_head_call,
         params=lambda s: dict(embedding_size=s.D, class_num=s.M)),
]

KNOWN_NAMES = {c.name for c in CASES}

# Constructor arguments that extra (non-PaddleClas) metric losses commonly require.
_FILL = {"num_classes": lambda s: s.P + 1, "embedding_size": lambda s: s.D, "feat_dim": lambda s: s.D,
         "class_num": lambda s: s.P + 1}


def _extra_params(cls):
    required = [p for p in inspect.signature(cls.__init__).parameters.values()
                if p.name != "self" and p.default is inspect.Parameter.empty
                and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    if any(p.name not in _FILL for p in required):
        return None
    return lambda s: {p.name: _FILL[p.name](s) for p in required}


def extra_cases(list_losses, get_loss):
    """Registered metric losses beyond PaddleClas's (the cross-framework family): floor only, no reference."""
    out = []
    for name in list_losses():
        if name in KNOWN_NAMES:
            continue
        cls = get_loss(name)
        reads = " ".join(map(str, getattr(cls, "input_keys", ())))
        if ".crossfw" not in cls.__module__ or "feature" not in reads:
            continue
        params = _extra_params(cls)
        if params is not None:
            out.append(Case(f"{name} (cross-framework)", name, "pair", params=params, extra=True))
    return out


def labels_for(s):
    """P×K labels ``1..P`` in consecutive groups of K, shape ``[B, 1]`` int64."""
    return (paddle.arange(s.P, dtype="int64").reshape([-1, 1]).tile([1, K]).reshape([-1, 1]) + 1)
