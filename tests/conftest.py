import os
import sys
import warnings

import pytest

warnings.filterwarnings("ignore", message="No ccache found")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
TESTS = os.path.dirname(os.path.abspath(__file__))
if TESTS not in sys.path:
    sys.path.insert(0, TESTS)


def pytest_configure(config):
    """``PADDLE_LOSSES_TEST_DEVICE=gpu`` runs the suite on that device (tools/gpu_check.py uses it)."""
    device = os.environ.get("PADDLE_LOSSES_TEST_DEVICE")
    if device:
        import paddle
        paddle.set_device(device)


@pytest.fixture
def scratch_registry():
    """Register test-only parts for the duration of a test, then restore every kind's table."""
    from paddle_losses import registry

    tables = {}
    for kind in registry.kinds():
        reg = registry.registry(kind)
        reg.names()  # built-ins and plugins loaded before the snapshot
        tables[kind] = dict(reg._table)
    yield registry
    for kind, table in tables.items():
        reg = registry.registry(kind)
        reg._table.clear()
        reg._table.update(table)
