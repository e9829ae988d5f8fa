"""Each triplet / contrastive loss trains a linear embedding in the right direction: 50 optimizer steps on
separable synthetic clusters lower the loss and raise recall@1 on held-out samples."""
import numpy as np
import paddle
import pytest

from paddle_losses.registry import get_loss

CLASSES, PER_CLASS, DIM, EMB = 8, 8, 16, 8


def make_clusters(seed):
    """Class signal in 4 of 16 dims, buried under larger noise in every dim; rows sorted by class."""
    rng = np.random.default_rng(seed)
    centers = np.zeros((CLASSES, DIM))
    centers[:, :4] = rng.normal(scale=1.5, size=(CLASSES, 4))
    labels = np.repeat(np.arange(CLASSES), PER_CLASS)
    x = centers[labels] + rng.normal(scale=[0.3] * 4 + [2.0] * (DIM - 4), size=(len(labels), DIM))
    return x.astype("float32"), labels


def recall_at_1(emb, labels):
    emb = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    sim = emb @ emb.T
    np.fill_diagonal(sim, -np.inf)
    return float(np.mean(labels[sim.argmax(1)] == labels))


def npairs_batch(x, labels, rng):
    """One (anchor, positive) pair per class, rows alternating anchor / positive."""
    rows = [rng.choice(np.flatnonzero(labels == c), 2, replace=False) for c in range(CLASSES)]
    order = np.concatenate(rows)
    return x[order], labels[order]


LOSSES = [
    ("TripletAngularMarginLoss", {}),
    ("TripletAngularMarginLoss", {"add_absolute": True, "absolute_loss_weight": 0.5, "an_fallback": 0.0}),
    ("TripletAngularMarginLoss_XBM", {"start_iter": 0, "xbm_size": 192, "xbm_weight": 0.5, "feat_dim": EMB}),
    ("TripletLoss", {"margin": 1.0}),
    ("TripletLossV2", {}),
    ("TriHardLoss", {"batch_size": 64, "samples_each_class": PER_CLASS, "margin": 0.5}),
    ("MSMLoss", {"batch_size": 64, "samples_each_class": PER_CLASS, "margin": 0.5}),
    ("EmlLoss", {"batch_size": 64, "samples_each_class": PER_CLASS}),
    ("NpairsLoss", {}),
    ("ContrastiveLoss", {"margin": 0.3, "embedding_size": EMB}),
    ("ContrastiveLoss_XBM", {"xbm_size": 192, "xbm_weight": 0.5, "start_iter": 0, "margin": 0.3,
                             "embedding_size": EMB}),
]


@pytest.mark.parametrize("name,params", LOSSES, ids=[f"{n}-{i}" for i, (n, _) in enumerate(LOSSES)])
def test_fifty_steps_lower_the_loss_and_raise_recall(name, params):
    paddle.seed(0)
    rng = np.random.default_rng(1)
    train_x, train_y = make_clusters(10)
    test_x, test_y = make_clusters(11)
    model = paddle.nn.Linear(DIM, EMB)
    optimizer = paddle.optimizer.Adam(learning_rate=0.03, parameters=model.parameters())
    cls = get_loss(name)
    loss_fn = cls(**params)
    key = cls.output_keys[0]

    def fixed_batch_loss():
        # A fresh instance, so that memory terms of the XBM losses compare like with like.
        x, y = npairs_batch(train_x, train_y, np.random.default_rng(5)) if name == "NpairsLoss" \
            else (train_x, train_y)
        with paddle.no_grad():
            out = cls(**params)({"features": model(paddle.to_tensor(x))}, paddle.to_tensor(y))
        return float(out[key])

    def recall():
        with paddle.no_grad():
            return recall_at_1(model(paddle.to_tensor(test_x)).numpy(), test_y)

    loss_before, recall_before = fixed_batch_loss(), recall()
    for _ in range(50):
        x, y = npairs_batch(train_x, train_y, rng) if name == "NpairsLoss" else (train_x, train_y)
        out = loss_fn({"features": model(paddle.to_tensor(x))}, paddle.to_tensor(y))[key]
        optimizer.clear_grad()
        out.backward()
        optimizer.step()
    loss_after, recall_after = fixed_batch_loss(), recall()
    assert loss_after < loss_before, f"{name}: loss {loss_before:.4f} -> {loss_after:.4f}"
    assert recall_after > recall_before + 0.3, f"{name}: recall@1 {recall_before:.3f} -> {recall_after:.3f}"
