"""Miner objects and build_miner: YAML-style specs, validation errors, and what each miner returns."""
import numpy as np
import paddle
import pytest

import paddle_losses as pl
from golden import cases, tensor
from paddle_losses.errors import ConfigError
from paddle_losses.functional.mining import selections as M
from paddle_losses.functional.mining import (BatchAllMiner, BatchHardMiner, MultiSimilarityMiner, SemiHardMiner,
                                  TripletMarginMiner, build_miner, list_miners)


def test_every_miner_is_listed():
    assert list_miners() == ["BatchAllMiner", "BatchEasyHardMiner", "BatchHardMiner", "MultiSimilarityMiner",
                             "SemiHardMiner", "TripletMarginMiner"]


def test_build_miner_from_mapping_name_and_none():
    m = build_miner({"name": "TripletMarginMiner", "margin": 0.1, "type_of_triplets": "semihard"})
    assert isinstance(m, TripletMarginMiner) and m.margin == 0.1 and m.type_of_triplets == "semihard"
    assert isinstance(build_miner("BatchHardMiner"), BatchHardMiner)
    assert build_miner(None) is None
    d = build_miner({"name": "BatchHardMiner", "distance": {"name": "LpDistance", "power": 2}})
    assert d.distance.power == 2


@pytest.mark.parametrize("spec,match", [
    ({"name": "BatchHardMinr"}, "miner 'BatchHardMinr' is not registered. Did you mean 'BatchHardMiner'"),
    ({"margin": 0.2}, "'name'"),
    ({"name": "TripletMarginMiner", "type_of_triplets": "medium"}, "type_of_triplets"),
    ({"name": "TripletMarginMiner", "margin": "big"}, "margin"),
    ({"name": "SemiHardMiner", "definition": "facenet"}, "definition"),
    ({"name": "BatchHardMiner", "distance": "Euclid"}, "distance 'Euclid' is not registered"),
    ({"name": "BatchHardMiner", "k": 3}, "no parameter"),
])
def test_bad_miner_specs_raise_config_errors_naming_the_path(spec, match):
    with pytest.raises(ConfigError, match=match) as info:
        build_miner(spec, "Loss.Train[0].PMLTripletMarginLoss.miner")
    assert "Loss.Train[0].PMLTripletMarginLoss.miner" in str(info.value)


def test_loss_config_with_bad_miner_fails_at_build_time():
    with pytest.raises(ConfigError, match="miner"):
        pl.build_loss([{"PMLTripletMarginLoss": {"weight": 1.0, "miner": {"name": "Nope"}}}])


def test_miners_run_without_gradient_on_normalised_embeddings():
    c = cases("crossfw", "pml__TripletMarginLoss__default__BatchHardMiner__pk.npz")[0]
    x = tensor(c["input__embeddings"], grad=True)
    y = paddle.to_tensor(c["input__labels"])
    a, p, n = BatchHardMiner()(x, y).indices()
    assert a.stop_gradient and p.stop_gradient and n.stop_gradient
    a2, p2, n2 = BatchHardMiner()(x * 3.0, y).indices()  # scale-free because the distance normalises
    assert np.array_equal(p.numpy(), p2.numpy()) and np.array_equal(n.numpy(), n2.numpy())


def test_selection_kinds():
    x = paddle.randn([8, 4])
    y = paddle.to_tensor([0, 0, 1, 1, 2, 2, 3, 3])
    assert isinstance(BatchAllMiner()(x, y), M.TripletWindow)
    assert isinstance(SemiHardMiner()(x, y), M.TripletWindow)
    assert isinstance(SemiHardMiner(definition="tfa")(x, y), M.Triplets)
    assert isinstance(MultiSimilarityMiner()(x, y), M.Pairs)
    assert len(BatchAllMiner()(x, y).indices()[0]) == 8 * 1 * 6


def test_semihard_pml_equals_triplet_margin_miner_semihard():
    x = paddle.randn([10, 4])
    y = paddle.to_tensor([0, 1, 2, 0, 1, 2, 0, 1, 2, 0])
    a = [t.numpy() for t in SemiHardMiner(margin=0.3)(x, y).indices()]
    b = [t.numpy() for t in TripletMarginMiner(margin=0.3, type_of_triplets="semihard")(x, y).indices()]
    assert all(np.array_equal(i, j) for i, j in zip(a, b))
