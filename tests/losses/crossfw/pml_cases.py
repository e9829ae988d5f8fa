"""Translate a PML golden case's constructor record into our loss/miner configuration and replay it."""
import numpy as np
import paddle

from paddle_losses import get_loss
from golden import assert_close, cases

# our registered name for each PML class
OUR_NAME = {
    "TripletMarginLoss": "PMLTripletMarginLoss", "ContrastiveLoss": "PMLContrastiveLoss",
    "SupConLoss": "PMLSupConLoss", "NPairsLoss": "PMLNPairsLoss",
}
# loss parameters that hold parameters (golden init__<name>)
PARAMS = ("W", "proxies")


def _value(v):
    """``"distances.CosineSimilarity()"`` -> ``{"name": "CosineSimilarity"}``; ``"reducers.MeanReducer()"``
    -> ``"MeanReducer"``."""
    if isinstance(v, str) and v.endswith("()") and "." in v:
        kind, cls = v[:-2].split(".", 1)
        return {"name": cls} if kind == "distances" else cls
    return v


def config(case):
    """``(loss name, loss kwargs, miner spec or None)`` for a ``pml__*`` case."""
    ctor = case.meta["loss_ctor"]
    pml_name = ctor["class"].split(".")[-1]
    kwargs = {k: _value(v) for k, v in ctor["kwargs"].items()}
    miner = case.meta.get("miner_ctor")
    spec = None
    if miner:
        spec = {"name": miner["class"].split(".")[-1], **miner["kwargs"]}
        kwargs["miner"] = spec
    return OUR_NAME.get(pml_name, pml_name), kwargs, spec


def build(case):
    name, kwargs, _ = config(case)
    loss = get_loss(name)(**kwargs)
    for p in PARAMS:
        if f"init__{p}" in case:
            init = case[f"init__{p}"]
            if init.dtype == np.float64:
                loss.to(dtype="float64")
            getattr(loss, p).set_value(paddle.to_tensor(init))
    return name, loss


def tolerance(case):
    return (1e-10, 1e-10) if case.meta["dtype"] == "float64" else (1e-5, 1e-5)


def replay(case):
    """Run our loss on the case and assert the value, gradients and (if any) mined indices."""
    name, loss = build(case)
    x = paddle.to_tensor(case["input__embeddings"], stop_gradient=False)
    y = paddle.to_tensor(case["input__labels"])
    out = loss({"features": x}, y)[name]
    out.backward()
    rtol, atol = tolerance(case)
    assert_close(out, case["out__loss"], f"{case.name}: loss", rtol, atol)
    assert_close(x.grad, case["grad__embeddings"], f"{case.name}: grad embeddings", rtol, atol)
    for p in PARAMS:
        if f"grad__{p}" in case:
            assert_close(getattr(loss, p).grad, case[f"grad__{p}"], f"{case.name}: grad {p}", rtol, atol)
    mined = case.with_prefix("mined__")
    if mined:
        got = loss.miner(x, y).indices()
        keys = ("a", "p", "n") if len(got) == 3 else ("a1", "p", "a2", "n")
        for k, g in zip(keys, got):
            np.testing.assert_array_equal(g.numpy(), mined[k], err_msg=f"{case.name}: mined {k}")


def pml_cases(prefix):
    return cases("crossfw", f"pml__{prefix}__*.npz")
