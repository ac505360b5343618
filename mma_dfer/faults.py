"""Named fault points: the places where a test may break a run on purpose, and the one switch
that arms them.

The product calls :func:`point` at a few named places; each is a no-op unless the environment
variable ``MMA_DFER_FAULTS`` holds the path of a Python file, a *fault plan*, which is then
loaded once and called at every point as ``at(name, **where)``. A plan may do anything there
(send the process a signal, SIGKILL it, raise); it is the test's code, never the product's, so
the training loop carries no checks of test variables. The points:

- ``train.after_step`` (``step``: the global step just taken, ``rank``): every rank, after each
  optimizer step, before the step's losses are checked and the stop flag is read.
- ``checkpoint.before_marker`` (``tag``): rank 0, after every rank wrote its files of ``tag``
  and before ``complete.json`` is written (a kill here leaves a checkpoint that is never used).

The suite's plan is ``tests/fault_plan.py`` (a test arms it with ``env=signal_at(3)`` or
``env=kill_before_marker("epoch001")``); ARCHITECTURE.md's "Fault points" says more.
"""
from __future__ import annotations

import functools
import importlib.util
import os

ENV = "MMA_DFER_FAULTS"
POINTS = ("train.after_step", "checkpoint.before_marker")


@functools.cache
def _plan():
    """The fault plan ``MMA_DFER_FAULTS`` names, loaded once; None when it names none."""
    path = os.environ.get(ENV)
    if not path:
        return None
    spec = importlib.util.spec_from_file_location("mma_dfer_fault_plan", path)
    if spec is None or not os.path.isfile(path):
        raise RuntimeError(f"{ENV}={path}: not a fault plan (a Python file with at(point, **where))")
    plan = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(plan)
    return plan


def point(name: str, **where) -> None:
    """Fault point ``name`` (one of :data:`POINTS`) reached, at ``where``."""
    plan = _plan()
    if plan is None:
        return
    if name not in POINTS:
        raise ValueError(f"unknown fault point {name!r} (known: {', '.join(POINTS)})")
    plan.at(name, **where)
