"""Retrieval metrics against brute-force per-query loops, the masking protocol, and TopkAcc."""
import numpy as np
import paddle
import pytest

from paddle_losses.engine.metrics import (MAPatR, Precisionk, Recallk, RPrecision, TopkAcc, build_retrieval_metrics,
                                          evaluate_retrieval, keep_mask, mAP, mINP)
from paddle_losses.errors import ConfigError

RNG = np.random.default_rng(11)


def brute_force(sim, ql, gl, keep):
    """Per-query metric values with Python loops over an explicitly filtered ranking."""
    rows = []
    for q in range(sim.shape[0]):
        items = [j for j in range(sim.shape[1]) if keep[q, j]]
        items.sort(key=lambda j: (-sim[q, j], j))
        rel = [gl[j] == ql[q] for j in items]
        n_rel = sum(rel)
        row = {"valid": n_rel > 0}
        if n_rel:
            first = rel.index(True) + 1
            last = len(rel) - rel[::-1].index(True)
            hits, precs = 0, []
            for r, is_rel in enumerate(rel, 1):
                if is_rel:
                    hits += 1
                    precs.append(hits / r)
            row["ap"] = sum(precs) / n_rel
            row["first"] = first
            row["inp"] = n_rel / last
            row["map_r"] = sum(p for p, r in zip(precs, [i + 1 for i, x in enumerate(rel) if x]) if r <= n_rel) / n_rel
            row["r_prec"] = sum(rel[:n_rel]) / n_rel
        row["prec"] = {k: sum(rel[:k]) / k for k in (1, 3, 5)}
        rows.append(row)
    return rows


def expected(rows):
    valid = [r for r in rows if r["valid"]]
    out = {f"recall{k}": np.mean([r["first"] <= k for r in valid]) for k in (1, 3, 5)}
    out["mAP"] = np.mean([r["ap"] for r in valid])
    out["mINP"] = np.mean([r["inp"] for r in valid])
    out.update({f"precision@{k}": np.mean([r["prec"][k] for r in rows]) for k in (1, 3, 5)})
    out["MAP@R"] = np.mean([r["map_r"] for r in valid])
    out["R-precision"] = np.mean([r["r_prec"] for r in valid])
    return out


METRICS = [Recallk((1, 3, 5)), mAP(), mINP(), Precisionk((1, 3, 5)), MAPatR(), RPrecision()]


@pytest.mark.parametrize("with_cameras", [False, True])
def test_every_metric_matches_a_brute_force_loop(with_cameras):
    nq, ng, d = 23, 41, 6
    qf, gf = RNG.normal(size=(nq, d)), RNG.normal(size=(ng, d))
    ql, gl = RNG.integers(0, 5, nq), RNG.integers(0, 5, ng)
    qc = RNG.integers(0, 3, nq) if with_cameras else None
    gc = RNG.integers(0, 3, ng) if with_cameras else None
    got = evaluate_retrieval(qf, gf, ql, gl, METRICS, qc, gc, block_size=7)
    keep = keep_mask(ql, gl, qc, gc)
    want = expected(brute_force(qf.astype(np.float32) @ gf.astype(np.float32).T, ql, gl, keep))
    assert list(got) == ["recall1", "recall3", "recall5", "mAP", "mINP", "precision@1", "precision@3",
                         "precision@5", "MAP@R", "R-precision"]
    for k, v in want.items():
        assert got[k] == pytest.approx(v, abs=1e-9), k


def test_masked_items_are_removed_not_zeroed():
    # gallery: a masked same-id item with the highest score, a negative at -0.5, the positive at -0.9.
    # Removing the masked item puts the positive at rank 2; zeroing it (PaddleClas) would keep it at rank 1
    # with score 0 and the positive would fall to rank 3.
    sim_q = np.array([[1.0, 0.0]])
    g = np.array([[1.0, 0.0], [-0.5, 0.866], [-0.9, 0.436]])
    out = evaluate_retrieval(sim_q, g, [0], [0, 1, 0], [mAP(), Recallk((1, 2))], q_cams=[0], g_cams=[0, 1, 1])
    assert out["mAP"] == pytest.approx(0.5)
    assert out["recall1"] == 0.0 and out["recall2"] == 1.0


def test_minp_uses_one_based_rank_of_last_relevant_item():
    # relevant items at ranks 1 and 3 of 4 -> INP = 2 / 3 (PaddleClas's 0-based rank gives 2 / 2 = 1)
    q = np.array([[1.0, 0.0]])
    g = np.array([[1.0, 0.0], [0.9, 0.1], [0.5, 0.5], [0.0, 1.0]])
    out = evaluate_retrieval(q, g, [1], [1, 2, 1, 2], [mINP()])
    assert out["mINP"] == pytest.approx(2.0 / 3.0)


def test_single_relevant_item_at_rank_one_gives_minp_one_not_inf():
    out = evaluate_retrieval(np.eye(2), np.eye(2), [0, 1], [0, 1], [mINP()])
    assert out["mINP"] == 1.0


def test_query_set_as_gallery_excludes_self_matches():
    f = np.array([[1.0, 0.0], [0.99, 0.1], [0.0, 1.0]])
    out = evaluate_retrieval(f, f, [0, 0, 1], [0, 0, 1], [Recallk((1,)), mAP()], same_set=True)
    # queries 0 and 1 find each other; query 2 has no other relevant item and is left out
    assert out["recall1"] == 1.0 and out["mAP"] == 1.0


def test_no_valid_query_gives_zero_not_nan():
    out = evaluate_retrieval(np.eye(2), np.eye(2), [0, 1], [2, 3], [mAP(), Recallk((1,))])
    assert out == {"mAP": 0.0, "recall1": 0.0}


def test_precision_averages_over_all_queries_including_those_without_relevant_items():
    out = evaluate_retrieval(np.eye(2), np.eye(2), [0, 5], [0, 1], [Precisionk((1,))])
    assert out["precision@1"] == 0.5


def test_block_size_does_not_change_results():
    qf, gf = RNG.normal(size=(30, 4)), RNG.normal(size=(50, 4))
    ql, gl = RNG.integers(0, 4, 30), RNG.integers(0, 4, 50)
    a = evaluate_retrieval(qf, gf, ql, gl, METRICS, block_size=1)
    b = evaluate_retrieval(qf, gf, ql, gl, METRICS, block_size=64)
    assert a == pytest.approx(b)


def test_default_metric_is_recall_1_and_5_and_unknown_names_are_config_errors():
    assert build_retrieval_metrics(None)[0].keys() == ["recall1", "recall5"]
    with pytest.raises(ConfigError, match="Recallk"):
        build_retrieval_metrics([{"Recall": {"topk": [1]}}])
    with pytest.raises(ConfigError, match="topk"):
        build_retrieval_metrics([{"Recallk": {"topk": [0]}}])


def test_topk_accuracy():
    logits = paddle.to_tensor([[0.1, 0.9, 0.0], [0.8, 0.05, 0.15], [0.2, 0.3, 0.5]])
    labels = paddle.to_tensor([1, 2, 0])
    out = TopkAcc((1, 2))(logits, labels)
    assert float(out["top1"]) == pytest.approx(1 / 3)
    assert float(out["top2"]) == pytest.approx(2 / 3)
