"""The engine's old import path, kept for tools that import it: the code lives in
:mod:`mma_dfer.training` (and :mod:`mma_dfer.inference`)."""
