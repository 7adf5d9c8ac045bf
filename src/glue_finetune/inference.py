"""Predictions from a trained model: texts (single sentences or pairs) in, labels or scores out. No Lightning, no
Hydra.

One path serves the GLUE submission files written at the end of training, ``src/predict.py`` and
``src/evaluate.py``: texts tokenized once by ``encode`` (the data module tokenizes with it too), sorted by token
length (little padding), batched, on the GPU when there is one, in bf16 where the hardware computes it natively
(as training validates).
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from types import SimpleNamespace

import torch

from glue_finetune.errors import DataFormatError, UserError
from glue_finetune.hub import refuse_an_empty_tokenizer
from glue_finetune.logs import quiet_transformers
from glue_finetune.tasks import (IDENTIFY_ROWS, TASKS, TaskSpec, WrongTaskFile, another_tasks_file, glue_task_of,
                                 own_folder_beside, read_glue_file, text_lines, tsv_rows)

PRECISIONS = ("auto", "32", "bf16")
DEFAULT_MAX_LENGTH = 128  # data.max_length's default: a model from elsewhere was most likely trained with it


def encode(tokenizer, texts: list[list[str]], max_length: int) -> dict:
    """Token ids of one text column, or of a pair of columns (the second segment gets token_type_ids 1), truncated
    as the Hub's tokenizers truncate pairs (longest first); plus each row's length, for length-sorted batches.

    A pair's segment ids are asked for: transformers 5's tokenizers of ALBERT, XLNet, Funnel and others whose
    models embed segments leave them out unless asked, and their models would read both sentences as the first.
    (A model that takes none, such as DistilBERT, ignores them.)"""
    asked = {"return_token_type_ids": True} if len(texts) == 2 else {}
    encoded = dict(tokenizer(*texts, truncation=True, max_length=max_length, **asked))
    encoded["length"] = [len(ids) for ids in encoded["input_ids"]]
    return encoded


@dataclass
class Prediction:
    text: tuple[str, ...]
    label: str | None            # classification: the label's name; regression: None
    label_id: int | None
    score: float | None          # regression: the predicted score; classification: the label's probability
    probabilities: dict[str, float]


def overflowed_in_bf16(err: RuntimeError, model: torch.nn.Module, fix: str, running: str = "") -> UserError | None:
    """A model whose transformers code does not run in bf16 (DeBERTa's attention fills a bf16 tensor with float32's
    smallest value) fails in its forward with a bare "cannot be converted to type c10::BFloat16 without overflow":
    one message naming the model, how it ran (``running``) and the ``fix``. None for any other error."""
    if "BFloat16 without overflow" not in str(err):
        return None
    return UserError(f"{type(model).__name__} does not run in bf16{running}: its forward overflowed "
                     f"({str(err).strip().splitlines()[0]}). Fix: {fix}.")


def bf16_is_native(device: torch.device) -> bool:
    if device.type == "cuda":  # Ampere on; is_bf16_supported() is also true where bf16 is only emulated (V100, T4)
        return torch.cuda.get_device_capability(device) >= (8, 0)
    from glue_finetune.config import cpu_has_native_bf16

    return device.type == "cpu" and cpu_has_native_bf16()


@contextlib.contextmanager
def float32_matmul_precision(precision: str | None) -> Iterator[None]:
    """torch.set_float32_matmul_precision(precision) for a while (None: as it is), then back."""
    previous = torch.get_float32_matmul_precision()
    if precision:
        torch.set_float32_matmul_precision(precision)
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(previous)


def task_named(name: str) -> TaskSpec | None:
    """A task by this project's name (``sst2``) or GLUE's, as a config from elsewhere may record it (``SST-2``)."""
    return TASKS.get(name.lower().replace("-", ""))


TASK_CHOICES = [name for name in TASKS if name != "ax"]  # --task: AX is scored by an MNLI model


def recorded_where(source) -> str:
    return ("as the checkpoint records" if str(source).endswith(".ckpt")
            else "its config.json's finetuning_task")


def tasks_of_labels(config) -> list[TaskSpec]:
    """The tasks whose labels the model's config names, in their order (an exported model's id2label): SST-2's
    negative, positive; QNLI's and RTE's entailment, not_entailment alike."""
    outputs = getattr(config, "num_labels", 0)
    names = [str((getattr(config, "id2label", None) or {}).get(i, "")).lower() for i in range(outputs)]
    return [TASKS[name] for name in TASK_CHOICES if [label.lower() for label in TASKS[name].labels] == names]


def task_of(config, given: str | None = None, source: str | Path = "the model", warn: bool = True) -> TaskSpec:
    """The GLUE task a model was fine-tuned on: the one its exported config records (``finetuning_task``), or
    ``given`` (--task) for a model fine-tuned elsewhere, which records none. Checked against the model's outputs:
    their number, and the order of their label names where the config names them (a model from elsewhere may
    order MNLI's labels otherwise), so that no output is read as another label. ``warn``: of label names other
    than the task's, read in their order as its labels (once per model: not on a look before loading it)."""
    recorded_name = getattr(config, "finetuning_task", None)
    recorded = task_named(recorded_name) if recorded_name else None
    if given is not None:
        spec = task_named(given)
        if spec is None or spec.name not in TASK_CHOICES:
            raise UserError(f"--task {given}: not a task a model is fine-tuned on here"
                            + (" (AX is scored by an MNLI model: --task mnli)" if spec is not None else "")
                            + f"; the tasks: {', '.join(TASK_CHOICES)}")
        if recorded is not None and recorded.name != spec.name:
            raise UserError(f"{source} was fine-tuned on {recorded.glue_name} ({recorded_where(source)}), not "
                            f"{spec.glue_name}: leave out --task {given}")
    elif recorded is not None:
        spec = recorded
    elif recorded_name is None and (by_labels := tasks_of_labels(config)) and len(by_labels) == 1:
        spec = by_labels[0]  # this project's SST-2 models recorded no task before it trained others
    elif recorded_name:
        raise UserError(f"{source} was fine-tuned on {recorded_name!r} ({recorded_where(source)}), which "
                        f"is not a GLUE task here: if it is one, give it with --task ({', '.join(TASK_CHOICES)})")
    else:
        fits = tasks_of_labels(config)
        raise UserError(f"{source} records no GLUE task (its config.json has no finetuning_task)"
                        + (f", and its labels are those of {' and '.join(t.glue_name for t in fits)}" if fits else "")
                        + f": give its task, e.g. --task {(fits[0].name if fits else 'sst2')} (the tasks: "
                        f"{', '.join(TASK_CHOICES)})")
    outputs = getattr(config, "num_labels", spec.num_labels)
    if outputs != spec.num_labels:
        kind = "one score" if spec.is_regression else f"{spec.num_labels} labels ({', '.join(spec.labels)})"
        raise UserError(f"{source} has {outputs} output(s), and {spec.glue_name} takes {kind}: it is not a model "
                        f"of {spec.glue_name}" + ("" if given is None else f"; is --task {given} its task?"))
    names = [str((getattr(config, "id2label", None) or {}).get(i, f"LABEL_{i}")) for i in range(outputs)]
    if not spec.is_regression and names != [f"LABEL_{i}" for i in range(outputs)]:  # named, not the generic names
        ours = [label.lower() for label in spec.labels]
        theirs = [name.lower() for name in names]
        if theirs != ours and sorted(theirs) == sorted(ours):
            raise UserError(f"{source} orders its labels {', '.join(names)} (config.json's id2label); "
                            f"{spec.glue_name}'s order here is {', '.join(spec.labels)}, so its outputs would be read "
                            "as other labels. Its predictions are its own pipeline's: transformers.pipeline(model=...)")
        if theirs != ours and warn:
            import logging

            logging.getLogger(__name__).warning(
                "%s names its labels %s (config.json's id2label); they are read, in that order, as %s's %s.",
                source, ", ".join(names), spec.glue_name, ", ".join(spec.labels))
    return spec


def devices_here() -> list[str]:
    """The devices this machine and this torch build can run on, as --device takes them."""
    here = ["cpu"]
    if torch.cuda.is_available():
        count = torch.cuda.device_count()
        here += ["cuda", *(f"cuda:{i}" for i in range(count))] if count <= 4 else ["cuda", f"cuda:0 ... cuda:{count - 1}"]
    if torch.backends.mps.is_available():
        here.append("mps")
    return here


def torch_device(name: str | None) -> torch.device:
    """``name`` (cpu, cuda, cuda:1, mps), checked against what is here, or by default the GPU when there is one,
    else the CPU. A device that is not here is one UserError saying what is, not torch's AssertionError or
    RuntimeError when the model is moved."""
    if not name:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    here = ", ".join(devices_here())
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise UserError(f"--device {name}: not a device name; the devices here: {here}") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            why = ("this torch has no CUDA (a CPU-only build)" if not torch.backends.cuda.is_built()
                   else "no CUDA GPU is visible here (driver, CUDA_VISIBLE_DEVICES?)")
            raise UserError(f"--device {name}: {why}; use --device cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise UserError(f"--device {name}: there are {torch.cuda.device_count()} GPU(s) here; the devices "
                            f"here: {here}")
    elif device.type == "mps":
        if not torch.backends.mps.is_available():
            raise UserError(f"--device {name}: no Apple GPU (MPS) here; the devices here: {here}")
    elif device.type != "cpu":
        raise UserError(f"--device {name}: not supported; the devices here: {here}")
    return device


def positions_of(model: torch.nn.Module) -> int | None:
    """How many tokens a sentence may have for ``model``'s learned positions: its position embeddings' rows, less
    the ones RoBERTa's kind skips (positions count from its padding id + 1: 514 rows, 512 tokens); None for a model
    without them (DeBERTa-v2's relative positions)."""
    table = next((module for name, module in model.named_modules()
                  if name.endswith("position_embeddings") and isinstance(module, torch.nn.Embedding)), None)
    if table is None:
        return None
    return table.num_embeddings - (table.padding_idx + 1 if table.padding_idx is not None else 0)


class Predictor:
    """A Hugging Face sequence classifier (or regressor) in eval mode, fed length-sorted batches.

    ``precision``: "32", "bf16" (autocast), or "auto": bf16 where the device computes it natively (GPUs with
    bf16, CPUs with AMX / AVX512-BF16), else float32. ``task`` defaults to the one the model records; a task's
    name (--task) is checked against the model's outputs (``task_of``).
    """

    def __init__(self, model, tokenizer, batch_size: int = 64, max_length: int = DEFAULT_MAX_LENGTH,
                 device: str | None = None,
                 precision: str = "auto", task: TaskSpec | str | None = None, matmul_precision: str | None = None):
        if precision not in PRECISIONS:
            raise UserError(f"precision={precision!r}: use one of {', '.join(PRECISIONS)}")
        if batch_size < 1:
            raise UserError(f"batch size {batch_size} must be >= 1")
        if not 1 <= max_length <= 512:
            raise UserError(f"max length {max_length} must be between 1 and 512 (BERT's positions)")
        positions = positions_of(model)
        if positions is not None and max_length > positions:
            raise UserError(f"--max-length {max_length}: this model has positions for {positions} tokens, and a "
                            f"longer sentence would index past them. Fix: --max-length {positions} or less.")
        self.device = torch_device(device)
        self.model = model.to(self.device).eval()
        self.tokenizer = tokenizer
        self.spec = task if isinstance(task, TaskSpec) else task_of(model.config, task)
        self.labels = list(self.spec.labels)
        self.batch_size = batch_size
        self.max_length = max_length
        self.bf16 = precision == "bf16" or (precision == "auto" and bf16_is_native(self.device))
        self.matmul_precision = matmul_precision  # torch.set_float32_matmul_precision while it runs; None: as set

    @classmethod
    def load(cls, source: str | Path, max_length: int | None = None, task: str | None = None, **kwargs) -> Predictor:
        """From a run dir (its exported ``model/``), an exported model dir, or a Lightning checkpoint (``.ckpt``).
        ``max_length`` None: the length the model was trained with, where its run records it (else 128, or the
        model's positions where fewer); longer than its positions is refused. ``task``: the task of
        a model that records none (--task)."""
        model, tokenizer = load_classifier(Path(source))
        task = task_of(model.config, task, source)
        if max_length is None:
            max_length = trained_max_length(Path(source))
            # A model from elsewhere records none (128 then), and may have positions for fewer tokens than that
            max_length = min(max_length, positions_of(model) or max_length)
        if kwargs.get("precision", "auto") == "auto" and trained_in_float32(Path(source)):
            kwargs["precision"] = "32"  # as the run's validation scored it: its selected/val/* exactly
            # ... with its float32 matrix multiplications (TF32 on a GPU, the run's default: matmul_precision=high)
            kwargs.setdefault("matmul_precision", recorded_settings(Path(source)).get("matmul_precision"))
        return cls(model, tokenizer, max_length=max_length, task=task, **kwargs)

    @torch.inference_mode()
    def logits(self, encoded: dict) -> torch.Tensor:
        """The model's outputs (float32, on the CPU), one row per encoded text, in the order given."""
        input_ids = encoded["input_ids"]
        segments = encoded.get("token_type_ids")
        # Longest first: batches of similar lengths carry little padding, and running out of memory shows at once.
        order = sorted(range(len(input_ids)), key=lambda i: -len(input_ids[i]))
        out = torch.empty(len(input_ids), self.spec.num_labels)
        with float32_matmul_precision(self.matmul_precision):
            for start in range(0, len(order), self.batch_size):
                batch = order[start : start + self.batch_size]
                features = {"input_ids": [input_ids[i] for i in batch]}
                if segments is not None:
                    features["token_type_ids"] = [segments[i] for i in batch]
                inputs = self.tokenizer.pad(features, return_tensors="pt")
                inputs = {k: v.to(self.device, non_blocking=True) for k, v in inputs.items()}
                with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
                    try:
                        logits = self.model(**inputs).logits
                    except RuntimeError as err:
                        overflow = overflowed_in_bf16(err, self.model, "--precision 32 (predict.py, evaluate.py; "
                                                      "Predictor(precision='32'))") if self.bf16 else None
                        if overflow is None:
                            raise
                        raise overflow from None
                out[batch] = logits.float().cpu()
        return out

    def encode(self, texts: list[tuple[str, ...]]) -> dict:
        columns = [list(column) for column in zip(*texts)]
        if len(columns) != len(self.spec.text):
            raise UserError(f"{self.spec.glue_name} takes {'pairs of sentences' if self.spec.is_pair else 'single sentences'}"
                            f", got {len(columns)} text(s) per example")
        return encode(self.tokenizer, columns, self.max_length)

    def predict_encoded(self, encoded: dict) -> list[int | float]:
        """Label ids, or scores for a regression task, of texts already encoded (the data module's test splits)."""
        from glue_finetune.metrics import predictions

        return predictions(self.spec, self.logits(encoded)).tolist()

    def predict(self, texts: list[tuple[str, ...]]) -> list[Prediction]:
        logits = self.logits(self.encode(texts))
        if self.spec.is_regression:
            return [Prediction(text, None, None, float(score), {}) for text, score in zip(texts, logits[:, 0])]
        probs = logits.softmax(-1)
        ids = probs.argmax(-1).tolist()
        return [Prediction(text, self.labels[i], i, float(p[i]), dict(zip(self.labels, p.tolist())))
                for text, i, p in zip(texts, ids, probs)]

    def evaluate(self, texts: list[tuple[str, ...]], labels: list[int | float]) -> dict[str, float]:
        """The task's metrics and the loss, computed as training's validation computes them."""
        from glue_finetune import metrics

        logits = self.logits(self.encode(texts))
        target = torch.tensor(labels, dtype=torch.float32 if self.spec.is_regression else torch.long)
        collection = metrics.task_metrics(self.spec)
        scores = {key: float(value) for key, value in
                  collection(metrics.predictions(self.spec, logits), target).items()}
        return {"loss": float(metrics.loss(self.spec, logits, target)), **scores, "examples": len(texts)}


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


def trained_max_length(source: Path) -> int:
    """The truncation length ``source`` was trained with, so that a model is scored on its inputs as validation
    saw them: a checkpoint records its data module's ``max_length``; a run dir, or a model or checkpoint inside
    one, its config (``data.max_length``). An exported model moved out of its run records none: 128."""
    import yaml

    if source.is_file():
        try:
            checkpoint = torch.load(source, map_location="cpu", weights_only=True, mmap=True)
            return int(checkpoint["datamodule_hyper_parameters"]["max_length"])
        except Exception:  # not readable here: load_classifier reports it; no data module's record: the run's
            pass
    run_dir = run_dir_of(source)
    if run_dir is None:
        return DEFAULT_MAX_LENGTH
    data = (yaml.safe_load((run_dir / ".hydra" / "config.yaml").read_text()) or {}).get("data") or {}
    return int(data.get("max_length") or DEFAULT_MAX_LENGTH)


def recorded_settings(source: Path) -> dict:
    """The resolved config of the run ``source`` comes from (its ``hparams.yaml``); empty where no run records it."""
    import yaml

    run_dir = run_dir_of(source)
    try:
        recorded = yaml.safe_load((run_dir / "hparams.yaml").read_text()) if run_dir else None
    except (OSError, yaml.YAMLError):
        return {}
    return recorded if isinstance(recorded, dict) else {}


def trained_in_float32(source: Path) -> bool:
    """Whether the run ``source`` comes from trained and validated in float32 (``trainer.precision``); False where
    no run records it."""
    trainer = recorded_settings(source).get("trainer")
    return isinstance(trainer, dict) and str(trainer.get("precision", "")).startswith("32")


def model_task(source: Path, given: str | None = None) -> TaskSpec | None:
    """The task ``source`` (run dir, exported model dir or checkpoint) was fine-tuned on, read without loading the
    model, so that its data can be checked first; ``given`` (--task) where it records none; None where it cannot
    be read (loading the model says why)."""
    import json

    try:
        if source.is_file():
            checkpoint = torch.load(source, map_location="cpu", weights_only=True, mmap=True)
            return TASKS.get(checkpoint["hyper_parameters"].get("task", "sst2"))
        config = json.loads((resolve_model_dir(source) / "config.json").read_text())
        labels = {int(i): name for i, name in (config.get("id2label") or {}).items()}
        return task_of(SimpleNamespace(finetuning_task=config.get("finetuning_task"), id2label=labels,
                                       num_labels=config.get("num_labels", len(labels) or 2)),
                       given, source, warn=False)
    except Exception:
        return None


def run_dir_of(model: Path) -> Path | None:
    """The run dir a model comes from: the dir itself, the parent of its ``model/`` or of its ``checkpoints/``."""
    for candidate in (model, model.parent, model.parent.parent):
        if (candidate / ".hydra" / "config.yaml").is_file():
            return candidate
    return None


def load_classifier(source: Path):
    """(model, tokenizer) from a run dir, an exported model dir or a Lightning checkpoint of this project."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    if not source.exists():
        raise UserError(f"{source}: no such file or directory")
    if source.is_file():
        return load_checkpoint(source)
    model_dir = resolve_model_dir(source)
    with quiet_transformers():
        try:
            model, loading = AutoModelForSequenceClassification.from_pretrained(model_dir, output_loading_info=True)
            tokenizer = AutoTokenizer.from_pretrained(model_dir)
        except (OSError, ValueError, KeyError) as err:  # no weights, an unknown model type, a broken config
            reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise UserError(f"{model_dir}: not a complete Hugging Face model dir ({reason}). A run's exported model/ "
                            "holds config.json, the weights (model.safetensors) and the tokenizer's files.") from None
    if untrained := loading["missing_keys"]:  # transformers would initialise them at random, with a warning
        raise UserError(
            f"{model_dir} holds no trained classifier: its weights lack {', '.join(sorted(untrained)[:4])}"
            f"{' ...' if len(untrained) > 4 else ''}, which would be random. A pretrained model is fine-tuned first: "
            f"python src/train.py model.name_or_path={model_dir}")
    refuse_an_empty_tokenizer(tokenizer, model_dir)
    return model, tokenizer


def load_checkpoint(path: Path):
    """A Lightning checkpoint's weights in the architecture it was trained with: the run's exported config and
    tokenizer when the checkpoint sits in a finished run dir, else the base model's (``name_or_path`` as saved
    in the checkpoint: a local dir, or a Hub id fetched or taken from the cache)."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from glue_finetune.hub import fetching
    from glue_finetune.model import head_config

    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        hparams, state = checkpoint["hyper_parameters"], checkpoint["state_dict"]
    except Exception as err:  # pickle, zip and key errors alike: not a checkpoint of this project
        raise UserError(f"{path}: not a Lightning checkpoint of this project ({type(err).__name__}: {err})") from err
    exported = path.parent.parent / "model"
    source = exported if (exported / "config.json").is_file() else hparams["name_or_path"]
    spec = TASKS[hparams.get("task", "sst2")]
    # A bare checkpoint holds weights only: away from its run dir, its config and tokenizer come from the base model.
    hint = None if isinstance(source, Path) else (
        f"This checkpoint holds the weights only; its config and tokenizer come from its base model {source!r}. "
        "Without network access, give the run dir it was saved in (or that run's model/ dir) instead, or keep the "
        "checkpoint in its run's checkpoints/ folder.")
    with fetching(f"the config and tokenizer of {source}", str(source), hint), quiet_transformers():
        config = head_config(source, spec)
        tokenizer = AutoTokenizer.from_pretrained(source)
    refuse_an_empty_tokenizer(tokenizer, source)
    model = AutoModelForSequenceClassification.from_config(config)
    model.load_state_dict({k.removeprefix("model."): v for k, v in state.items() if k.startswith("model.")})
    return model, tokenizer


# -- files ----------------------------------------------------------------------------------------------------------
def readable_file(path: Path, option: str = "") -> Path:
    """``path``, checked to be a file that can be read: a directory (a task's folder of GLUE files) or a missing
    file is a UserError saying so, not the IsADirectoryError or FileNotFoundError of the first read. ``option``
    (--input, ...): the command-line option that gave the path, to name in the message."""
    named = f"{option} {path}" if option else str(path)
    if path.is_dir():
        files = sorted(p.name for p in path.glob("*.tsv"))
        hint = f"give one of its files ({', '.join(files)})" if files else "give a file"
        example = f"{option} " * bool(option) + str(path / (files[0] if files else "dev.tsv"))
        raise UserError(f"{named} is a directory, not a file: {hint}, e.g. {example}")
    if not path.is_file():
        raise UserError(f"{named}: no such file")
    if not os.access(path, os.R_OK):
        raise UserError(f"{named}: not readable (permission denied)")
    return path


def read_lines(path: Path) -> list[str]:
    readable_file(path)
    try:
        return text_lines(path.read_text(encoding="utf-8-sig"))  # -sig: a UTF-8 byte-order mark is not text
    except UnicodeDecodeError as err:
        raise UserError(f"{path}: not valid UTF-8 ({err.reason} at byte {err.start})") from err


def read_tsv(path: Path, columns: list[str]) -> dict[str, list[str]]:
    """The named columns of a TSV file with a header line (tab-separated, no quoting)."""
    lines = read_lines(path)
    if not lines:
        raise UserError(f"{path}: the file is empty (expected a header line naming the columns "
                        f"{', '.join(columns)})")
    header = lines[0].split("\t")
    if missing := [c for c in columns if c not in header]:
        commas = "\t" not in lines[0] and "," in lines[0]
        raise UserError(f"{path}:1: header {lines[0]!r} has no {', '.join(repr(c) for c in missing)} column"
                        + ("; this file reads as comma-separated: give a tab-separated file (GLUE's .tsv format)"
                           if commas else ""))
    table: dict[str, list[str]] = {c: [] for c in columns}
    for lineno, fields in enumerate(tsv_rows(lines[1:]), start=2):
        if not fields:
            raise UserError(f"{path}:{lineno}: the line is blank; every line after the header holds a row: delete it")
        if len(fields) != len(header):
            raise UserError(f"{path}:{lineno}: expected {len(header)} tab-separated fields, found {len(fields)}")
        for c in columns:
            table[c].append(fields[header.index(c)])
    if not table[columns[0]]:
        raise UserError(f"{path}: no data rows after the header")
    return table


def read_glue_format(path: Path, spec: TaskSpec, splits: list[str]) -> dict[str, list] | None:
    """The file read as one of the task's own GLUE files (e.g. MRPC's ``#1 String``/``#2 String``, CoLA's
    headerless dev.tsv), or None when its first line fits none of them."""
    for split in splits:
        try:
            return read_glue_file(path, spec, split)
        except WrongTaskFile:  # not the task's format: read_labelled refuses it; texts to predict are read as such
            continue
        except DataFormatError as err:
            if ":1:" not in str(err):  # the right format, with a bad row: that is the message to give
                raise UserError(str(err)) from err
    return None


def read_texts(path: Path, spec: TaskSpec) -> list[tuple[str, ...]]:
    """Texts to predict: a .tsv file is one of the task's GLUE files or has a header naming its text columns
    (the Hub's names: ``sentence``; ``sentence1``/``sentence2``, ...); any other file has one example a line, the
    two sentences of a pair separated by a tab (blank lines skipped)."""
    readable_file(path)
    if path.suffix == ".tsv":
        table = read_glue_format(path, spec, [*spec.test_splits, *spec.dev_splits])
        if table is None:
            try:
                table = read_tsv(path, list(spec.text))
            except UserError:  # whose file it is says more than the columns it lacks
                refuse_another_tasks_file(path, spec, "--input")
                raise
            refuse_texts_of_another_task(path, spec)
        return list(zip(*(table[c] for c in spec.text)))
    return texts_from_lines(read_lines(path), spec, str(path))


def texts_from_lines(lines: list[str], spec: TaskSpec, source: str) -> list[tuple[str, ...]]:
    """One example a line (blank lines skipped); a pair's two sentences separated by a tab. A table (a header line
    naming the task's text columns, as a .tsv or .csv has) is refused: its header would be classified, and its
    other columns joined to the text."""
    first = next((line for line in lines if line.strip()), "")
    columns = [c.strip().strip('"') for c in first.split("\t" if "\t" in first else ",")]
    if len(columns) > 1 and set(spec.text) <= set(columns):
        where = f"{source}:1" if source != "standard input" else source
        kind = ("tab-separated: save it as a .tsv" if "\t" in first else
                "comma-separated: save it as a .tsv (tab-separated)")
        raise UserError(f"{where}: this is a table whose header names the columns {', '.join(columns)}, not one "
                        f"example a line; it is {kind} and give it with --input, which reads its "
                        f"{', '.join(spec.text)} column(s)")
    texts = []
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        fields = tuple(line.split("\t")) if spec.is_pair else (line,)
        if len(fields) != len(spec.text):
            raise UserError(f"{source}:{lineno}: {spec.glue_name} takes a pair a line, two sentences separated by "
                            f"a tab; found {len(fields)} field(s)")
        texts.append(fields)
    if not texts:
        raise UserError(f"{source}: no sentences to classify")
    return texts


def refuse_another_tasks_file(path: Path, spec: TaskSpec, option: str = "--data") -> None:
    """A UserError where ``path`` is another GLUE task's file (``tasks.glue_task_of``), which the generic reader
    would otherwise score: CoLA's 0/1 labels as SST-2's, WNLI's as STS-B scores. SST-2's header (sentence, label) is
    also the generic one of a single-sentence model's own files: a CoLA model refuses it only in SST-2's folder."""
    lines = read_lines(path)[: IDENTIFY_ROWS + 1]
    rows = tsv_rows(lines)
    other = glue_task_of(rows)
    if other is None or other.name == spec.name:
        return
    if set(rows[0]) == {*spec.text, "label"} and path.absolute().parent.name.lower() not in (
            other.glue_name.lower(), other.name):
        return
    raise UserError(another_tasks_file(path, spec, other, option))


def refuse_texts_of_another_task(path: Path, spec: TaskSpec) -> None:
    """A UserError where a file whose header names the model's text columns is another GLUE task's own file, which
    the reader by columns would predict as this task's texts: STS-B's test.tsv holds sentence1 and sentence2 (an
    MRPC or RTE model would label its pairs), RTE's and WNLI's hold index, sentence1, sentence2. A header of the
    model's columns only (index, label aside) is also a user's own file's: refused only in that task's folder."""
    header = (tsv_rows(read_lines(path)[:1]) or [[]])[0]
    owners = [t for t in TASKS.values() if t.name != spec.name and not t.train_with
              and any(f.header and f.exact and list(f.header) == header for f in t.files.values())]
    if not owners:
        return
    folder = path.absolute().parent.name.lower()
    in_theirs = [t for t in owners if folder in (t.glue_name.lower(), t.name)]
    if set(header) <= {*spec.text, "index", "idx", "label"} and not in_theirs:
        return
    owners = in_theirs or owners  # RTE's folder: RTE's file, not WNLI's of the same header
    if len(owners) == 1:
        raise UserError(another_tasks_file(path, spec, owners[0], "--input"))
    example = own_folder_beside(path, spec) / spec.file_names[(spec.test_splits or spec.dev_splits)[0]]
    raise UserError(f"--input {path}: this is {' or '.join(t.glue_name + chr(39) + 's' for t in owners)} "
                    f"{path.name}; the model is {spec.glue_name}'s (data={spec.name}): give {spec.glue_name}'s "
                    f"texts, e.g. --input {example}")


def read_labelled(path: Path, spec: TaskSpec) -> tuple[list[tuple[str, ...]], list[int | float]]:
    """Texts and labels of a labelled file: one of the task's GLUE dev/train files, or a TSV whose header names its
    text columns and ``label`` (an id, a label name, or a score for STS-B)."""
    from glue_finetune.tasks import parse_label

    readable_file(path)
    refuse_another_tasks_file(path, spec)
    try:
        table = read_glue_format(path, spec, [*spec.dev_splits, "train"] if "train" in spec.files else spec.dev_splits)
    except UserError:  # the task's GLUE format, with a bad row
        # SST-2's GLUE header (sentence, label) is also the generic one: a file of one's own with label names
        # (negative/positive) is read as such, and a GLUE file's bad row is reported by the generic reader below.
        if read_lines(path)[:1] != ["\t".join([*spec.text, "label"])]:  # [:1]: an empty file has no header
            raise
        table = None
    if table is None and spec.test_splits and read_glue_format(path, spec, spec.test_splits) is not None:
        raise UserError(f"{path} is {spec.glue_name}'s test file, which has no labels to score against (GLUE keeps "
                        "them). To predict it: python src/predict.py <run dir> --input " + str(path))
    if table is None:
        raw = read_tsv(path, [*spec.text, "label"])
        as_ids = replace(spec, label_strings=False)
        labels = []
        for lineno, value in enumerate(raw["label"], start=2):
            try:
                labels.append(spec.labels.index(value) if value in spec.labels else parse_label(value, as_ids, ""))
            except DataFormatError as err:
                if spec.is_regression:  # "score must be a number from 0 to 5, found '7'"
                    raise UserError(f"{path}:{lineno}{err}") from None
                wanted = ", ".join(f"{i}/{n}" for i, n in enumerate(spec.labels))
                raise UserError(f"{path}:{lineno}: label {value!r} is not one of the model's labels ({wanted})") from None
        table = {**raw, "label": labels}
    return list(zip(*(table[c] for c in spec.text))), table["label"]


def format_predictions(predictions: list[Prediction], spec: TaskSpec) -> str:
    """TSV: one line per example, in input order: the label and one probability per label (or the score, clipped
    to the task's range as GLUE's submission file has it: STS-B's 0 to 5), then the text column(s), a tab or line
    break within a text written as a space (a row keeps its columns)."""
    def texts(p: Prediction) -> list[str]:
        return [" ".join(t.replace("\t", " ").splitlines()) for t in p.text]

    if spec.is_regression:
        low, high = spec.score_range or (-math.inf, math.inf)
        lines = ["\t".join(["score", *spec.text])]
        lines += ["\t".join([f"{min(max(p.score, low), high):.4f}", *texts(p)]) for p in predictions]
    else:
        lines = ["\t".join(["label", *[f"p_{name}" for name in spec.labels], *spec.text])]
        lines += ["\t".join([p.label, *[f"{p.probabilities[n]:.4f}" for n in spec.labels], *texts(p)])
                  for p in predictions]
    return "\n".join(lines) + "\n"
