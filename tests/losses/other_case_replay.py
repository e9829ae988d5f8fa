"""Replay of ``fixtures/other`` golden cases: rebuild the call's arguments, compare outputs and gradients.

A case stores every positional argument flattened as ``arg.<name>[.<key>...]``; dict arguments are rebuilt
from the dotted paths. Float leaves require gradients; ``grad.<path>`` holds the golden gradient of the sum
of all outputs (zeros where PaddleClas has no gradient path).
"""
import numpy as np

from golden import assert_close, tensor


def build_args(case):
    """Return ``(args, leaves)``: positional arguments in call order and ``{path: tensor}`` of float leaves."""
    roots, leaves = {}, {}
    for key, array in case.arrays.items():
        if not key.startswith("arg."):
            continue
        path = key[len("arg."):]
        value = tensor(array, grad=np.issubdtype(array.dtype, np.floating))
        if np.issubdtype(array.dtype, np.floating):
            leaves[path] = value
        parts = path.split(".")
        if len(parts) == 1:
            roots[parts[0]] = value
            continue
        node = roots.setdefault(parts[0], {})
        for part in parts[1:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return [roots[name] for name in case.meta["arg_order"]], leaves


def replay(case, loss, rtol=1e-5, atol=1e-5):
    """Run ``loss`` on the case's arguments; assert every output key and every input gradient."""
    args, leaves = build_args(case)
    out = loss(*args)
    keys = case.meta["output_keys"]
    assert sorted(out) == sorted(keys), f"{case.name}: output keys {sorted(out)} != golden {sorted(keys)}"
    for key in keys:
        assert_close(out[key], case[f"out.{key}"], f"{case.name}: out.{key}", rtol=rtol, atol=atol)
    total = None
    for key in keys:
        s = out[key].sum()
        total = s if total is None else total + s
    total.backward()
    for path, t in leaves.items():
        expected = case[f"grad.{path}"]
        actual = t.grad.numpy() if t.grad is not None else np.zeros_like(expected)
        assert_close(actual, expected, f"{case.name}: grad.{path}", rtol=rtol, atol=atol)
    return out
