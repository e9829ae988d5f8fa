"""Float64 NumPy references for the distillation base losses, written from PaddleClas's definitions."""
import numpy as np


def softmax(x, axis=-1):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def log_softmax(x, axis=-1):
    z = x - x.max(axis=axis, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=axis, keepdims=True))


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


def onehot(labels, c):
    return np.eye(c)[np.asarray(labels).reshape(-1)]


def kl_sum(p, log_q):
    """Σ p·(log p − log q), 0 where p = 0."""
    safe = np.where(p > 0, p, 1.0)
    return np.where(p > 0, p * (np.log(safe) - log_q), 0.0).sum()


def huber(d, delta=1.0):
    a = np.abs(d)
    return np.where(a < delta, 0.5 * d * d, delta * a - 0.5 * delta * delta)


def dml(x, target, act="softmax", sum_across_class_dim=False, eps=1e-12, gt_label=None):
    f = {"softmax": softmax, "sigmoid": sigmoid, None: lambda v: v}[act]
    p, q = f(x), f(target)
    c = x.shape[-1]

    def k(a, b):
        return b * np.log((b + eps) / (a + eps)) * c

    loss = (k(p, q) + k(q, p)) / 2
    if gt_label is not None:
        g, r = gt_label[:, 0], gt_label[:, 1]
        t = (g > 0.5).astype(np.float64)
        w = np.exp(t * (1 - r) + (1 - t) * r) * (t <= 1)
        loss = loss * w * (g > -1)
    return loss.sum(1).mean() if sum_across_class_dim else loss.mean()


def kldiv(s, t, T=4.0):
    return kl_sum(softmax(t / T, 1), log_softmax(s / T, 1)) * T ** 2 / s.shape[0]


def _target(labels, t, use_teacher):
    return np.argmax(t, axis=-1) if labels is None or use_teacher else np.asarray(labels).reshape(-1)


def dkd(s, t, labels=None, T=1.0, alpha=1.0, beta=1.0, use_target_as_gt=False):
    n, c = s.shape
    g = onehot(_target(labels, t, use_target_as_gt), c)
    ps, pt = softmax(s / T, 1), softmax(t / T, 1)
    bs = np.stack([(ps * g).sum(1), (ps * (1 - g)).sum(1)], 1)
    bt = np.stack([(pt * g).sum(1), (pt * (1 - g)).sum(1)], 1)
    tckd = kl_sum(bt, np.log(bs)) * T ** 2 / n
    nckd = kl_sum(softmax(t / T - 1000 * g, 1), log_softmax(s / T - 1000 * g, 1)) * T ** 2 / n
    return alpha * tckd + beta * nckd


def wsl_weight(s, t, labels=None, use_target_as_gt=False):
    y = onehot(_target(labels, t, use_target_as_gt), s.shape[1])
    ce_s = -(y * log_softmax(s)).sum(1)
    ce_t = -(y * log_softmax(t)).sum(1)
    return 1 - np.exp(-np.maximum(ce_s / (ce_t + 1e-7), 0))


def wsl(s, t, labels=None, T=2.0, use_target_as_gt=False, weight=None):
    w = wsl_weight(s, t, labels, use_target_as_gt) if weight is None else weight
    kd = -(softmax(t / T) * log_softmax(s / T)).sum(1)
    return T ** 2 * (kd * w).mean()


def layer_norm(x, eps=1e-7):
    axes = tuple(range(1, x.ndim))
    mu = x.mean(axis=axes, keepdims=True)
    var = ((x - mu) ** 2).mean(axis=axes, keepdims=True)
    return (x - mu) / np.sqrt(var + eps)


def skd(s, t, labels=None, T=1.0, multiplier=2.0, alpha=0.9, use_target_as_gt=False):
    y = onehot(_target(labels, t, use_target_as_gt), s.shape[1])
    s2, t2 = layer_norm(s) * multiplier, layer_norm(t) * multiplier
    kd = T ** 2 * (-(softmax(t2 / T) * log_softmax(s2 / T)).sum(1)).mean()
    ce = (-(y * log_softmax(s2)).sum(1)).mean()
    return alpha * kd + (1 - alpha) * ce


def _pearson(a, b, eps=1e-8):
    a = a - a.mean(1, keepdims=True)
    b = b - b.mean(1, keepdims=True)
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1) + eps)


def dist(s, t, beta=1.0, gamma=1.0):
    ys, yt = softmax(s), softmax(t)
    return beta * (1 - _pearson(ys, yt).mean()) + gamma * (1 - _pearson(ys.T, yt.T).mean())


def distance(x, y, mode="l2", reduction="mean", delta=1.0):
    d = x - y
    e = {"l1": np.abs(d), "l2": d * d, "smooth_l1": huber(d, delta)}[mode]
    return {"mean": e.mean(), "sum": e.sum(), "none": e}[reduction]


def adaptive_avg_pool(x, size):
    """PaddleClas/Paddle AdaptiveAvgPool2D bins: rows floor(i·H/s) .. ceil((i+1)·H/s) − 1."""
    n, c, h, w = x.shape
    out = np.zeros((n, c, size, size))
    for i in range(size):
        r0, r1 = (i * h) // size, -((-(i + 1) * h) // size)
        for j in range(size):
            c0, c1 = (j * w) // size, -((-(j + 1) * w) // size)
            out[:, :, i, j] = x[:, :, r0:r1, c0:c1].mean(axis=(2, 3))
    return out


def _flat(x, target_size):
    if target_size is not None:
        x = adaptive_avg_pool(x, target_size)
    return x.reshape(x.shape[0], -1)


def rkd_angle(student, teacher, target_size=None):
    def angles(e):
        d = e[None, :, :] - e[:, None, :]
        norm = np.maximum(np.linalg.norm(d, axis=2, keepdims=True), 1e-12)
        u = d / norm
        return np.einsum("ijd,ikd->ijk", u, u)

    return huber(angles(_flat(student, target_size)) - angles(_flat(teacher, target_size))).mean()


def rkd_distance(student, teacher, eps=1e-12, target_size=1):
    def rel(e):
        sq = (e * e).sum(1)
        d = np.sqrt(np.maximum(sq[:, None] + sq[None, :] - 2 * e @ e.T, 1e-12))
        return d / (d.mean() + eps)

    return huber(rel(_flat(student, target_size)) - rel(_flat(teacher, target_size))).mean()


def conv2d(x, w, b, padding):
    """Plain NCHW convolution (cross-correlation), stride 1."""
    n, c, h, wd = x.shape
    o, _, kh, kw = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    out = np.zeros((n, o, h + 2 * padding - kh + 1, wd + 2 * padding - kw + 1))
    for i in range(kh):
        for j in range(kw):
            patch = xp[:, :, i:i + out.shape[2], j:j + out.shape[3]]
            out += np.einsum("nchw,oc->nohw", patch, w[:, :, i, j])
    return out + b[None, :, None, None]


def mgd(pred_s, pred_t, params, mask, alpha=1.756):
    if "align.weight" in params:
        pred_s = conv2d(pred_s, params["align.weight"], params["align.bias"], 0)
    h = conv2d(pred_s * mask, params["generation.0.weight"], params["generation.0.bias"], 1)
    g = conv2d(np.maximum(h, 0), params["generation.2.weight"], params["generation.2.bias"], 1)
    return alpha * ((g - pred_t) ** 2).mean()


def pefd(fs, ft, weights, biases, mode="flatten"):
    if mode == "gap":
        fs, ft = fs.mean(axis=(2, 3)), ft.mean(axis=(2, 3))
    fs, ft = fs.reshape(fs.shape[0], -1), ft.reshape(ft.shape[0], -1)
    f = np.mean([np.maximum(fs @ w + b, 0) for w, b in zip(weights, biases)], axis=0)
    cos = (f * ft).sum(1) / (np.linalg.norm(f, axis=1) * np.linalg.norm(ft, axis=1))
    return (1 - cos).mean()


def afd(key, values_s, query, values_t, p_t, p_s, stage_of_teacher):
    qk = key.shape[-1]
    logit = (np.einsum("bstq,btq->bts", key, query) + p_t @ p_s.T) / np.sqrt(qk)
    att = softmax(logit, axis=2)
    loss = 0.0
    for i, u in enumerate(stage_of_teacher):
        d = ((values_s[u] - values_t[i][:, None, :]) ** 2).mean(2)
        loss += (d * att[:, i]).sum(1).mean()
    return loss
