"""Loading and comparing the golden cases in tests/fixtures/ (recorded from PaddleClas's own code at the commit
named in ``metric/manifest.json`` and ``other/index.json``, and from the peer frameworks: ``crossfw/README.md``).

Three layouts exist:
* ``metric/<Class>__<case>.npz``: ``meta`` JSON, ``input__<key>``, ``label``, ``out__<key>``, ``grad__<x>``,
  ``init__*``, ``state__*``; multi-step cases suffix every per-step array with ``__s<k>``.
* ``other/<case>.npz``: ``meta_json``, ``params_json``, ``arg.<path>``, ``out``/``out.<key>``, ``grad.<path>``,
  ``param.<name>``, ``grad_param.<name>``, ``aux.*``.
* ``crossfw/<case>.npz``: ``meta`` JSON, ``input__*``, ``init__*``, ``out__loss``, ``grad__*``, ``mined__*``.
"""
import json
from pathlib import Path

import numpy as np
import paddle

FIXTURES = Path(__file__).resolve().parent / "fixtures"
RTOL = ATOL = 1e-5


class Case:
    """One golden case: ``meta`` (dict) and ``arrays`` (name -> np.ndarray)."""

    def __init__(self, path):
        self.path = Path(path)
        self.name = self.path.stem
        with np.load(self.path, allow_pickle=False) as z:
            self.arrays = {k: z[k] for k in z.files}
        raw = self.arrays.pop("meta", None)
        if raw is None:
            raw = self.arrays.pop("meta_json")
        self.meta = json.loads(str(raw))
        params = self.arrays.pop("params_json", None)
        self.params = json.loads(str(params)) if params is not None else self.meta.get("params", {})

    def __getitem__(self, key):
        return self.arrays[key]

    def __contains__(self, key):
        return key in self.arrays

    def with_prefix(self, prefix, step=None):
        """``{rest: array}`` for arrays named ``<prefix><rest>`` (of step ``step`` if given)."""
        out = {}
        suffix = f"__s{step}" if step is not None else None
        for k, v in self.arrays.items():
            if not k.startswith(prefix):
                continue
            rest = k[len(prefix):]
            if suffix is not None:
                if not rest.endswith(suffix):
                    continue
                rest = rest[: -len(suffix)]
            elif "__s" in rest and rest.rsplit("__s", 1)[1].isdigit():
                continue
            out[rest] = v
        return out

    def __repr__(self):
        return f"Case({self.path.parent.name}/{self.name})"


def cases(folder, pattern="*.npz"):
    """All cases in ``tests/fixtures/<folder>`` matching ``pattern``, sorted by name."""
    return [Case(p) for p in sorted((FIXTURES / folder).glob(pattern))]


def case(folder, name):
    return Case(FIXTURES / folder / f"{name}.npz")


def tensor(array, grad=False):
    """A Paddle tensor from a golden array; float inputs get ``stop_gradient=not grad``."""
    t = paddle.to_tensor(np.asarray(array))
    t.stop_gradient = not grad
    return t


def assert_close(actual, expected, what, rtol=RTOL, atol=ATOL):
    """Compare a tensor/array with a golden array, naming ``what`` on failure."""
    if isinstance(actual, paddle.Tensor):
        actual = actual.numpy()
    actual = np.asarray(actual)
    expected = np.asarray(expected)
    assert actual.shape == expected.shape or actual.size == expected.size == 1, \
        f"{what}: shape {actual.shape} != golden {expected.shape}"
    np.testing.assert_allclose(actual.reshape(expected.shape), expected, rtol=rtol, atol=atol,
                               err_msg=what, equal_nan=True)
