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


@pytest.fixture
def scratch_registry():
    """Register test-only classes for the duration of a test, then remove them from the registry."""
    from paddle_losses import registry

    registry._ensure_loaded()
    before = (dict(registry._LOSSES), dict(registry._HEADS))
    yield registry
    registry._LOSSES.clear()
    registry._LOSSES.update(before[0])
    registry._HEADS.clear()
    registry._HEADS.update(before[1])
