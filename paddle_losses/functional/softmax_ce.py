"""Log-softmax and softmax cross-entropy over classes in O(C) time and memory per row.

Paddle 3.3.1's CPU ``F.log_softmax`` kernel costs grow with the *square* of the class count per row (16 rows
of 65,536 classes: about 8 s forward + backward), while ``F.softmax``, ``F.cross_entropy`` (hard and soft
labels), ``max`` (forward), ``exp``, ``sum`` and ``log`` are linear (docs/performance.md, "Large class
counts"). Everything here is built from the linear ops and gives Paddle's own values:

Paddle's CPU softmax, log_softmax and cross_entropy shift each row by its maximum and floor the shifted
logits at −64 before exponentiating, so with ``s = max(x − max_c x, −64)``::

    log_softmax(x) = s − L,   L = log Σ_c exp(s_c),   softmax(x) = exp(s − L)

and the gradient of ``log_softmax`` passes the floor (Paddle's backward is ``g − softmax·Σ_c g``). A
log-probability therefore never falls below ``−64 − log C``; the cross-framework classifier losses that need
the unfloored value use ``logsumexp`` instead and are unaffected.

* :func:`log_softmax`: drop-in for ``F.log_softmax`` (any axis), hand-written backward.
* :func:`smoothed_cross_entropy`: ``−Σ_c t_c·log_softmax(x)_c`` for the label-smoothed one-hot target
  ``t = (1 − ε)·onehot(y) + ε/C`` without building ``t``; closed-form backward ``G·(softmax − t)``.
* :func:`soft_cross_entropy`: ``−Σ_c t_c·log_softmax(x)_c`` for a given target (both receive a gradient).
"""
import paddle
from paddle.autograd import PyLayer

from .inplace import inplace

LOG_PROB_FLOOR = -64.0  # Paddle's CPU softmax floors the max-shifted logits here


def _shifted(x, axis):
    """``max(x − max(x), −64)`` along ``axis`` (a fresh tensor): Paddle's softmax exponent."""
    top = x.max(axis=axis, keepdim=True)
    return inplace(x - top, "clip", LOG_PROB_FLOOR, None)


def _normaliser(shifted, axis):
    """``L = log Σ exp(s)`` along ``axis`` (keepdim) and ``exp(s)`` (a fresh tensor)."""
    e = paddle.exp(shifted)
    return paddle.log(e.sum(axis=axis, keepdim=True)), e


class _LogSoftmax(PyLayer):
    """``s − L`` (module docstring); backward ``g − exp(out)·Σ g`` as Paddle's log_softmax backward."""

    @staticmethod
    def forward(ctx, x, axis):
        s = _shifted(x, axis)
        log_z, _ = _normaliser(s, axis)
        out = inplace(s, "subtract", log_z)
        ctx.axis = axis
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, grad):
        (out,) = ctx.saved_tensor()
        p = paddle.exp(out)
        return grad - inplace(p, "multiply", grad.sum(axis=ctx.axis, keepdim=True))


def log_softmax(x, axis=-1):
    """Paddle's CPU ``F.log_softmax(x, axis)`` values and gradient, in time linear in the size of ``axis``."""
    return _LogSoftmax.apply(x, axis)


class _SmoothedCrossEntropy(PyLayer):
    """Rows ``ℓ_i = L_i − (1 − ε)·s_{i,y_i} − (ε/C)·Σ_c s_ic`` (= ``−Σ_c t_ic·log_softmax(x)_ic``, Σ_c t = 1).

    Keeps one ``[N, C]`` tensor, the softmax, which the backward turns into the gradient in place:
    ``G_i·(softmax_ic − ε/C)`` and ``− (1 − ε)·G_i`` at ``y_i``.
    """

    @staticmethod
    def forward(ctx, x, ids, epsilon):
        num_classes = x.shape[1]
        s = _shifted(x, 1)
        s_sum = s.sum(axis=1, keepdim=True)
        s_label = paddle.take_along_axis(s, ids, axis=1)
        e = inplace(s, "exp")
        z = e.sum(axis=1, keepdim=True)
        rows = paddle.log(z) - (1.0 - epsilon) * s_label - (epsilon / num_classes) * s_sum
        ctx.epsilon = epsilon
        ctx.save_for_backward(inplace(e, "divide", z), ids)
        return rows.reshape([-1])

    @staticmethod
    def backward(ctx, grad):
        p, ids = ctx.saved_tensor()
        eps, num_classes = ctx.epsilon, p.shape[1]
        g = grad.reshape([-1, 1])
        # The saved softmax's last use: its storage takes the gradient.
        out = inplace(inplace(p, "multiply", g), "subtract", g * (eps / num_classes))
        at_label = paddle.take_along_axis(out, ids, axis=1) - (1.0 - eps) * g
        return inplace(out, "put_along_axis", ids, at_label, 1), None


def smoothed_cross_entropy(x, ids, epsilon):
    """Per-row cross entropy ``[N]`` of logits ``x [N, C]`` against ``(1 − ε)·onehot(ids) + ε/C``.

    ``ids``: int64 class ids ``[N]`` or ``[N, 1]``, all in ``[0, C)`` (no ignore index: the target of an
    ignored row would still hold ε/C everywhere). Values and gradient are those of
    ``−(t·F.log_softmax(x)).sum(-1)`` with ``t`` built densely, to rounding.
    """
    return _SmoothedCrossEntropy.apply(x, ids.reshape([-1, 1]), float(epsilon))


def soft_cross_entropy(x, target, axis=-1):
    """Per-row ``−Σ_c target·log_softmax(x)`` along ``axis``; gradients reach ``x`` and (if it has one) ``target``."""
    return -(target * log_softmax(x, axis)).sum(axis=axis)
