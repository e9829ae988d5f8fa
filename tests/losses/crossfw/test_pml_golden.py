"""Golden replay of every pytorch-metric-learning case: value, gradients (embeddings and W / proxies) and
the miner's index tuple, exactly and in order."""
import pytest

from golden import cases
from losses.crossfw.pml_cases import replay

PML = cases("crossfw", "pml__*.npz")


def test_all_pml_cases_are_present():
    assert len(PML) == 80


@pytest.mark.parametrize("case", PML, ids=lambda c: c.name)
def test_pml_case_replays(case):
    replay(case)
