"""PMLTripletMarginLoss, MinedTripletMarginLoss, SquaredL2TripletLoss: NumPy references (float64),
finite-difference gradients, windowed vs explicit paths, empty selections, validation, to_static."""
import numpy as np
import paddle
import pytest

import paddle_losses as pl
from golden import tensor
from gradcheck import assert_gradcheck
from losses.crossfw import np_reference as R
from paddle_losses.errors import InputError
from paddle_losses.functional import triplet_explicit as te
from paddle_losses.losses.crossfw.triplet import MinedTripletMarginLoss, PMLTripletMarginLoss, SquaredL2TripletLoss

LABELS = {"pk": [0, 0, 0, 1, 1, 1, 2, 2, 2], "unbalanced": [1, 0, 2, 0, 0, 1, 0, 2, 1, 0],
          "singleton": [0, 1, 0, 2, 1, 0, 1]}

KEEP_ALIVE = []


def _data(kind, seed=0, d=5):
    labels = np.array(LABELS[kind])
    x = np.random.default_rng(seed).normal(size=(len(labels), d))
    return x, labels


def _run(loss, x, y):
    return loss({"features": x}, y)[type(loss).__name__]


@pytest.mark.parametrize("kind", list(LABELS))
@pytest.mark.parametrize("kw", [{}, {"margin": 0.4, "reducer": "MeanReducer"}, {"smooth_loss": True},
                                {"swap": True, "margin": 0.3}])
def test_pml_triplet_matches_numpy_float64(kind, kw):
    x, y = _data(kind)
    got = _run(PMLTripletMarginLoss(**kw), tensor(x), paddle.to_tensor(y))
    ref = R.triplet(x, y, kw.get("margin", 0.05), kw.get("reducer", "AvgNonZeroReducer"),
                    kw.get("smooth_loss", False), kw.get("swap", False))
    np.testing.assert_allclose(float(got), ref, rtol=1e-10)


def test_cosine_distance_flips_the_hinge():
    x, y = _data("unbalanced", 1)
    s = R.cos(x)
    ls = [max(s[a, n] - s[a, p] + 0.1, 0) for a in range(len(y)) for p in range(len(y)) for n in range(len(y))
          if a != p and y[a] == y[p] and y[n] != y[a]]
    got = _run(PMLTripletMarginLoss(margin=0.1, distance="CosineSimilarity"), tensor(x), paddle.to_tensor(y))
    np.testing.assert_allclose(float(got), R.avg_nonzero(ls), rtol=1e-10)


@pytest.mark.parametrize("miner", [None, {"name": "TripletMarginMiner", "type_of_triplets": "semihard"},
                                   {"name": "BatchHardMiner"}, {"name": "SemiHardMiner", "definition": "tfa"}])
def test_pml_triplet_finite_difference_gradient(miner):
    x, y = _data("unbalanced", 2, d=4)
    loss = PMLTripletMarginLoss(margin=0.3, reducer="MeanReducer", miner=miner)
    labels = paddle.to_tensor(y)
    assert_gradcheck(lambda t: _run(loss, t, labels), [x])


def test_windowed_and_listed_paths_agree_when_miner_distance_differs():
    """A miner on another distance forces the listed path; with the same selection both must agree."""
    x, y = _data("singleton", 3)
    same = PMLTripletMarginLoss(miner={"name": "TripletMarginMiner", "margin": 0.5})
    other = PMLTripletMarginLoss(miner={"name": "TripletMarginMiner", "margin": 0.5,
                                        "distance": {"name": "LpDistance", "power": 1, "p": 2.0}})
    t, labels = tensor(x), paddle.to_tensor(y)
    np.testing.assert_allclose(float(_run(same, t, labels)), float(_run(other, t, labels)), rtol=1e-12)


def test_no_valid_triplet_gives_zero_with_zero_gradient():
    x = tensor(np.random.default_rng(4).normal(size=(4, 3)), grad=True)
    for loss in (PMLTripletMarginLoss(), PMLTripletMarginLoss(swap=True), MinedTripletMarginLoss(),
                 SquaredL2TripletLoss()):
        out = _run(loss, x, paddle.to_tensor([0, 1, 2, 3]))
        out.backward()
        assert float(out) == 0.0
        assert np.all(x.grad.numpy() == 0)
        x.clear_gradient()


def _batch_hard_rows(x, y):
    d = R.l2(x)
    rows = []
    for a in range(len(y)):
        ps = [p for p in range(len(y)) if p != a and y[p] == y[a]]
        ns = [n for n in range(len(y)) if y[n] != y[a]]
        if ps and ns:
            rows.append((a, max(ps, key=lambda p: d[a, p]), min(ns, key=lambda n: d[a, n])))
    return np.array(rows)


def test_mined_triplet_margin_loss_is_torch_loss_on_batch_hard_rows():
    x, y = _data("unbalanced", 5)
    rows = _batch_hard_rows(x, y)
    a, p, n = x[rows[:, 0]], x[rows[:, 1]], x[rows[:, 2]]
    dist = lambda u, v: (np.abs(u - v + 1e-6) ** 2).sum(-1) ** 0.5  # noqa: E731
    expected = np.maximum(1.0 + dist(a, p) - np.minimum(dist(a, n), dist(p, n)), 0).mean()
    got = _run(MinedTripletMarginLoss(swap=True), tensor(x), paddle.to_tensor(y))
    np.testing.assert_allclose(float(got), expected, rtol=1e-10)


def test_squared_l2_triplet_loss_is_keras_formula_on_batch_hard_rows():
    x, y = _data("pk", 6)
    rows = _batch_hard_rows(x, y)
    a, p, n = x[rows[:, 0]], x[rows[:, 1]], x[rows[:, 2]]
    expected = np.maximum(0.2 + ((a - p) ** 2).sum(-1) - ((a - n) ** 2).sum(-1), 0).sum()
    got = _run(SquaredL2TripletLoss(alpha=0.2, reduction="sum"), tensor(x), paddle.to_tensor(y))
    np.testing.assert_allclose(float(got), expected, rtol=1e-10)


@pytest.mark.parametrize("cls", [MinedTripletMarginLoss, SquaredL2TripletLoss])
def test_mined_explicit_losses_finite_difference_gradient(cls):
    x, y = _data("pk", 7, d=4)
    loss = cls(miner={"name": "SemiHardMiner", "definition": "tfa"})
    labels = paddle.to_tensor(y)
    assert_gradcheck(lambda t: _run(loss, t, labels), [x])


def test_mined_loss_with_window_miner_lists_the_triplets():
    x, y = _data("pk", 8)
    got = _run(SquaredL2TripletLoss(alpha=5.0, miner={"name": "BatchAllMiner"}), tensor(x), paddle.to_tensor(y))
    trip = [(a, p, n) for a in range(9) for p in range(9) for n in range(9) if a != p and y[a] == y[p] and y[n] != y[a]]
    a, p, n = (x[[t[i] for t in trip]] for i in range(3))
    np.testing.assert_allclose(float(got), float(te.squared_l2_triplet_loss(*map(tensor, (a, p, n)), 5.0)),
                               rtol=1e-10)


@pytest.mark.parametrize("bad,match", [
    (lambda: PMLTripletMarginLoss(reducer="Avg"), "reducer"),
    (lambda: PMLTripletMarginLoss(triplets_per_anchor=5), "triplets_per_anchor"),
    (lambda: PMLTripletMarginLoss(miner={"name": "MultiSimilarityMiner"}), "pairs"),
    (lambda: MinedTripletMarginLoss(reduction="avg"), "reduction"),
    (lambda: MinedTripletMarginLoss(p=0), "p must"),
    (lambda: SquaredL2TripletLoss(reduction="max"), "reduction"),
])
def test_constructor_errors(bad, match):
    with pytest.raises(ValueError, match=match):
        bad()


def test_input_validation():
    loss = PMLTripletMarginLoss()
    with pytest.raises(InputError, match="keys"):
        loss({"logits": paddle.randn([4, 3])}, paddle.to_tensor([0, 0, 1, 1]))
    with pytest.raises(InputError, match="entries"):
        loss({"features": paddle.randn([4, 3])}, paddle.to_tensor([0, 0, 1]))
    with pytest.raises(InputError, match="integer"):
        loss({"features": paddle.randn([4, 3])}, paddle.to_tensor([0.0, 0, 1, 1]))
    with pytest.raises(InputError, match=r"\[N, D\]"):
        loss({"features": paddle.randn([4])}, paddle.to_tensor([0, 0, 1, 1]))
    with pytest.raises(InputError, match="NaN"):
        loss({"features": paddle.to_tensor([[float("nan")], [1.0]])}, paddle.to_tensor([0, 0]))


def test_built_from_yaml_style_config_with_miner_and_distance():
    combined = pl.build_loss([{"PMLTripletMarginLoss": {
        "weight": 2.0, "margin": 0.2, "distance": {"name": "CosineSimilarity"},
        "miner": {"name": "TripletMarginMiner", "margin": 0.3, "type_of_triplets": "hard"}}}])
    x, y = _data("pk", 9)
    out = combined({"features": tensor(x)}, paddle.to_tensor(y).reshape([-1, 1]))
    direct = _run(PMLTripletMarginLoss(margin=0.2, distance="CosineSimilarity",
                                       miner={"name": "TripletMarginMiner", "margin": 0.3,
                                              "type_of_triplets": "hard"}), tensor(x), paddle.to_tensor(y))
    np.testing.assert_allclose(float(out["loss"]), 2 * float(direct), rtol=1e-12)


def test_windowed_loss_runs_under_to_static():
    loss = PMLTripletMarginLoss(margin=0.3)
    x, y = _data("unbalanced", 10)
    xt, yt = tensor(x.astype("float32")), paddle.to_tensor(y)

    def triplet_compute(f, t):
        return _run(loss, f, t)

    # SOT caches translations by code object; keeping the function alive stops a later test's
    # function from reusing its id and hitting the stale cache entry
    KEEP_ALIVE.append(triplet_compute)

    static = paddle.jit.to_static(triplet_compute)
    np.testing.assert_allclose(float(static(xt, yt)), float(triplet_compute(xt, yt)),
                               rtol=1e-6)


@pytest.mark.parametrize("cls", [PMLTripletMarginLoss, MinedTripletMarginLoss, SquaredL2TripletLoss])
def test_describable(cls):
    assert cls.output_keys == (cls.__name__,) and cls.input_keys and "Reads" in cls.__doc__
    assert pl.get_loss(cls.__name__) is cls


def test_tf_addons_semihard_loss_mapping_in_docs():
    """docs/losses.md: TripletSemiHardLoss = MinedTripletMarginLoss(eps=0) + SemiHardMiner(tfa, raw L2)."""
    x, y = _data("singleton", 11)
    d = np.linalg.norm(x[:, None] - x[None], axis=-1)
    ls = []
    for a in range(len(y)):
        for p in range(len(y)):
            if a == p or y[a] != y[p]:
                continue
            negs = [k for k in range(len(y)) if y[k] != y[a]]
            above = [d[a, k] for k in negs if d[a, k] > d[a, p]]
            dn = min(above) if above else max(d[a, k] for k in negs)
            ls.append(max(d[a, p] - dn + 1.0, 0))
    raw_l2 = {"name": "LpDistance", "normalize_embeddings": False}
    loss = MinedTripletMarginLoss(margin=1.0, eps=0.0,
                                  miner={"name": "SemiHardMiner", "definition": "tfa", "distance": raw_l2})
    np.testing.assert_allclose(float(_run(loss, tensor(x), paddle.to_tensor(y))), np.mean(ls), rtol=1e-10)
