"""MMA-DFER: multimodal adaptation of unimodal encoders for dynamic facial expression recognition."""
__version__ = "0.1.0"
