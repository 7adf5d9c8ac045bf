"""Predictions from an exported model dir: sentences in, labels and probabilities out. No Lightning, no Hydra.

Used by ``src/predict.py`` and by training for the GLUE submission file, so both give the same answers.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from glue_finetune.errors import UserError


@dataclass
class Prediction:
    text: str
    label: str
    label_id: int
    probabilities: dict[str, float]


class SentimentPredictor:
    """A Hugging Face sequence classifier in eval mode, fed length-sorted batches (little padding)."""

    def __init__(self, model_dir: str | Path, batch_size: int = 32, max_length: int = 128, device: str | None = None):
        if not (Path(model_dir) / "config.json").is_file():
            raise UserError(f"{model_dir} is not an exported model dir (no config.json); a finished run exports its "
                            "best checkpoint to <run dir>/model")
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir)
        self.model = AutoModelForSequenceClassification.from_pretrained(model_dir).to(self.device).eval()
        self.labels = [self.model.config.id2label[i] for i in range(self.model.config.num_labels)]
        self.batch_size = batch_size
        self.max_length = max_length

    @torch.inference_mode()
    def predict(self, texts: list[str]) -> list[Prediction]:
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        probs = [None] * len(texts)
        for start in range(0, len(order), self.batch_size):
            batch = order[start : start + self.batch_size]
            encoded = self.tokenizer([texts[i] for i in batch], truncation=True, max_length=self.max_length,
                                     padding=True, return_tensors="pt").to(self.device)
            for i, p in zip(batch, self.model(**encoded).logits.float().softmax(-1).cpu()):
                probs[i] = p
        return [
            Prediction(text, self.labels[int(p.argmax())], int(p.argmax()), dict(zip(self.labels, p.tolist())))
            for text, p in zip(texts, probs)
        ]


def read_sentences(path: Path) -> list[str]:
    """Sentences to classify: a .txt file has one per line; a .tsv file has a header naming a ``sentence``
    column (GLUE's train/dev/test files qualify). Raises UserError naming the file and line when it cannot."""
    if not path.is_file():
        raise UserError(f"input={path}: no such file")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as err:
        raise UserError(f"input={path}: not valid UTF-8 ({err.reason} at byte {err.start})") from err
    if path.suffix == ".tsv":
        if not lines:
            raise UserError(f"input={path}: the file is empty (expected a header line with a 'sentence' column)")
        header = lines[0].split("\t")
        if "sentence" not in header:
            raise UserError(f"input={path}:1: header {lines[0]!r} has no 'sentence' column")
        column, sentences = header.index("sentence"), []
        for lineno, line in enumerate(lines[1:], start=2):
            fields = line.split("\t")
            if len(fields) != len(header):
                raise UserError(f"input={path}:{lineno}: expected {len(header)} tab-separated fields, found {len(fields)}")
            sentences.append(fields[column])
    else:
        sentences = [line for line in lines if line.strip()]
    if not sentences:
        raise UserError(f"input={path}: no sentences to classify")
    return sentences


def format_predictions(predictions: list[Prediction]) -> str:
    """TSV: one line per sentence, in input order: label, one probability per label, the sentence."""
    labels = list(predictions[0].probabilities)
    lines = ["\t".join(["label", *[f"p_{name}" for name in labels], "sentence"])]
    for p in predictions:
        lines.append("\t".join([p.label, *[f"{p.probabilities[n]:.4f}" for n in labels], p.text]))
    return "\n".join(lines) + "\n"
