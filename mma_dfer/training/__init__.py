"""Training one fold through DeepSpeed: the loop (``trainer``), its set-up (``engine``,
``ds_config``, ``distributed``), what it saves and resumes (``checkpointing``, ``rng``) and the
command line of ``launch/train.py`` (``cli``). Importing the package imports no torch."""


class TrainingError(RuntimeError):
    """The run cannot continue (bad DeepSpeed config, non-finite loss, ...)."""
