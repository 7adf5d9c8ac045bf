"""The one reader of a run's ``metrics.csv``: the model card and the sweep report both read it through here."""

from __future__ import annotations

import csv
from pathlib import Path


def read_metrics(path: Path) -> list[dict[str, float]]:
    """Every row of metrics.csv with its logged values as floats (empty cells left out); no file, no rows."""
    if not path.exists():
        return []
    with open(path, newline="") as f:
        return [{key: float(value) for key, value in row.items() if value not in ("", None)}
                for row in csv.DictReader(f)]


def curve(rows: list[dict[str, float]], metric: str) -> list[tuple[int, float]]:
    """(optimizer step, value) of every row that logged ``metric``."""
    return [(int(r["step"]), r[metric]) for r in rows if metric in r and "step" in r]


def evaluations(rows: list[dict[str, float]], main: str = "val/loss") -> list[dict[str, float]]:
    """One dict per validation during training (the rows that logged ``main``), with the training loss logged at
    the same step added as ``train/loss``."""
    train_loss = dict(curve(rows, "train/loss"))
    return [{**r, "train/loss": train_loss.get(int(r["step"]))} for r in rows
            if main in r and "step" in r and not any(k.startswith("selected/") for k in r)]


def best_seen(rows: list[dict[str, float]], metrics: list[str], direction) -> dict[str, float]:
    """The best value of each metric over the run's validations (``direction(name)``: "min" or "max")."""
    best = {}
    for name in metrics:
        values = [value for _, value in curve(rows, name)]
        if values:
            best[name] = min(values) if direction(name) == "min" else max(values)
    return best
