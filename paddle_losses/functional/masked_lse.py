"""Masked log-sum-exp, the building block of the PML pair, proxy and softmax-style losses."""
import paddle


def masked_logsumexp(x, mask, axis=-1, add_one=False):
    """``log(Σ_{mask} e^x)`` along ``axis`` (``log(1 + Σ ...)`` with ``add_one``); 0 where the mask is empty.

    Stabilised by the (detached) masked maximum; masked-out entries get exactly zero gradient even when
    they hold huge values.
    """
    with paddle.no_grad():
        m = paddle.where(mask, x, paddle.full_like(x, float("-inf"))).max(axis=axis, keepdim=True)
        if add_one:
            m = paddle.maximum(m, paddle.zeros_like(m))
        m = paddle.where(paddle.isfinite(m), m, paddle.zeros_like(m))
    z = paddle.where(mask, x - m, paddle.full_like(x, float("-inf")))
    s = paddle.exp(z).sum(axis=axis, keepdim=True)
    if add_one:
        s = s + paddle.exp(-m)
    nonempty = mask.any(axis=axis, keepdim=True)
    safe = paddle.where(nonempty, s, paddle.ones_like(s)) if not add_one else s
    out = paddle.log(safe) + m
    out = paddle.where(nonempty, out, paddle.zeros_like(out))
    return out.squeeze(axis)
