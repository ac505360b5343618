"""``mma_dfer.engine.metrics.uar_war(y_true, y_pred, num_classes)`` (issue 4's name), re-exported:
see :mod:`mma_dfer.inference.metrics`."""
from mma_dfer.inference.metrics import uar_war

__all__ = ["uar_war"]
