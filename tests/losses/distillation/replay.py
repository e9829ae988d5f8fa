"""Replay of the distillation golden cases in ``fixtures/other`` (layout: ``tests/golden.py``).

Arguments are stored flattened as ``arg.<path>``; nested model-output dicts are rebuilt from the dotted
path and a level whose keys are all digits becomes a list (AFD's per-stage values). Learnable parameters
are loaded from ``param.<name>``; outputs, input gradients (zeros where PaddleClas has no gradient path)
and parameter gradients are compared at rtol = atol = 1e-5.
"""
import numpy as np
import paddle

from golden import assert_close, case, cases, tensor

DISTILL_CASES = ("DMLLoss_", "KLDivLoss", "DKDLoss_", "WSLLoss_", "SKDLoss_", "DISTLoss",
                 "DistanceLoss_", "RKdAngle", "RkdDistance_", "MGDLoss_", "PEFDLoss_", "AFDLoss",
                 "Distillation")


def distill_case_names(prefixes=DISTILL_CASES):
    return [c.name for c in cases("other") if c.name.startswith(tuple(prefixes))]


def load(name):
    return case("other", name)


def _listify(node):
    if not isinstance(node, dict):
        return node
    node = {k: _listify(v) for k, v in node.items()}
    if node and all(k.isdigit() for k in node):
        return [node[str(i)] for i in range(len(node))]
    return node


def build_args(golden):
    """``(args, leaves)``: positional arguments in call order and ``{path: tensor}`` of float leaves."""
    roots, leaves = {}, {}
    for key, array in golden.arrays.items():
        if not key.startswith("arg."):
            continue
        path = key[len("arg."):]
        is_float = np.issubdtype(array.dtype, np.floating)
        value = tensor(array, grad=is_float)
        if is_float:
            leaves[path] = value
        parts = path.split(".")
        node = roots
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    roots = {k: _listify(v) for k, v in roots.items()}
    # an argument the case does not store (AFD's unused batch) is passed as None
    return [roots.get(name) for name in golden.meta["arg_order"]], leaves


def load_params(golden, layer):
    """Set every ``param.<name>`` of the case into ``layer``; the names must match its state_dict."""
    params = dict(layer.named_parameters())
    golden_params = golden.with_prefix("param.")
    assert sorted(golden_params) == sorted(params), \
        f"{golden.name}: parameters {sorted(params)} != golden {sorted(golden_params)}"
    for name, value in golden_params.items():
        assert list(params[name].shape) == list(value.shape), f"{golden.name}: shape of {name}"
        params[name].set_value(paddle.to_tensor(value))
    return params


def outputs(golden, out):
    """``{golden out name: tensor}``; checks the key set and the insertion order of dict results."""
    if golden.meta["returns"] == "tensor":
        assert isinstance(out, paddle.Tensor), f"{golden.name}: expected a bare tensor, got {type(out)}"
        return {"out": out}
    keys = golden.meta["output_keys"]
    assert list(out) == keys, f"{golden.name}: output keys {list(out)} != golden {keys}"
    return {f"out.{k}": v for k, v in out.items()}


def replay(golden, loss, call=None, rtol=1e-5, atol=1e-5):
    """Run ``loss`` (or ``call(loss, args)``) on the case; assert outputs, input and parameter gradients."""
    params = load_params(golden, loss)
    args, leaves = build_args(golden)
    out = call(loss, args) if call is not None else loss(*args)
    named = outputs(golden, out)
    total = None
    for name, value in named.items():
        assert_close(value, golden[name], f"{golden.name}: {name}", rtol=rtol, atol=atol)
        total = value.sum() if total is None else total + value.sum()
    total.backward()
    for path, t in leaves.items():
        expected = golden[f"grad.{path}"]
        actual = t.grad.numpy() if t.grad is not None else np.zeros_like(expected)
        assert_close(actual, expected, f"{golden.name}: grad.{path}", rtol=rtol, atol=atol)
    for name, p in params.items():
        assert p.grad is not None, f"{golden.name}: parameter {name} got no gradient"
        assert_close(p.grad, golden[f"grad_param.{name}"], f"{golden.name}: grad_param.{name}",
                     rtol=rtol, atol=atol)
    return out
