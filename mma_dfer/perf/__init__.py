"""Measurement of the model, for ``bench/``: FLOPs per clip (``flops``) and the bytes kept for
the backward pass and the per-ZeRO-stage model state (``memory``)."""
