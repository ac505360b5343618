"""Parameter counts per paper part (the ``params`` command)."""
from __future__ import annotations


def param_table(model) -> list[tuple[str, int, int]]:
    """(part, trainable, frozen) for each part of :meth:`MMADFER.param_groups`."""
    rows = []
    for part, params in model.param_groups().items():
        trainable = sum(p.numel() for _, p in params if p.requires_grad)
        frozen = sum(p.numel() for _, p in params if not p.requires_grad)
        rows.append((part, trainable, frozen))
    return rows


def format_param_table(model) -> str:
    rows = param_table(model)
    lines = [f"{'part':<12}{'trainable':>14}{'frozen':>14}"]
    lines += [f"{part:<12}{t:>14,}{f:>14,}" for part, t, f in rows]
    total_t, total_f = sum(r[1] for r in rows), sum(r[2] for r in rows)
    lines.append(f"{'total':<12}{total_t:>14,}{total_f:>14,}")
    lines.append(f"trainable: {total_t}")
    return "\n".join(lines)
