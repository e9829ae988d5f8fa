"""Fixtures of the trainer tests; the helpers live in engine_helpers.py (this folder is put on sys.path)."""
import logging
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from engine_helpers import make_image_folder  # noqa: E402


@pytest.fixture
def image_folder(tmp_path):
    """A tiny image dataset on disk: 4 identities x 6 PNGs, with train/query/gallery list files."""
    return make_image_folder(tmp_path)

@pytest.fixture(autouse=True)
def _quiet_ppcls_logger():
    yield
    logging.getLogger("ppcls").handlers.clear()


@pytest.fixture(autouse=True)
def _one_thread_env(monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("PADDLE_LOSSES_NUM_THREADS", "1")
