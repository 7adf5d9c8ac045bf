"""Fine-tune a model on a GLUE task with Hugging Face's Trainer, as a run_glue.py-style user script would.

    python bench/hf_trainer_glue.py --task cola --model MODEL_DIR --data ../shared/data/glue/CoLA --output-dir /tmp/hf
    python bench/hf_trainer_glue.py --task stsb ... --train-samples 200 --seed 43 --lr 1e-4

The peer of this project's `python src/train.py data=<task> ...` in bench/glue_tasks.py: the rows come from the
project's own reader of GLUE's files (glue_finetune.tasks.read_glue_file), so both tools see identical rows and
labels; then the first --train-samples training rows, one epoch, batch 16 (eval 8), AdamW at --lr, linear schedule
with 6% warm-up, weight decay 0, gradient clipping at 1.0, max_length 128, dynamic padding, float32 (the Trainer's
default on a CPU), and one evaluation on the whole dev set at the end. Metrics as GLUE computes them (scikit-learn's
matthews_corrcoef, f1_score, accuracy_score; scipy's pearsonr, spearmanr). Prints one JSON line:
    {"task": "cola", "metrics": {"mcc": 0.41}, "loss": 0.58, ...}
with the project's metric keys (mcc, f1, acc, pearson, spearman). Kept short and plain: it stands for what users run.
"""

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from datasets import Dataset
from scipy.stats import pearsonr, spearmanr
from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    DataCollatorWithPadding,
    Trainer,
    set_seed,
)

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
from glue_finetune.tasks import TASKS, read_glue_file  # noqa: E402  (pure Python: no heavy imports)
from hf_trainer_sst2 import recipe_arguments  # noqa: E402  (the same Trainer recipe as the SST-2 peer)


def glue_metrics(task: str, predictions: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """The task's GLUE metrics, under the project's keys."""
    if task == "stsb":
        preds = np.squeeze(predictions)
        return {"pearson": float(pearsonr(preds, labels)[0]), "spearman": float(spearmanr(preds, labels)[0])}
    preds = np.argmax(predictions, axis=-1)
    if task == "cola":
        return {"mcc": float(matthews_corrcoef(labels, preds))}
    if task in ("mrpc", "qqp"):
        return {"f1": float(f1_score(labels, preds)), "acc": float(accuracy_score(labels, preds))}
    return {"acc": float(accuracy_score(labels, preds))}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", required=True, choices=["cola", "mrpc", "stsb", "rte", "sst2", "wnli", "qnli"])
    parser.add_argument("--model", required=True, help="Hugging Face model dir")
    parser.add_argument("--data", required=True, help="the task's folder of GLUE files (train.tsv, dev.tsv)")
    parser.add_argument("--output-dir", required=True)
    parser.add_argument("--train-samples", type=int, default=2000, help="first N training rows")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--lr", type=float, default=1e-4)
    args = parser.parse_args()

    spec = TASKS[args.task]
    data = Path(args.data)
    train_rows = read_glue_file(spec.path(data, "train"), spec, "train")
    dev_rows = read_glue_file(spec.path(data, "validation"), spec, "validation")
    train_rows = {k: v[: args.train_samples] for k, v in train_rows.items()}
    tokenizer = AutoTokenizer.from_pretrained(args.model)

    def tokenize(batch):
        texts = [batch[c] for c in spec.text]
        return tokenizer(*texts, truncation=True, max_length=128)

    drop = [*spec.text, "idx"]
    train_ds = Dataset.from_dict(train_rows).map(tokenize, batched=True, remove_columns=drop)
    dev_ds = Dataset.from_dict(dev_rows).map(tokenize, batched=True, remove_columns=drop)

    set_seed(args.seed)  # before the classifier head is initialised
    model = AutoModelForSequenceClassification.from_pretrained(
        args.model, num_labels=spec.num_labels, **({"problem_type": "regression"} if spec.is_regression else {}))

    def compute_metrics(p):
        return glue_metrics(args.task, p.predictions, p.label_ids)

    training_args = recipe_arguments(args.output_dir, lr=args.lr, seed=args.seed)
    trainer = Trainer(
        model=model,
        args=training_args,
        train_dataset=train_ds,
        eval_dataset=dev_ds,
        data_collator=DataCollatorWithPadding(tokenizer),
        compute_metrics=compute_metrics,
    )
    trainer.train()
    metrics = trainer.evaluate()
    print(json.dumps({"task": args.task, "metrics": {m: metrics[f"eval_{m}"] for m in spec.metrics},
                      "loss": metrics["eval_loss"], "train_rows": len(train_ds), "dev_rows": len(dev_ds)}))


if __name__ == "__main__":
    main()
