"""Compat only (not the DeepSpeed engine): the old names ``mma_dfer.engine.engine.make_optimizer`` and
``mma_dfer.engine.metrics.uar_war`` that other tools import, re-exported; new code imports training/inference."""
