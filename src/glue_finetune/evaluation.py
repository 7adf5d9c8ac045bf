"""``evaluate``: a trained model scored on a labelled file or on the dev set its run was validated on."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from glue_finetune.errors import UserError
from glue_finetune.files import write_text_atomically
from glue_finetune.inference import SentimentPredictor, read_labelled


def run_dir_of(model: Path) -> Path | None:
    """The run dir a model comes from: the dir itself, the parent of its ``model/`` or of its ``checkpoints/``."""
    for candidate in (model, model.parent, model.parent.parent):
        if (candidate / ".hydra" / "config.yaml").is_file():
            return candidate
    return None


def run_dev_set(run_dir: Path | None, labels: list[str]) -> tuple[str, list[str], list[int]]:
    """(name, sentences, label ids) of the dev set the run at ``run_dir`` was validated on."""
    if run_dir is None:
        raise UserError("this model is not inside a run dir (no .hydra/config.yaml), so there is no default dev "
                        "set: give one with --data path/to/dev.tsv")
    data = yaml.safe_load((run_dir / ".hydra" / "config.yaml").read_text()).get("data", {})
    if data.get("local_dir"):
        path = Path(data["local_dir"]).expanduser() / "dev.tsv"
        return (str(path), *read_labelled(path, labels))
    import datasets

    from glue_finetune.hub import fetching, go_offline_if_unreachable

    go_offline_if_unreachable()
    with fetching(f"dataset {data['hub_dataset']!r} ({data['task']})"):
        dev = datasets.load_dataset(data["hub_dataset"], data["task"], split="validation")
    return f"{data['hub_dataset']}/{data['task']}:validation", dev["sentence"], dev["label"]


def evaluate(model: Path, data: Path | None = None, output: Path | None = None,
             **predictor_args) -> tuple[dict, Path]:
    """Score ``model`` (run dir, exported model dir or checkpoint) on ``data`` (default: its run's dev set);
    write the metrics as JSON to ``output`` and return them with the path."""
    predictor = SentimentPredictor.load(model, **predictor_args)
    if data is not None:
        name, (sentences, label_ids) = str(data), read_labelled(data, predictor.labels)
    else:
        name, sentences, label_ids = run_dev_set(run_dir_of(model), predictor.labels)
    metrics = {**predictor.evaluate(sentences, label_ids), "data": name, "model": str(model),
               "device": str(predictor.device), "precision": "bf16" if predictor.bf16 else "32"}
    if output is None:
        here = run_dir_of(model) or (model.parent if model.is_file() else model)
        stem = Path(name).stem if data is not None else "dev"
        output = here / (f"eval_{stem}_{model.stem}.json" if model.is_file() else f"eval_{stem}.json")
    write_text_atomically(output, json.dumps(metrics, indent=2) + "\n")
    return metrics, output
