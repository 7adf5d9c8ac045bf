"""Files a finished run leaves for people: the exported model, its model card, the GLUE submission file."""

from __future__ import annotations

import copy
import importlib.metadata
import json
import shutil
import subprocess
import tempfile
from pathlib import Path

import yaml

from glue_finetune.files import apply_umask, current_umask, write_text_atomically
from glue_finetune.hub import is_local_path
from glue_finetune.logs import quiet_transformers
from glue_finetune.tasks import METRIC_NAMES, TaskSpec, metric_prefix, submission_line

CARD_LICENSE = "apache-2.0"  # the license of bert-base-cased and all-MiniLM-L6-v2, which fine-tunes inherit
FRAMEWORKS = {"Transformers": "transformers", "Pytorch": "torch", "Lightning": "lightning", "Datasets": "datasets",
              "Tokenizers": "tokenizers", "Hydra": "hydra-core"}


def write_glue_submission(indices: list[int], predictions: list, spec: TaskSpec, path: Path) -> Path:
    """GLUE's submission format (``index<TAB>prediction``, sorted by index; label ids, names or scores as the task
    wants them), written atomically."""
    lines = ["index\tprediction"] + [submission_line(i, p, spec) for i, p in sorted(zip(indices, predictions))]
    return write_text_atomically(path, "\n".join(lines) + "\n")


def export_model(model, tokenizer, directory: Path, pairs: bool = False) -> Path:
    """A Hugging Face model dir (weights, config with id2label, tokenizer): ``pipeline(model=directory)`` loads it.
    ``pairs``: the task's examples are sentence pairs, which training gave segment ids (``inference.encode``): the
    exported tokenizer gives them too, also where its own ``model_input_names`` leave them out (ALBERT's, XLNet's).

    Written whole or not at all: into a hidden dir beside ``directory``, renamed into place once complete, so that
    an export a full disk or a kill interrupts leaves no model dir that holds a config but no weights (and an
    earlier complete export stays until the new one replaces it)."""
    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=directory.parent, prefix=f".{directory.name}."))
    if pairs and "token_type_ids" not in tokenizer.model_input_names:
        tokenizer = copy.copy(tokenizer)  # the run's own goes on as it is
        tokenizer.model_input_names = [*tokenizer.model_input_names, "token_type_ids"]  # saved in tokenizer_config
    try:
        with quiet_transformers():  # no progress bar for writing one file
            model.save_pretrained(staging)
            tokenizer.save_pretrained(staging)
        apply_umask(staging)
        staging.chmod(0o777 & ~current_umask())  # mkdtemp's 0700, as a plain mkdir would have made it
        if directory.exists():
            replaced = directory.with_name(f"{staging.name}.replaced")
            directory.rename(replaced)
            staging.rename(directory)
            shutil.rmtree(replaced, ignore_errors=True)
        else:
            staging.rename(directory)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return directory


def model_name(name_or_path: str, hub_id: str | None = None) -> tuple[str, bool]:
    """A model's name for people and cards, and whether it is a Hub id.

    ``hub_id`` if given (a local copy of a Hub model says which); a Hub id as such; for a local dir, the repo of a
    snapshot in Hugging Face's cache, else the Hub id its config.json records (``_name_or_path``), else the title of
    its model card (a model this project exported), else the dir's own name (its parent's, for a dir called
    ``model``).
    """
    if hub_id:
        return hub_id, True
    if not is_local_path(name_or_path):
        return name_or_path, True
    path = Path(name_or_path).expanduser().resolve()
    # A snapshot in Hugging Face's cache (.../models--sentence-transformers--all-MiniLM-L6-v2/snapshots/<hash>): the
    # repo it was downloaded from, which its config.json may not record (that one names the model it was made from).
    cached = [part for part in path.parts if part.startswith("models--") and part.count("--") >= 2]
    if cached:
        return "/".join(cached[-1].removeprefix("models--").split("--", 1)), True
    try:
        recorded = json.loads((path / "config.json").read_text()).get("_name_or_path") or ""
    except (OSError, ValueError):
        recorded = ""
    if recorded and not is_local_path(recorded):
        return recorded, True
    # A model this project exported (a run's model/, which a sweep's job dir names "0", "1", ...): its card's title.
    card = path / "README.md"
    lines = card.read_text().splitlines() if card.is_file() else []
    titles = [line[2:].strip() for line in lines if line.startswith("# ")]
    if titles:
        return titles[0], False
    return (path.parent.name if path.name == "model" else path.name), False


def framework_versions() -> dict[str, str]:
    return {name: importlib.metadata.version(dist) for name, dist in FRAMEWORKS.items()}


PROJECT_ROOT = Path(__file__).resolve().parents[2]  # src/glue_finetune/artefacts.py → the checkout


def code_version(root: Path = PROJECT_ROOT) -> str | None:
    """This project's git commit, "with uncommitted changes" where the checkout has some; None outside a git
    checkout of its own (an installed copy, also one in a virtual environment inside some repository) or without
    git."""
    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    top = git("rev-parse", "--show-toplevel")
    if not top or Path(top).resolve() != root.resolve() or not (commit := git("rev-parse", "HEAD")):
        return None
    changed = git("status", "--porcelain", "--untracked-files=no")
    return commit + (" with uncommitted changes" if changed else "")


def provenance(data_digests: dict[str, str], hardware: str) -> list[str]:
    """What a rerun needs beyond the command and the versions to train the same weights: this project's code, the
    data's bytes (the first 16 hex digits of the sha256 of each local file read), the hardware (results on another
    CPU or GPU, or with another thread count, differ in their last digits)."""
    lines = [f"- code: this project at commit {version}" if (version := code_version()) else
             "- code: not a git checkout (no commit recorded)"]
    if data_digests:
        lines.append("- data: " + ", ".join(f"{split} sha256 {digest}..." for split, digest in
                                            sorted(data_digests.items())))
    lines.append(f"- hardware: {hardware}")
    return lines


def hardware_name(device) -> str:
    """The device a run trained on, by name: the GPU's, else the CPU's model and the threads torch used."""
    import torch

    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    if device.type != "cpu":
        return str(device)
    model = next((line.split(":", 1)[1].strip() for line in _cpuinfo() if line.startswith("model name")), "a CPU")
    return f"{model}, {torch.get_num_threads()} threads"


def _cpuinfo() -> list[str]:
    try:
        return Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return []


def metric_title(name: str) -> str:
    """val/acc → "Accuracy"; val_mismatched/acc → "Accuracy (mismatched)"; val/loss → "Validation Loss"."""
    prefix, key = name.split("/", 1)
    title = "Validation Loss" if key == "loss" else METRIC_NAMES[key][0]
    return title + (f" ({prefix.removeprefix('val_')})" if prefix != "val" else "")


def model_card(
    name: str, base_model: str, spec: TaskSpec, selected: dict[str, float], selection: str, best: dict[str, float],
    hyperparameters: dict, rows: list[dict], on_hub: bool = True, overrides: str = "", scored: str | None = None,
    final_weights_because: str | None = None, train_examples: int | None = None, validated_on: str | None = None,
    provenance_lines: list[str] = (),
) -> str:
    """A model card in the shape of Hugging Face Trainer's: front matter with a model-index (the task's dataset,
    each metric under the names Hugging Face's cards use), the selected checkpoint's results, the best value seen
    of each metric, hyperparameters, the results of every evaluation, framework versions. ``provenance_lines``:
    the code, data and hardware it trained with (``provenance``).

    ``scored``: how much of the dev set the scores cover when not all of it ("160 of 872 dev examples", a debug
    run's): the card says so first, and its metadata claims no results (the Hub would show them as the model's).
    ``final_weights_because``: why these are the final weights though ``selection`` named a checkpoint to select
    ("no validation ran during training, so no checkpoint was selected"). ``train_examples``: the size of the
    training subset, when only part of it was used. ``validated_on``: how much of the dev set the validations
    during training covered, where less than the results above (``trainer.limit_val_batches``)."""
    results = [{
        "task": {"name": "Text Classification", "type": "text-classification"},
        "dataset": {"name": f"GLUE {spec.glue_name}", "type": "glue", "config": spec.name, "split": split,
                    "args": spec.name},
        "metrics": [{"name": METRIC_NAMES[m][0], "type": METRIC_NAMES[m][1],
                     "value": selected[f"{metric_prefix(split)}/{m}"]} for m in spec.metrics],
    } for split in spec.dev_splits]
    front_matter = {
        "library_name": "transformers",
        "license": CARD_LICENSE,
        # The Hub validates base_model as a repo id: a local model's name goes in the text only.
        **({"base_model": base_model} if on_hub else {}),
        "tags": ["text-classification", "glue", spec.name],
        "datasets": ["glue"],
        "metrics": [METRIC_NAMES[m][1] for m in spec.metrics],
        **({} if scored else {"model-index": [{"name": name, "results": results}]}),
    }
    columns = [n for n in spec.logged_metrics]
    table = ["| Training Loss | Epoch | Step | " + " | ".join(metric_title(c) for c in columns) + " |",
             "|" + ":---:|" * (3 + len(columns))]
    for r in rows:
        loss = "No log" if r.get("train/loss") is None else f"{r['train/loss']:.4f}"
        table.append(f"| {loss} | {r['epoch']:.4f} | {int(r['step'])} | "
                     + " | ".join(f"{r[c]:.4f}" if c in r else "-" for c in columns) + " |")
    head = ("a regression head (one output: the similarity score, 0 to 5)" if spec.is_regression else
            "a sequence-classification head; labels " + ", ".join(f"`{n}` ({i})" for i, n in enumerate(spec.labels)))
    chosen = ("the final weights" if selection == "last" else
              f"the final weights ({final_weights_because})" if final_weights_because
              else f"the checkpoint with the {'lowest' if selection.endswith('loss') else 'highest'} `{selection}`")
    data = (f"the first {train_examples:,} training examples of the GLUE {spec.glue_name} dataset"
            if train_examples else f"the GLUE {spec.glue_name} dataset")
    best_lines = [f"- {metric_title(n).replace('Validation Loss', 'Loss')}: {best[n]:.4f}" for n in columns
                  if n in best]
    lines = [
        "---", yaml.safe_dump(front_matter, sort_keys=False).rstrip(), "---", "",
        f"# {name}", "",
        *([f"**A debug run: every score below covers {scored} only** (the trainer's limit_val_batches, "
           "limit_test_batches, overfit_batches or fast_dev_run). Not a result on GLUE.", ""] if scored else []),
        "This model is a fine-tuned version of "
        + (f"[{base_model}](https://huggingface.co/{base_model})" if on_hub else f"`{base_model}`")
        + f" on {data}. It achieves the following results on the evaluation set "
        f"(GLUE's validation split{'s' if len(spec.dev_splits) > 1 else ''}{', ' + scored if scored else ''}) "
        f"with {chosen}:",
        *[f"- {metric_title(n).replace('Validation Loss', 'Loss')}: {selected[n]:.4f}" for n in columns], "",
        *([f"The validations during training scored {validated_on} only (the trainer's limit_val_batches): "
           + ("" if selection == "last" else "the checkpoint was selected on them, and ")
           + "the best values and the training results below are theirs.", ""] if validated_on else []),
        *(["The best value of each metric seen during training (not necessarily at the same step):",
           *best_lines, ""] if best_lines else []),
        "## Model description", "",
        f"`{base_model}` with {head}.", "",
        "## Intended uses & limitations", "",
        f"GLUE {spec.glue_name}, as the GLUE benchmark defines it. Not evaluated on other data.", "",
        "## Training procedure", "",
        f"Trained with `python src/train.py{' ' + overrides if overrides else ''}`.", "",
        *([*provenance_lines, ""] if provenance_lines else []),
        "### Training hyperparameters", "",
        "The following hyperparameters were used during training:",
        *[f"- {key}: {value}" for key, value in hyperparameters.items()], "",
        "### Training results", "",
        *(table if rows else ["No validation ran during training."]), "",
        "### Framework versions", "",
        *[f"- {name} {version}" for name, version in framework_versions().items()], "",
    ]
    return "\n".join(lines)
