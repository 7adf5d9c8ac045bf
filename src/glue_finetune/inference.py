"""Predictions from a trained classifier: sentences in, labels and probabilities out. No Lightning, no Hydra.

One path serves the GLUE submission file written at the end of training, ``src/predict.py`` and
``src/evaluate.py``: sentences tokenized once, sorted by token length (little padding), batched, on the GPU
when there is one, in bf16 where the hardware computes it natively (as training validates).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import torch

from glue_finetune.errors import UserError
from glue_finetune.logs import quiet_transformers

PRECISIONS = ("auto", "32", "bf16")


@dataclass
class Prediction:
    text: str
    label: str
    label_id: int
    probabilities: dict[str, float]


def bf16_is_native(device: torch.device) -> bool:
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    from glue_finetune.config import cpu_has_native_bf16

    return device.type == "cpu" and cpu_has_native_bf16()


class SentimentPredictor:
    """A Hugging Face sequence classifier in eval mode, fed length-sorted batches.

    ``precision``: "32", "bf16" (autocast), or "auto": bf16 where the device computes it natively (GPUs with
    bf16, CPUs with AMX / AVX512-BF16), else float32.
    """

    def __init__(self, model, tokenizer, batch_size: int = 64, max_length: int = 128, device: str | None = None,
                 precision: str = "auto"):
        if precision not in PRECISIONS:
            raise UserError(f"precision={precision!r}: use one of {', '.join(PRECISIONS)}")
        if batch_size < 1 or not 1 <= max_length <= 512:
            raise UserError(f"batch size {batch_size} must be >= 1 and max length {max_length} between 1 and 512")
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model = model.to(self.device).eval()
        self.tokenizer = tokenizer
        self.labels = [self.model.config.id2label[i] for i in range(self.model.config.num_labels)]
        self.batch_size = batch_size
        self.max_length = max_length
        self.bf16 = precision == "bf16" or (precision == "auto" and bf16_is_native(self.device))

    @classmethod
    def load(cls, source: str | Path, **kwargs) -> SentimentPredictor:
        """From a run dir (its exported ``model/``), an exported model dir, or a Lightning checkpoint (``.ckpt``)."""
        model, tokenizer = load_classifier(Path(source))
        return cls(model, tokenizer, **kwargs)

    @torch.inference_mode()
    def probabilities(self, texts: list[str]) -> torch.Tensor:
        """Class probabilities (float32, on the CPU), one row per text, in the order given."""
        encoded = self.tokenizer(texts, truncation=True, max_length=self.max_length)["input_ids"]
        # Longest first: batches of similar lengths carry little padding, and running out of memory shows at once.
        order = sorted(range(len(texts)), key=lambda i: -len(encoded[i]))
        probs = torch.empty(len(texts), len(self.labels))
        for start in range(0, len(order), self.batch_size):
            batch = order[start : start + self.batch_size]
            inputs = self.tokenizer.pad({"input_ids": [encoded[i] for i in batch]}, return_tensors="pt")
            inputs = {k: v.to(self.device, non_blocking=True) for k, v in inputs.items()}
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
                logits = self.model(**inputs).logits
            probs[batch] = logits.float().softmax(-1).cpu()
        return probs

    def predict(self, texts: list[str]) -> list[Prediction]:
        probs = self.probabilities(texts)
        ids = probs.argmax(-1).tolist()
        return [Prediction(text, self.labels[i], i, dict(zip(self.labels, p))) for text, i, p in
                zip(texts, ids, probs.tolist())]

    def evaluate(self, texts: list[str], label_ids: list[int]) -> dict[str, float]:
        """Accuracy and mean cross-entropy loss, as training's validation computes them."""
        probs = self.probabilities(texts)
        labels = torch.tensor(label_ids)
        loss = -probs.clamp_min(1e-12).log().gather(1, labels[:, None]).mean()
        accuracy = (probs.argmax(-1) == labels).float().mean()
        return {"accuracy": float(accuracy), "loss": float(loss), "examples": len(texts)}


# -- where a model comes from ---------------------------------------------------------------------------------------
def resolve_model_dir(source: Path) -> Path:
    """A run dir means its exported ``model/``; an exported dir is itself."""
    if (source / "model" / "config.json").is_file():
        return source / "model"
    if (source / "config.json").is_file():
        return source
    raise UserError(f"{source}: not a run dir with an exported model (<run dir>/model), an exported model dir "
                    "(config.json) or a checkpoint (.ckpt). A run exports its model when it finishes; an "
                    "unfinished run has checkpoints/last.ckpt.")


def load_classifier(source: Path):
    """(model, tokenizer) from a run dir, an exported model dir or a Lightning checkpoint of this project."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    if not source.exists():
        raise UserError(f"{source}: no such file or directory")
    if source.is_file():
        return load_checkpoint(source)
    model_dir = resolve_model_dir(source)
    with quiet_transformers():
        return (AutoModelForSequenceClassification.from_pretrained(model_dir),
                AutoTokenizer.from_pretrained(model_dir))


def load_checkpoint(path: Path):
    """A Lightning checkpoint's weights in the architecture it was trained with: the run's exported config and
    tokenizer when the checkpoint sits in a finished run dir, else the base model's (``name_or_path`` as saved
    in the checkpoint: a local dir, or a Hub id fetched or taken from the cache)."""
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

    from glue_finetune.hub import fetching

    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        hparams, state = checkpoint["hyper_parameters"], checkpoint["state_dict"]
    except Exception as err:  # pickle, zip and key errors alike: not a checkpoint of this project
        raise UserError(f"{path}: not a Lightning checkpoint of this project ({type(err).__name__}: {err})") from err
    exported = path.parent.parent / "model"
    source = exported if (exported / "config.json").is_file() else hparams["name_or_path"]
    labels = list(hparams.get("label_names", ("negative", "positive")))
    with fetching(f"the config and tokenizer of {source}"), quiet_transformers():
        config = AutoConfig.from_pretrained(source, num_labels=len(labels), id2label=dict(enumerate(labels)),
                                            label2id={n: i for i, n in enumerate(labels)})
        tokenizer = AutoTokenizer.from_pretrained(source)
    model = AutoModelForSequenceClassification.from_config(config)
    model.load_state_dict({k.removeprefix("model."): v for k, v in state.items() if k.startswith("model.")})
    return model, tokenizer


# -- files ----------------------------------------------------------------------------------------------------------
def read_lines(path: Path) -> list[str]:
    if not path.is_file():
        raise UserError(f"{path}: no such file")
    try:
        return path.read_text(encoding="utf-8-sig").splitlines()  # -sig: a UTF-8 byte-order mark is not text
    except UnicodeDecodeError as err:
        raise UserError(f"{path}: not valid UTF-8 ({err.reason} at byte {err.start})") from err


def read_tsv(path: Path, columns: list[str]) -> dict[str, list[str]]:
    """The named columns of a TSV file with a header line (GLUE's files: tab-separated, no quoting)."""
    lines = read_lines(path)
    if not lines:
        raise UserError(f"{path}: the file is empty (expected a header line naming the columns "
                        f"{', '.join(columns)})")
    header = lines[0].split("\t")
    if missing := [c for c in columns if c not in header]:
        raise UserError(f"{path}:1: header {lines[0]!r} has no {', '.join(repr(c) for c in missing)} column")
    table: dict[str, list[str]] = {c: [] for c in columns}
    for lineno, fields in enumerate(csv.reader(lines[1:], delimiter="\t", quoting=csv.QUOTE_NONE), start=2):
        if len(fields) != len(header):
            raise UserError(f"{path}:{lineno}: expected {len(header)} tab-separated fields, found {len(fields)}")
        for c in columns:
            table[c].append(fields[header.index(c)])
    if not table[columns[0]]:
        raise UserError(f"{path}: no data rows after the header")
    return table


def read_sentences(path: Path) -> list[str]:
    """Sentences to classify: a .tsv file has a header naming a ``sentence`` column (GLUE's train/dev/test files
    qualify); any other file has one sentence a line (blank lines skipped)."""
    if path.suffix == ".tsv":
        return read_tsv(path, ["sentence"])["sentence"]
    sentences = [line for line in read_lines(path) if line.strip()]
    if not sentences:
        raise UserError(f"{path}: no sentences to classify")
    return sentences


def read_labelled(path: Path, labels: list[str]) -> tuple[list[str], list[int]]:
    """Sentences and label ids from a TSV with ``sentence`` and ``label`` columns; a label is an id (0, 1) or a
    name (negative, positive)."""
    table = read_tsv(path, ["sentence", "label"])
    ids = {str(i): i for i in range(len(labels))} | {name: i for i, name in enumerate(labels)}
    label_ids = []
    for lineno, value in enumerate(table["label"], start=2):
        if value not in ids:
            raise UserError(f"{path}:{lineno}: label {value!r} is not one of the model's labels "
                            f"({', '.join(f'{i}/{n}' for i, n in enumerate(labels))})")
        label_ids.append(ids[value])
    return table["sentence"], label_ids


def format_predictions(predictions: list[Prediction]) -> str:
    """TSV: one line per sentence, in input order: label, one probability per label, the sentence."""
    labels = list(predictions[0].probabilities)
    lines = ["\t".join(["label", *[f"p_{name}" for name in labels], "sentence"])]
    for p in predictions:
        lines.append("\t".join([p.label, *[f"{p.probabilities[n]:.4f}" for n in labels], p.text]))
    return "\n".join(lines) + "\n"
