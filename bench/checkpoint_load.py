"""Loading the selected checkpoint at the end of a run: the whole file (as ``trainer.test(ckpt_path=...)`` reads it)
against one memory-mapped, weights-only load (what ``score_selected_checkpoint`` does).

    python bench/checkpoint_load.py                  (prints a table, writes bench/results/checkpoint_load.json)
    python bench/checkpoint_load.py --repeats 5

The checkpoint is bert-base's shape with its AdamW state, as the documented run saves it (~1.3 GB: the weights are a
third of it): a Lightning-shaped dict (``state_dict``, ``optimizer_states``, ``global_step``) written by torch.save
to a temporary dir. Each way then copies the weights into a model's tensors, as loading a state dict does:

  before   torch.load(mmap=True) for the checkpoint's step, then torch.load of the whole file (weights_only), as
           Lightning's test loop restores it
  now      one torch.load(mmap=True, weights_only=True): only the weights' pages are read

The file was just written, so both read it from the page cache (a run's best checkpoint was written minutes before).
Not a test: timings depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import tempfile
import time
from datetime import date
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def bert_base_checkpoint(path: Path) -> dict[str, torch.Tensor]:
    """Writes the checkpoint; returns tensors shaped as its weights, to copy into."""
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    model = BertForSequenceClassification(BertConfig(vocab_size=28996, num_labels=2))
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-5, fused=True)
    for p in model.parameters():
        p.grad = torch.randn_like(p) * 1e-3
    optimizer.step()  # creates the AdamW state (two tensors the size of each weight)
    state = {f"model.{k}": v for k, v in model.state_dict().items()}
    torch.save({"state_dict": state, "optimizer_states": [optimizer.state_dict()], "global_step": 500}, path)
    return {k: v.clone() for k, v in state.items()}


def load(path: Path, way: str, into: dict[str, torch.Tensor]) -> float:
    gc.collect()
    began = time.perf_counter()
    if way == "before":
        torch.load(path, map_location="cpu", weights_only=True, mmap=True)["global_step"]
        state = torch.load(path, map_location="cpu", weights_only=True)["state_dict"]
    else:
        saved = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        saved["global_step"]
        state = saved["state_dict"]
    for name, tensor in state.items():
        into[name].copy_(tensor)
    return time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "checkpoint_load.json"))
    args = parser.parse_args()
    times: dict[str, list[float]] = {"before": [], "now": []}
    with tempfile.TemporaryDirectory(prefix="checkpoint-load-") as tmp:
        path = Path(tmp) / "best-step500.ckpt"
        into = bert_base_checkpoint(path)
        size_gb = os.path.getsize(path) / 1e9
        for _ in range(args.repeats):  # interleaved: the machine's load hits both alike
            for way in times:
                times[way].append(load(path, way, into))
    print(f"bert-base checkpoint with AdamW state: {size_gb:.2f} GB")
    print(f"{'way':<8} {'median s':>9}  runs")
    for way, runs in times.items():
        print(f"{way:<8} {statistics.median(runs):>9.3f}  {' '.join(f'{t:.3f}' for t in runs)}")
    ratio = statistics.median(times["before"]) / statistics.median(times["now"])
    print(f"before / now: {ratio:.1f}x")
    result = {"date": date.today().isoformat(),
              "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "torch": torch.__version__},
              "checkpoint_gb": size_gb, "seconds": times, "ratio_before_over_now": ratio}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(f"written: {args.out}")


if __name__ == "__main__":
    main()
