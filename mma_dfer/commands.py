"""Sub-commands beyond ``params``: each adds its parser here."""
from __future__ import annotations


def register(sub) -> None:
    """Attach the data, demo and toolkit sub-commands to ``sub``."""
