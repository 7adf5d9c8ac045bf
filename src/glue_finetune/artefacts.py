"""Files a finished run leaves for people: the exported model, its model card, the GLUE submission file."""

from __future__ import annotations

import csv
import importlib.metadata
import json
from pathlib import Path

import yaml

from glue_finetune.files import apply_umask, write_text_atomically
from glue_finetune.hub import is_local_path
from glue_finetune.logs import quiet_transformers

CARD_LICENSE = "apache-2.0"  # the license of bert-base-cased and all-MiniLM-L6-v2, which fine-tunes inherit
FRAMEWORKS = {"Transformers": "transformers", "Pytorch": "torch", "Lightning": "lightning", "Datasets": "datasets",
              "Tokenizers": "tokenizers", "Hydra": "hydra-core"}


def write_glue_submission(indices: list[int], label_ids: list[int], path: Path) -> Path:
    """GLUE's submission format for SST-2 (``index<TAB>prediction``, label ids), sorted by index, written atomically."""
    lines = ["index\tprediction"] + [f"{i}\t{p}" for i, p in sorted(zip(indices, label_ids))]
    return write_text_atomically(path, "\n".join(lines) + "\n")


def export_model(model, tokenizer, directory: Path) -> Path:
    """A Hugging Face model dir (weights, config with id2label, tokenizer): ``pipeline(model=directory)`` loads it."""
    directory.mkdir(parents=True, exist_ok=True)
    with quiet_transformers():  # no progress bar for writing one file
        model.save_pretrained(directory)
        tokenizer.save_pretrained(directory)
    apply_umask(directory)
    return directory


def model_name(name_or_path: str, hub_id: str | None = None) -> tuple[str, bool]:
    """A model's name for people and cards, and whether it is a Hub id.

    ``hub_id`` if given (a local copy of a Hub model says which); a Hub id as such; for a local dir, the Hub id its
    config.json records (``_name_or_path``), else the dir's own name (its parent's, for a dir called ``model``).
    """
    if hub_id:
        return hub_id, True
    if not is_local_path(name_or_path):
        return name_or_path, True
    path = Path(name_or_path).expanduser().resolve()
    try:
        recorded = json.loads((path / "config.json").read_text()).get("_name_or_path") or ""
    except (OSError, ValueError):
        recorded = ""
    if recorded and not is_local_path(recorded):
        return recorded, True
    return (path.parent.name if path.name == "model" else path.name), False


def evaluation_rows(metrics_csv: Path) -> list[dict]:
    """One row per validation during training, from the run's metrics.csv: the model card's results table.
    No file (a debug run with loggers off) means no rows."""
    if not metrics_csv.exists():
        return []
    with open(metrics_csv, newline="") as f:
        rows = list(csv.DictReader(f))
    train_loss = {r["step"]: float(r["train/loss"]) for r in rows if r.get("train/loss")}
    return [
        {
            "training_loss": train_loss.get(r["step"]),
            "epoch": float(r["epoch"]),
            "step": int(float(r["step"])),
            "validation_loss": float(r["val/loss"]),
            "accuracy": float(r["val/acc"]),
        }
        for r in rows
        if r.get("val/acc")
    ]


def framework_versions() -> dict[str, str]:
    return {name: importlib.metadata.version(dist) for name, dist in FRAMEWORKS.items()}


def model_card(
    name: str, base_model: str, best: dict, hyperparameters: dict, rows: list[dict], on_hub: bool = True,
    overrides: str = "",
) -> str:
    """A model card in the shape of Hugging Face Trainer's: front matter with a model-index, hyperparameters,
    the results of every evaluation, framework versions."""
    front_matter = {
        "library_name": "transformers",
        "license": CARD_LICENSE,
        # The Hub validates base_model as a repo id: a local model's name goes in the text only.
        **({"base_model": base_model} if on_hub else {}),
        "tags": ["text-classification", "glue", "sst2"],
        "datasets": ["glue"],
        "metrics": ["accuracy"],
        "model-index": [{
            "name": name,
            "results": [{
                "task": {"name": "Text Classification", "type": "text-classification"},
                "dataset": {"name": "GLUE SST2", "type": "glue", "config": "sst2", "split": "validation", "args": "sst2"},
                "metrics": [{"name": "Accuracy", "type": "accuracy", "value": best["accuracy"]}],
            }],
        }],
    }
    table = ["| Training Loss | Epoch | Step | Validation Loss | Accuracy |", "|:---:|:---:|:---:|:---:|:---:|"]
    for r in rows:
        loss = "No log" if r["training_loss"] is None else f"{r['training_loss']:.4f}"
        table.append(f"| {loss} | {r['epoch']:.4f} | {r['step']} | {r['validation_loss']:.4f} | {r['accuracy']:.4f} |")
    lines = [
        "---", yaml.safe_dump(front_matter, sort_keys=False).rstrip(), "---", "",
        f"# {name}", "",
        "This model is a fine-tuned version of "
        + (f"[{base_model}](https://huggingface.co/{base_model})" if on_hub else f"`{base_model}`")
        + " on the GLUE SST2 "
        "dataset (binary sentiment of movie-review sentences). It achieves the following results on the evaluation "
        "set (GLUE's validation split) with the best checkpoint:",
        f"- Loss: {best['loss']:.4f}",
        f"- Accuracy: {best['accuracy']:.4f}", "",
        "## Model description", "",
        f"`{base_model}` with a sequence-classification head; labels `negative` (0) and `positive` (1).", "",
        "## Intended uses & limitations", "",
        "Sentiment of short English sentences, as in movie reviews. Not evaluated on other domains.", "",
        "## Training procedure", "",
        f"Trained with `python src/train.py{' ' + overrides if overrides else ''}`.", "",
        "### Training hyperparameters", "",
        "The following hyperparameters were used during training:",
        *[f"- {key}: {value}" for key, value in hyperparameters.items()], "",
        "### Training results", "",
        *table, "",
        "### Framework versions", "",
        *[f"- {name} {version}" for name, version in framework_versions().items()], "",
    ]
    return "\n".join(lines)
