"""``mma_dfer.engine.engine.make_optimizer`` (issue 20's name), re-exported: see
:mod:`mma_dfer.training.engine`."""
from mma_dfer.training.engine import make_optimizer

__all__ = ["make_optimizer"]
