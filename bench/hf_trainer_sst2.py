"""Fine-tune a model on GLUE SST-2 with Hugging Face's Trainer, as a run_glue.py-style user script would.

    python bench/hf_trainer_sst2.py --model MODEL_DIR --data ../shared/data/glue/SST-2 --output-dir /tmp/hf-run
    python bench/hf_trainer_sst2.py ... --train-samples 200 --bf16

The peer of this project's `python src/train.py experiment=quick model=minilm` in bench/whole_process.py: the first
--train-samples training sentences, one epoch, batch 16 (eval 8), AdamW at lr 1.5e-4, linear schedule with 6% warm-up,
gradient clipping at 1.0, dynamic padding, then one evaluation on the whole dev set; prints `eval accuracy = 0.8123`.
Kept short and plain on purpose: it stands for what users run today.
"""

import argparse
import os

import numpy as np
from datasets import load_dataset
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    DataCollatorWithPadding,
    Trainer,
    TrainingArguments,
    set_seed,
)

# transformers >= 5.x (some minor) reads a float warmup_steps < 1 as a ratio and dropped warmup_ratio.
WARMUP_6_PERCENT = ({"warmup_ratio": 0.06} if "warmup_ratio" in TrainingArguments.__dataclass_fields__
                    else {"warmup_steps": 0.06})


def recipe_arguments(output_dir: str, lr: float, seed: int, bf16: bool = False) -> TrainingArguments:
    """The benchmarks' recipe (also bench/hf_trainer_glue.py's): one epoch, batch 16 (eval 8), linear schedule with
    6% warm-up, no weight decay, clipping at 1.0, on the CPU, evaluated once at the end, nothing saved or reported."""
    return TrainingArguments(
        output_dir=output_dir,
        per_device_train_batch_size=16,
        per_device_eval_batch_size=8,
        learning_rate=lr,
        lr_scheduler_type="linear",
        **WARMUP_6_PERCENT,
        num_train_epochs=1,
        weight_decay=0.0,
        max_grad_norm=1.0,
        eval_strategy="no",
        save_strategy="no",
        logging_steps=25,
        report_to=[],
        use_cpu=True,
        bf16=bf16,
        seed=seed,
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="Hugging Face model dir")
    parser.add_argument("--data", required=True, help="folder with GLUE SST-2 train.tsv and dev.tsv")
    parser.add_argument("--output-dir", required=True)
    parser.add_argument("--train-samples", type=int, default=2000, help="first N training sentences")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--bf16", action="store_true", help="bf16 mixed precision")
    args = parser.parse_args()

    raw = load_dataset("csv", data_files={"train": os.path.join(args.data, "train.tsv"),
                                          "validation": os.path.join(args.data, "dev.tsv")},
                       delimiter="\t", quoting=3)  # csv.QUOTE_NONE: GLUE TSVs are not quoted
    train_raw = raw["train"].select(range(min(args.train_samples, len(raw["train"]))))
    tokenizer = AutoTokenizer.from_pretrained(args.model)

    def tokenize(batch):
        return tokenizer(batch["sentence"], truncation=True, max_length=128)

    train_ds = train_raw.map(tokenize, batched=True, remove_columns=["sentence"])
    dev_ds = raw["validation"].map(tokenize, batched=True, remove_columns=["sentence"])

    set_seed(args.seed)  # before the classifier head is initialised
    model = AutoModelForSequenceClassification.from_pretrained(args.model, num_labels=2)

    def compute_metrics(p):
        return {"accuracy": float((np.argmax(p.predictions, axis=-1) == p.label_ids).mean())}

    training_args = recipe_arguments(args.output_dir, lr=1.5e-4, seed=args.seed, bf16=args.bf16)
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
    print(f"eval accuracy = {metrics['eval_accuracy']:.4f}")


if __name__ == "__main__":
    main()
