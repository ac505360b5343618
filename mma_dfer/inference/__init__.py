"""A trained model at work: evaluation on a test fold (``evaluate``, ``metrics``; the
``launch/evaluate.py`` command in ``evaluate_checkpoint``), rebuilding a run's model without
DeepSpeed (``restore``) in its precision (``precision``), and ``predict`` on new videos with its
emotion ``timeline``."""
