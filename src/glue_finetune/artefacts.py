"""Files a finished run leaves for people and benchmarks."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import torch


def write_glue_submission(predictions: list[dict[str, torch.Tensor]], path: Path) -> Path:
    """GLUE's submission format for SST-2 (``index<TAB>prediction``, label ids), sorted by index, written atomically."""
    idx = torch.cat([p["idx"] for p in predictions]).tolist()
    pred = torch.cat([p["pred"] for p in predictions]).tolist()
    lines = ["index\tprediction"] + [f"{i}\t{p}" for i, p in sorted(zip(idx, pred))]
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as f:
        f.write("\n".join(lines) + "\n")
    os.replace(tmp, path)
    return path
