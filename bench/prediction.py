"""Prediction speed: this project's predictor against transformers' pipeline, on GLUE SST-2's test set.

    python bench/prediction.py --model outputs/<date>/<time>/model --data ../shared/data/glue/SST-2
        (prints a table, writes bench/results/prediction.json)

Both classify the same sentences (test.tsv, 1,821 sentences) with the same exported model, in one process,
alternating, --repeats times each (the model is loaded once per tool, not timed):
  pipeline      transformers.pipeline("text-classification", batch_size=B): what users write; float32
  project-32    Predictor, float32: tokenized once, length-sorted batches of B
  project-auto  Predictor as src/predict.py and the submission file run it: bf16 autocast where the
                CPU/GPU computes bf16 natively, else the same as project-32
Prints sentences/s and seconds per pass, the ratio to the pipeline, and how many labels differ from the
pipeline's. Not a test: timings depend on the machine.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import statistics
import sys
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import torch  # noqa: E402
from transformers import pipeline  # noqa: E402

from glue_finetune.inference import Predictor  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, required=True, help="an exported model dir (<run dir>/model)")
    parser.add_argument("--data", type=Path, required=True, help="folder with GLUE SST-2's test.tsv")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "prediction.json")
    args = parser.parse_args()

    with open(args.data / "test.tsv", newline="") as f:
        sentences = [row[1] for row in csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)][1:]
    examples = [(sentence,) for sentence in sentences]  # Predictor.predict takes each example's text columns
    device = "cuda" if torch.cuda.is_available() else "cpu"
    classify = pipeline("text-classification", model=str(args.model), device=device, batch_size=args.batch_size)
    tools = {
        "pipeline": lambda: [r["label"] for r in classify(sentences, truncation=True, max_length=128)],
        "project-32": lambda p=Predictor.load(args.model, batch_size=args.batch_size, precision="32"):
            [x.label for x in p.predict(examples)],
        "project-auto": lambda p=Predictor.load(args.model, batch_size=args.batch_size):
            [x.label for x in p.predict(examples)],
    }
    labels, seconds = {}, {name: [] for name in tools}
    for name, run in tools.items():  # one untimed pass each: kernels, caches
        labels[name] = run()
    for _ in range(args.repeats):
        for name, run in tools.items():
            start = time.perf_counter()
            run()
            seconds[name].append(time.perf_counter() - start)

    base = statistics.median(seconds["pipeline"])
    print(f"Predicting {len(sentences):,} SST-2 test sentences, batch {args.batch_size}, on {device}, "
          f"median of {args.repeats}\n")
    print("| tool | s per pass | sentences/s | vs pipeline | labels differing from the pipeline's |")
    print("|---|---|---|---|---|")
    results = {}
    for name, times in seconds.items():
        median = statistics.median(times)
        differ = sum(a != b for a, b in zip(labels[name], labels["pipeline"]))
        results[name] = {"seconds": median, "runs_s": times, "sentences_per_s": len(sentences) / median,
                         "speedup_vs_pipeline": base / median, "labels_differing": differ}
        print(f"| {name} | {median:.2f} | {len(sentences) / median:.0f} | {base / median:.2f}x | {differ} |")
    machine = {"platform": platform.platform(), "cpus": os.cpu_count(), "torch": torch.__version__,
               "device": device, "date": datetime.now().isoformat(timespec="seconds")}
    print(f"\nmachine: {machine['platform']}, {machine['cpus']} CPUs, torch {machine['torch']}, {machine['date']}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"machine": machine, "sentences": len(sentences), "batch_size": args.batch_size,
                                    "results": results}, indent=2) + "\n")
    print(f"written: {args.out}")


if __name__ == "__main__":
    main()
