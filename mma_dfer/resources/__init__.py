"""The configs, sweeps and DeepSpeed JSONs shipped inside the package, found by name or by path.

The repository's top-level ``configs/`` and ``ds_configs/`` are links to ``configs/`` and
``ds_configs/`` here, so the documented paths (``configs/dfew_160.yaml``) work in a checkout;
the names (``dfew_160``, ``zero0_bf16``, ``table4``) work anywhere, an installed wheel included.
A value with a folder in it is a path and must exist; a bare name that is not a file here is
looked up among the shipped files. Nothing here imports torch.
"""
from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).resolve().parent
CONFIGS = HERE / "configs"
SWEEPS = CONFIGS / "sweeps"
DS_CONFIGS = HERE / "ds_configs"


class ResourceError(ValueError):
    """A config, sweep or DeepSpeed JSON that is neither a file nor a shipped name; says which exist."""


def names(folder: Path, suffix: str) -> list[str]:
    """The shipped names in ``folder`` (file names without ``suffix``)."""
    return sorted(p.name[:-len(suffix)] for p in folder.glob(f"*{suffix}"))


def find(value: str | Path, folder: Path, suffix: str, what: str) -> Path:
    """``value`` as a path if it is a file, else the shipped ``<folder>/<value>[suffix]``."""
    path = Path(value)
    if path.is_file():
        return path
    name = str(value)
    if "/" not in name and name:
        shipped = folder / (name if name.endswith(suffix) else name + suffix)
        if shipped.is_file():
            return shipped
    raise ResourceError(f"{what} {value!r}: no such file, nor a shipped {what} (shipped: "
                        f"{', '.join(names(folder, suffix))})")


def config_path(value: str | Path) -> Path:
    return find(value, CONFIGS, ".yaml", "config")


def paper_config(dataset: str, resolution) -> str:
    """The shipped paper config of a dataset and resolution (``dfew_160``), else ``paper`` (the
    paper's protocol, which the run's overrides point at the dataset: CREMA-D, RAVDESS, a manifest)."""
    name = f"{dataset}_{resolution}"
    return name if (CONFIGS / f"{name}.yaml").is_file() else "paper"


def sweep_path(value: str | Path) -> Path:
    return find(value, SWEEPS, ".yaml", "sweep file")


def ds_config_path(value: str | Path) -> Path:
    return find(value, DS_CONFIGS, ".json", "DeepSpeed config")
