"""Every `Loss:` section of PaddleClas's metric-learning/retrieval configs (paddleclas_surface.md Appendix A,
copied verbatim into tests/fixtures/appendix_a) parses, validates against our signatures, and builds."""
from pathlib import Path

import pytest

import paddle_losses as pl
from paddle_losses.validation import validate_config

CONFIGS = sorted((Path(__file__).parent / "fixtures" / "appendix_a").glob("*.yaml"))


def test_all_32_appendix_configs_are_present():
    assert len(CONFIGS) == 32


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_appendix_loss_section_parses_validates_and_builds(path):
    cfg = pl.load_config(str(path), validate=False)
    assert isinstance(cfg.Loss.Train, list) and cfg.Loss.Train
    validate_config(cfg)
    for phase in ("Train", "Eval"):
        if cfg.Loss.get(phase) is not None:
            combined = pl.build_loss(cfg.Loss[phase], path=f"Loss.{phase}")
            assert [type(m).__name__ for m in combined.loss_func] == [next(iter(e)) for e in cfg.Loss[phase]]
