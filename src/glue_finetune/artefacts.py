"""Files a finished run leaves for people and benchmarks."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import torch


def write_text_atomically(path: Path, text: str) -> Path:
    """Write to a temporary file beside ``path``, then rename: readers see the old file or the new one, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)
    return path


def write_glue_submission(predictions: list[dict[str, torch.Tensor]], path: Path) -> Path:
    """GLUE's submission format for SST-2 (``index<TAB>prediction``, label ids), sorted by index, written atomically."""
    idx = torch.cat([p["idx"] for p in predictions]).tolist()
    pred = torch.cat([p["pred"] for p in predictions]).tolist()
    lines = ["index\tprediction"] + [f"{i}\t{p}" for i, p in sorted(zip(idx, pred))]
    return write_text_atomically(path, "\n".join(lines) + "\n")
