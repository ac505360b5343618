"""Training one fold through DeepSpeed: the job and its epochs (``trainer``) built from parts
(``plan``, ``checkpointing``, ``state``, ``schedule``, ``step``, ``evaluator``, ``metrics``,
``loss_scale``, ``nonfinite``; ARCHITECTURE.md, "The trainer"), their set-up (``session``,
``engine``, ``ds_config``, ``distributed``) and the command line of ``launch/train.py``
(``cli``). Importing the package imports no torch."""


class TrainingError(RuntimeError):
    """The run cannot continue (bad DeepSpeed config, non-finite loss, ...)."""
