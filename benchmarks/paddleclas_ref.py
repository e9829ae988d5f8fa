"""PaddleClas's loss algorithms, re-implemented for timing only.

These are deliberately *not* optimised: each follows the algorithm PaddleClas's own loss runs, with the
same Paddle operations where they matter for speed and memory (docs/performance.md lists them):

* ``RowPack`` mining: ``masked_select`` of a ``[B, B]`` matrix, ``reshape([B, -1])``, then ``paddle.max`` /
  ``paddle.min`` along the row (whose backward costs ``rows × length²`` on CPU);
* TriHard / MSM / Eml: squared distances from an explicit ``[B, B, D]`` difference tensor, reordered with
  ``rerange_index`` and split into self / positive / negative blocks;
* TripletLoss: a Python double loop over the ``B × B`` distance entries with the builtin ``max``/``min``;
* ContrastiveLoss: a Python loop over query rows with two ``masked_select`` each;
* CrossBatchMemory: slice assignment into ``[M, D]`` buffers and a host read of ``targets[-1]``.

Two row normalisations occur, as in PaddleClas: ``N_plain(x) = x / ‖x‖`` and ``N_add(x) = x / (‖x‖ + 1e-12)``.
Every callable takes ``(x, labels)`` with ``x`` float32 ``[B, D]`` and ``labels`` int64 ``[B]`` and returns a
scalar tensor. They serve the benchmark only; ``tests/tools/test_bench.py`` checks that each one computes
the same value as the registered loss on a P×K batch, so the timings compare like with like.
"""
import numpy as np
import paddle
import paddle.nn.functional as F


def _norm_plain(x):
    return x / paddle.norm(x, p=2, axis=1, keepdim=True)


def _norm_add(x):
    return x / (paddle.norm(x, p=2, axis=1, keepdim=True) + 1e-12)


def _gram_euclidean(x):
    n = x.shape[0]
    sq = paddle.pow(x, 2).sum(axis=1, keepdim=True).expand([n, n])
    d = paddle.addmm(input=sq + sq.t(), x=x, y=x.t(), alpha=-2.0, beta=1.0)
    return paddle.clip(d, min=1e-12).sqrt()


def _label_masks(labels):
    n = labels.shape[0]
    grid = labels.reshape([n, 1]).expand([n, n])
    pos = paddle.equal(grid, grid.t())
    return pos, paddle.logical_not(pos)


def _row_pack(m, mask):
    return paddle.masked_select(m, mask).reshape([m.shape[0], -1])


def rerange_index(batch_size, samples_each_class):
    """Flat gather index reordering each row to [self | own group | other groups] (consecutive K-groups)."""
    rows = []
    for i in range(batch_size):
        start = i // samples_each_class * samples_each_class
        group = list(range(start, start + samples_each_class))
        rest = [j for j in range(batch_size) if j not in group]
        order = [i] + [j for j in group if j != i] + rest
        rows.append([i * batch_size + j for j in order])
    return np.asarray(rows, dtype="int32").reshape(-1)


def _pairwise_diff_sq(x):
    """Squared distances from explicit differences: builds a ``[B, B, D]`` tensor (as PaddleClas does)."""
    diff = x.unsqueeze(1) - x.unsqueeze(0)
    return paddle.square(diff).sum(axis=2)


class TripletAngularMarginRef:
    """RowPack mining on cosine similarities."""

    def __init__(self, margin=0.5, add_absolute=False, absolute_loss_weight=1.0, ap_value=0.9, an_value=0.5):
        self.margin, self.add_absolute = margin, add_absolute
        self.w, self.ap_value, self.an_value = absolute_loss_weight, ap_value, an_value

    def __call__(self, x, labels):
        x = _norm_plain(x)
        s = paddle.matmul(x, x, transpose_y=True)
        pos, neg = _label_masks(labels)
        ap = paddle.min(_row_pack(s, pos), axis=1)
        an = paddle.max(_row_pack(s, neg), axis=1)
        loss = F.relu(an - ap + self.margin).mean()
        if self.add_absolute:
            a = paddle.where(self.ap_value - ap > 0, self.ap_value - ap, paddle.zeros_like(ap))
            b = paddle.where(an - self.an_value > 0, an - self.an_value, paddle.ones_like(an))
            loss = (b.mean() + a.mean()) * self.w + loss
        return loss


class TripletLossV2Ref:
    """RowPack mining on Gram-Euclidean distances of N_add-normalised features."""

    def __init__(self, margin=0.5):
        self.margin = margin

    def __call__(self, x, labels):
        d = _gram_euclidean(_norm_add(x))
        pos, neg = _label_masks(labels)
        ap = paddle.max(_row_pack(d, pos), axis=1)
        an = paddle.min(_row_pack(d, neg), axis=1)
        return F.relu(ap - an + self.margin).mean()


class TripletLossRef:
    """Per-entry Python double loop with the builtin max/min."""

    def __init__(self, margin=1.0):
        self.margin = margin

    def __call__(self, x, labels):
        d = _gram_euclidean(x)
        pos, _ = _label_masks(labels)
        same = pos.numpy()
        n = x.shape[0]
        ap, an = [], []
        for i in range(n):
            row = d[i]
            ap.append(max([row[j] if same[i][j] else float("-inf") for j in range(n)]).unsqueeze(0))
            an.append(min([row[j] if not same[i][j] else float("inf") for j in range(n)]).unsqueeze(0))
        ap, an = paddle.concat(ap), paddle.concat(an)
        return F.relu(ap - an + self.margin).mean()


class _GroupedRef:
    """Shared layout of TriHard / MSM / Eml: reorder rows with rerange_index and split into blocks."""

    def __init__(self, batch_size, samples_each_class):
        self.b, self.k = batch_size, samples_each_class
        self.index = paddle.to_tensor(rerange_index(batch_size, samples_each_class))

    def _blocks(self, q):
        q = paddle.gather(q.reshape([-1]), self.index).reshape([self.b, self.b])
        _, pos, neg = paddle.split(q, [1, self.k - 1, self.b - self.k], axis=1)
        return pos, neg


class TriHardRef(_GroupedRef):
    """Batch-hard on explicit squared differences of N_plain features."""

    def __init__(self, batch_size, samples_each_class, margin=0.1):
        super().__init__(batch_size, samples_each_class)
        self.margin = margin

    def __call__(self, x, labels=None):
        pos, neg = self._blocks(_pairwise_diff_sq(_norm_plain(x)))
        hp, hn = paddle.max(pos, axis=1), paddle.min(neg, axis=1)
        return F.relu(hp + self.margin - hn).mean()


class MSMRef(_GroupedRef):
    """Batch-global hardest positive and negative: ``paddle.max`` over the whole block."""

    def __init__(self, batch_size, samples_each_class, margin=0.1):
        super().__init__(batch_size, samples_each_class)
        self.margin = margin

    def __call__(self, x, labels=None):
        pos, neg = self._blocks(_pairwise_diff_sq(_norm_plain(x)))
        return F.relu(paddle.max(pos) + self.margin - paddle.min(neg))


class EmlRef(_GroupedRef):
    """Easy-positive / log-ratio loss on raw squared differences."""

    thresh, beta = 20.0, 100000.0

    def __call__(self, x, labels=None):
        pos, neg = self._blocks(_pairwise_diff_sq(x))
        pmax = paddle.max(pos, axis=1, keepdim=True)
        pm = paddle.exp(pos - pmax).mean(axis=1, keepdim=True)
        nmin = paddle.min(neg, axis=1, keepdim=True)
        nm = paddle.exp(nmin - neg).mean(axis=1, keepdim=True)
        bias, theta = pmax - nmin, pm * nm
        tau = paddle.full_like(bias, self.thresh)
        log_b1, log_b = float(np.log(1 + self.beta)), float(np.log(self.beta))

        def f(t, b):
            return paddle.log(1 + self.beta * t * paddle.exp(b)) / log_b1

        def g(t, b):
            return (paddle.log(t) + b + log_b) / log_b1

        loss = f(theta, paddle.minimum(bias, tau)) + g(theta, paddle.maximum(bias, tau)) - f(theta, tau)
        return loss.mean()


class NpairsRef:
    """Even rows anchors, odd rows positives, CE over the anchor·positive logits."""

    def __init__(self, reg_lambda=0.01):
        self.reg_lambda = reg_lambda

    def __call__(self, x, labels=None):
        a, p = x[0::2], x[1::2]
        logits = paddle.matmul(a, p, transpose_y=True)
        target = paddle.arange(a.shape[0], dtype="int64")
        reg = paddle.sum(paddle.square(x), axis=1).mean()
        return F.cross_entropy(logits, target) + 0.5 * self.reg_lambda * reg


class CenterRef:
    """addmm distances to all centers, label mask, clip after masking."""

    def __init__(self, num_classes, feat_dim):
        self.centers = paddle.create_parameter([num_classes, feat_dim], "float32",
                                               default_initializer=paddle.nn.initializer.Normal())
        self.classes = paddle.arange(num_classes, dtype="int64")

    def parameters(self):
        return [self.centers]

    def __call__(self, x, labels):
        n, c = x.shape[0], self.centers.shape[0]
        xx = paddle.pow(x, 2).sum(axis=1, keepdim=True).expand([n, c])
        cc = paddle.pow(self.centers, 2).sum(axis=1, keepdim=True).expand([c, n]).t()
        dist = paddle.addmm(input=xx + cc, x=x, y=self.centers.t(), alpha=-2.0, beta=1.0)
        mask = paddle.equal(labels.reshape([n, 1]).expand([n, c]),
                            self.classes.reshape([1, c]).expand([n, c])).astype("float32")
        return paddle.clip(dist * mask, min=1e-12, max=1e12).sum() / n


def contrastive_core(q, yq, k, yk, margin, epsilon):
    """The per-query Python loop of ContrastiveLoss (two ``masked_select`` per row), with ``[N]`` labels."""
    sim = paddle.matmul(q, k, transpose_y=True)
    total = []
    for i in range(q.shape[0]):
        row = sim[i]
        pos = paddle.masked_select(row, yk == yq[i])
        pos = paddle.masked_select(pos, pos < 1 - epsilon)
        neg = paddle.masked_select(row, yk != yq[i])
        neg = paddle.masked_select(neg, neg > margin)
        term = paddle.sum(1 - pos)
        if neg.shape[0] > 0:
            term = term + paddle.sum(neg)
        total.append(term)
    return paddle.add_n(total) / q.shape[0]


class ContrastiveRef:
    def __init__(self, margin=0.5, epsilon=1e-5):
        self.margin, self.epsilon = margin, epsilon

    def __call__(self, x, labels):
        x = F.normalize(x, p=2, axis=1)
        return contrastive_core(x, labels, x, labels, self.margin, self.epsilon)


class CrossBatchMemoryRef:
    """PaddleClas's memory: slice assignment, "last n slots" overflow, full iff ``targets[-1] != 0``."""

    def __init__(self, size, dim):
        self.size = size
        self.feats = paddle.zeros([size, dim], dtype="float32")
        self.targets = paddle.zeros([size], dtype="int64")
        self.ptr = 0

    def enqueue_dequeue(self, feats, targets):
        n = targets.shape[0]
        if self.ptr + n > self.size:
            self.feats[-n:] = feats
            self.targets[-n:] = targets
            self.ptr = 0
        else:
            self.feats[self.ptr:self.ptr + n] = feats
            self.targets[self.ptr:self.ptr + n] = targets
            self.ptr += n

    def get(self):
        if int(self.targets[-1]) != 0:
            return self.feats, self.targets
        return self.feats[:self.ptr], self.targets[:self.ptr]


def _angular_sentinel_core(q, yq, k, yk, margin):
    """TripletAngularMarginLoss_XBM's core: ±10 sentinels, ``paddle.min``/``max`` over the key axis."""
    s = paddle.matmul(q, k, transpose_y=True)
    pos = paddle.equal(yq.reshape([-1, 1]), yk.reshape([1, -1])).astype("float32")
    neg = 1 - pos
    ap = paddle.min(s * pos + 10.0 * (1 - pos), axis=1, keepdim=True)
    an = paddle.max(s * neg + -10.0 * (1 - neg), axis=1, keepdim=True)
    return F.relu(an - ap + margin).mean()


class _XBMRef:
    def __init__(self, xbm_size, feat_dim, xbm_weight=1.0):
        self.memory = CrossBatchMemoryRef(xbm_size, feat_dim)
        self.xbm_weight = xbm_weight

    def prefill(self, batches):
        for feats, labels in batches:
            self.memory.enqueue_dequeue(F.normalize(feats, axis=1), labels)

    def __call__(self, x, labels):
        x = F.normalize(x, p=2, axis=1)
        loss = self.core(x, labels, x, labels)
        self.memory.enqueue_dequeue(x.detach(), labels)
        feats, targets = self.memory.get()
        return loss + self.xbm_weight * self.core(x, labels, feats, targets)


class TripletAngularMarginXBMRef(_XBMRef):
    def __init__(self, xbm_size, feat_dim, margin=0.5, xbm_weight=1.0):
        super().__init__(xbm_size, feat_dim, xbm_weight)
        self.margin = margin

    def core(self, q, yq, k, yk):
        return _angular_sentinel_core(q, yq, k, yk, self.margin)


class ContrastiveXBMRef(_XBMRef):
    def __init__(self, xbm_size, feat_dim, margin=0.5, epsilon=1e-5, xbm_weight=1.0):
        super().__init__(xbm_size, feat_dim, xbm_weight)
        self.margin, self.epsilon = margin, epsilon

    def core(self, q, yq, k, yk):
        return contrastive_core(q, yq, k, yk, self.margin, self.epsilon)


class SupConRef:
    """SupCon over views laid out as consecutive groups, ``contrast_mode='all'``."""

    def __init__(self, views, temperature=0.07, base_temperature=0.07):
        self.views, self.t, self.t_base = views, temperature, base_temperature

    def __call__(self, x, labels):
        n, d = x.shape
        b, v = n // self.views, self.views
        x = _norm_add(x).reshape([b, v, d])
        ids = labels.reshape([b, v])[:, 0].reshape([-1, 1])
        mask = paddle.equal(ids, ids.t()).astype("float32")
        contrast = paddle.concat(paddle.unbind(x, axis=1), axis=0)
        z = paddle.matmul(contrast, contrast, transpose_y=True) / self.t
        z = z - paddle.max(z, axis=1, keepdim=True).detach()
        mask = paddle.tile(mask, [v, v])
        off_diag = 1 - paddle.eye(b * v, dtype="float32")
        mask = mask * off_diag
        log_prob = z - paddle.log((paddle.exp(z) * off_diag).sum(axis=1, keepdim=True))
        mlpp = (mask * log_prob).sum(axis=1) / mask.sum(axis=1)
        return (-(self.t / self.t_base) * mlpp).mean()


class PairwiseCosfaceRef:
    """Softplus of positive and negative logsumexps with the −99999999 mask constant."""

    def __init__(self, margin=0.35, gamma=64.0):
        self.margin, self.gamma = margin, gamma

    def __call__(self, x, labels):
        x = F.normalize(x, axis=1)
        s = paddle.matmul(x, x, transpose_y=True)
        n = x.shape[0]
        same = paddle.equal(labels.reshape([n, 1]), labels.reshape([1, n])).astype("float32")
        p = same - paddle.eye(n, dtype="float32")
        ng = 1 - same
        logit_p = -self.gamma * s * p + (-99999999.0) * (1 - p)
        logit_n = self.gamma * (s * ng + self.margin) + (-99999999.0) * (1 - ng)
        return F.softplus(paddle.logsumexp(logit_p, axis=1) + paddle.logsumexp(logit_n, axis=1)).mean()


class _HeadRef:
    """Column-normalised ``[D, C]`` weight, cosine logits, hard CE on top."""

    def __init__(self, embedding_size, class_num):
        self.weight = paddle.create_parameter([embedding_size, class_num], "float32",
                                              default_initializer=paddle.nn.initializer.XavierNormal())

    def parameters(self):
        return [self.weight]

    def cosine(self, x):
        return paddle.matmul(_norm_plain(x), self.weight / paddle.norm(self.weight, p=2, axis=0, keepdim=True))

    def __call__(self, x, labels):
        logits = self.logits(x, labels)
        return F.cross_entropy(logits, labels.reshape([-1, 1]))


class ArcMarginRef(_HeadRef):
    def __init__(self, embedding_size, class_num, margin=0.5, scale=80.0):
        super().__init__(embedding_size, class_num)
        self.m, self.s = margin, scale

    def logits(self, x, labels):
        cos = self.cosine(x)
        sin = paddle.sqrt(1.0 - paddle.square(cos) + 1e-6)
        phi = cos * float(np.cos(self.m)) - sin * float(np.sin(self.m))
        keep = (cos > -float(np.cos(self.m))).astype("float32")
        phi = keep * phi + (1 - keep) * (cos - self.m * float(np.sin(self.m)))
        onehot = F.one_hot(labels.reshape([-1]), cos.shape[1])
        return self.s * (onehot * phi + (1 - onehot) * cos)


class CosMarginRef(_HeadRef):
    def __init__(self, embedding_size, class_num, margin=0.35, scale=64.0):
        super().__init__(embedding_size, class_num)
        self.m, self.s = margin, scale

    def logits(self, x, labels):
        cos = self.cosine(x)
        return self.s * (cos - self.m * F.one_hot(labels.reshape([-1]), cos.shape[1]))


class CircleMarginRef(_HeadRef):
    def __init__(self, embedding_size, class_num, margin=0.35, scale=64.0):
        super().__init__(embedding_size, class_num)
        self.m, self.s = margin, scale

    def logits(self, x, labels):
        cos = self.cosine(x)
        c = cos.detach()
        alpha_p = F.relu(1 + self.m - c)
        alpha_n = F.relu(c + self.m)
        onehot = F.one_hot(labels.reshape([-1]), cos.shape[1])
        return self.s * (alpha_p * (cos - (1 - self.m)) * onehot + alpha_n * (cos - self.m) * (1 - onehot))
