"""SST-2 as a LightningDataModule: load (Hub or local GLUE TSVs) → validate → tokenize once (cached) → batch.

GLUE's test split has no labels, so ``test_dataloader`` serves the labelled dev set (used to score the best
checkpoint); the unlabelled test sentences go to the exported model for the submission file.
"""

from __future__ import annotations

import csv
import logging
import math
import warnings
from pathlib import Path

import datasets
import lightning as L
import torch
from torch.utils.data import DataLoader
from transformers import AutoTokenizer, DataCollatorWithPadding, PreTrainedTokenizerBase
from torch.utils.data import Sampler
from transformers.trainer_pt_utils import get_length_grouped_indices

from glue_finetune.errors import DataFormatError
from glue_finetune.hub import fetching
from glue_finetune.logs import no_datasets_progress_bars

log = logging.getLogger(__name__)

LABEL_NAMES = ["negative", "positive"]
# GLUE file name, column header and the split name datasets uses for it.
GLUE_FILES = {
    "train": ("train.tsv", ["sentence", "label"]),
    "validation": ("dev.tsv", ["sentence", "label"]),
    "test": ("test.tsv", ["index", "sentence"]),
}
MODEL_INPUTS = ["input_ids", "attention_mask", "token_type_ids"]


def check_glue_tsv(path: Path, header: list[str]) -> int:
    """Check a GLUE TSV row by row and return its number of data rows.

    Raises DataFormatError naming the file, the line and the problem: not UTF-8, empty, wrong header, wrong
    number of tab-separated fields, a label other than 0/1, an index that is not an integer.
    """
    expected = "\t".join(header)
    rows = 0
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, start=1):
            try:
                line = raw.decode("utf-8").rstrip("\r\n")
            except UnicodeDecodeError as err:
                raise DataFormatError(f"{path}:{lineno}: not valid UTF-8 ({err.reason} at byte {err.start})") from err
            fields = line.split("\t")
            if lineno == 1:
                if fields != header:
                    raise DataFormatError(f"{path}:1: header is {line!r}, expected {expected!r} (GLUE SST-2 format)")
                continue
            if len(fields) != len(header):
                raise DataFormatError(
                    f"{path}:{lineno}: expected {len(header)} tab-separated fields ({', '.join(header)}), "
                    f"found {len(fields)}"
                )
            row = dict(zip(header, fields))
            if "label" in row and row["label"] not in ("0", "1"):
                raise DataFormatError(f"{path}:{lineno}: label must be 0 or 1, found {row['label']!r}")
            if "index" in row and not row["index"].isdigit():
                raise DataFormatError(f"{path}:{lineno}: index must be a non-negative integer, found {row['index']!r}")
            rows += 1
    if path.stat().st_size == 0:
        raise DataFormatError(f"{path}: the file is empty (expected a header line {expected!r} and data rows)")
    if rows == 0:
        raise DataFormatError(f"{path}: no data rows (expected a header line {expected!r} and at least one row)")
    return rows


def load_glue_tsv(path: Path, split: str) -> datasets.Dataset:
    """One GLUE TSV as a Dataset with the Hub's columns (sentence, label, idx), cached as Arrow by datasets."""
    _, header = GLUE_FILES[split]
    check_glue_tsv(path, header)
    features = {"sentence": datasets.Value("string")}
    if "label" in header:
        features["label"] = datasets.ClassLabel(names=LABEL_NAMES)
    else:
        features["index"] = datasets.Value("int64")
    ds = datasets.load_dataset(
        "csv",
        data_files=str(path),
        split="train",  # datasets' name for the single split of a data file
        delimiter="\t",
        quoting=csv.QUOTE_NONE,  # GLUE TSVs are not quoted: a '"' is part of the sentence
        keep_default_na=False,  # a sentence reading "null" or "nan" stays a string
        features=datasets.Features({name: features[name] for name in header}),
    )
    if "index" in header:
        return ds.rename_column("index", "idx").add_column("label", [-1] * len(ds))
    return ds.add_column("idx", list(range(len(ds))))


# Part of the tokenization cache key. datasets hashes a function of an installed package by its name, not its
# code, so a change to what _tokenize returns must bump this, or older cached results would be reused.
TOKENIZED_FORMAT = 2


class EpochSeededSampler(Sampler[int]):
    """A random order of the training set that is a function of (seed, epoch) alone.

    Lightning calls ``set_epoch`` at the start of every epoch (also after resuming from a checkpoint), so a
    resumed run draws the same order for each epoch as an uninterrupted one; torch's RandomSampler and
    transformers' LengthGroupedSampler draw from the global RNG instead, whose state a restart does not restore.
    With ``group_by_length``, the order is transformers' length-grouped one: random megabatches of 50 batches,
    each sorted by length, so batches hold sentences of similar lengths.
    """

    def __init__(self, lengths: list[int], batch_size: int, seed: int, group_by_length: bool = True):
        self.lengths, self.batch_size, self.seed, self.group_by_length = lengths, batch_size, seed, group_by_length
        self.epoch, self.skip = 0, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def resume(self, epoch: int, samples_done: int) -> None:
        """Continue ``epoch`` after its first ``samples_done`` samples (once: the next epoch starts at 0)."""
        self.epoch, self.skip = epoch, samples_done

    def __len__(self) -> int:  # the whole epoch, also when resuming: Lightning counts the skipped batches as done
        return len(self.lengths)

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        if self.group_by_length:
            order = get_length_grouped_indices(self.lengths, self.batch_size, generator=generator)
        else:
            order = torch.randperm(len(self.lengths), generator=generator).tolist()
        skip, self.skip = self.skip, 0
        return iter(order[skip:])


def _tokenize(batch: dict, tokenizer: PreTrainedTokenizerBase, max_length: int, format_version: int) -> dict:
    encoded = tokenizer(batch["sentence"], truncation=True, max_length=max_length)
    encoded["length"] = [len(ids) for ids in encoded["input_ids"]]  # for length-grouped / length-sorted batches
    return encoded


class SST2DataModule(L.LightningDataModule):
    """GLUE SST-2: train on ``train``, validate on ``validation`` (872 sentences), predict ``test`` (no labels)."""

    def __init__(
        self,
        tokenizer: str,
        task: str = "sst2",
        hub_dataset: str = "nyu-mll/glue",
        local_dir: str | None = None,
        max_length: int = 128,
        batch_size: int = 16,
        eval_batch_size: int = 8,
        max_train_samples: int | None = None,
        group_by_length: bool = True,
        sort_eval_by_length: bool = True,
        pad_to_multiple_of: int | None = None,
        num_workers: int = 0,
        pin_memory: bool | None = None,
        seed: int = 42,
    ):
        super().__init__()
        self.save_hyperparameters(logger=False)
        self.tokenizer_name = tokenizer
        self.task = task
        self.hub_dataset = hub_dataset
        self.local_dir = Path(local_dir).expanduser() if local_dir else None
        self.max_length = max_length
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        self.max_train_samples = max_train_samples
        self.group_by_length = group_by_length
        self.sort_eval_by_length = sort_eval_by_length
        self.pad_to_multiple_of = pad_to_multiple_of
        self.num_workers = num_workers
        self.pin_memory = torch.cuda.is_available() if pin_memory is None else pin_memory
        self.seed = seed
        self.tokenizer: PreTrainedTokenizerBase | None = None
        self.splits: datasets.DatasetDict | None = None
        self.raw: datasets.DatasetDict | None = None
        self.resume_position: dict | None = None  # from a checkpoint: see state_dict

    # -- loading ---------------------------------------------------------------------------------------------
    def load_raw(self) -> datasets.DatasetDict:
        """The text splits, from ``local_dir`` if set, else from the Hub (or its local cache)."""
        if self.local_dir is not None:
            splits = {}
            for split, (filename, _) in GLUE_FILES.items():
                path = self.local_dir / filename
                if path.exists():
                    splits[split] = load_glue_tsv(path, split)
                elif split != "test":
                    raise DataFormatError(f"{path} does not exist: data.local_dir must hold GLUE's train.tsv and dev.tsv")
                else:
                    log.warning("%s does not exist: no test-set predictions will be written.", path)
            raw = datasets.DatasetDict(splits)
        else:
            with fetching(f"dataset {self.hub_dataset!r} ({self.task}) from the Hugging Face Hub"):
                raw = datasets.load_dataset(self.hub_dataset, self.task)
        if self.max_train_samples is not None:
            raw["train"] = raw["train"].select(range(min(self.max_train_samples, len(raw["train"]))))
        return raw

    def load_tokenizer(self) -> PreTrainedTokenizerBase:
        with fetching(f"the tokenizer of {self.tokenizer_name!r}"):
            return AutoTokenizer.from_pretrained(self.tokenizer_name)

    def tokenized(self) -> datasets.DatasetDict:
        """Token ids for every split. ``datasets.map`` caches them on disk by fingerprint (data + tokenizer +
        max_length), so only the first run with a given setting tokenizes."""
        self.tokenizer = self.tokenizer or self.load_tokenizer()
        with no_datasets_progress_bars():  # seconds the first time, nothing once cached
            raw = self.load_raw()
            tokenized = raw.map(
                _tokenize,
                batched=True,
                fn_kwargs={"tokenizer": self.tokenizer, "max_length": self.max_length,
                           "format_version": TOKENIZED_FORMAT},
                remove_columns=["sentence"],
            )
        self.raw = raw  # the text, for the test-set predictions
        return tokenized.rename_column("label", "labels")

    # -- Lightning hooks -------------------------------------------------------------------------------------
    def prepare_data(self) -> None:
        # Download, check and tokenize (Lightning runs this on one process per node). Other processes' setup()
        # then reads datasets' cache; calling it again here (train() calls it early, then fit does) is a no-op.
        self.setup()

    def setup(self, stage: str | None = None) -> None:
        if self.splits is None:
            self.splits = self.tokenized()

    def _loader(self, split: str, batch_size: int, columns: list[str], sampler) -> DataLoader:
        assert self.splits is not None and self.tokenizer is not None, "call setup() first"
        ds = self.splits[split]
        ds = ds.select_columns([c for c in columns if c in ds.column_names])
        return DataLoader(
            ds,
            batch_size=batch_size,
            sampler=sampler,
            # Pads each batch to its own longest sentence (SST-2 averages ~13 tokens, not max_length), rounded up
            # to pad_to_multiple_of if set: few distinct shapes for torch.compile / CUDA graphs to reuse.
            collate_fn=DataCollatorWithPadding(self.tokenizer, pad_to_multiple_of=self.pad_to_multiple_of),
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            pin_memory=self.pin_memory,
        )

    def _eval_order(self, split: str) -> list[int] | None:
        """Longest sentences first: batches of similar lengths carry little padding, and an out-of-memory error
        shows on the first batch. Metrics and predictions do not depend on the order."""
        if not self.sort_eval_by_length:
            return None
        lengths = self.splits[split]["length"]
        return sorted(range(len(lengths)), key=lambda i: -lengths[i])

    def train_dataloader(self) -> DataLoader:
        # Length-grouped batches carry ~4 % padding on SST-2 instead of ~2.6x with plain shuffling.
        sampler = EpochSeededSampler(self.splits["train"]["length"], self.batch_size, self.seed, self.group_by_length)
        if self.resume_position:
            self._resume(sampler, **self.resume_position)
            self.resume_position = None
        return self._loader("train", self.batch_size, MODEL_INPUTS + ["labels"], sampler)

    # -- resuming in the middle of an epoch --------------------------------------------------------------------
    # Lightning saves this module's state_dict in checkpoints and restores it before it builds the training loader,
    # so a resumed run's first batch is the one the interrupted run would have trained on next. (Lightning's own
    # route, a stateful DataLoader, loads its state only after Lightning has already built the loader and fetched
    # a batch from it to count the steps for the learning-rate schedule.)
    def state_dict(self) -> dict:
        trainer = self.trainer
        if trainer is None or trainer.state.fn != "fit":
            return {}
        return {"epoch": trainer.current_epoch, "batches_done": trainer.fit_loop.epoch_loop.batch_progress.current.processed}

    def load_state_dict(self, state: dict) -> None:
        self.resume_position = dict(state) if state else None
        # Lightning warns that a plain DataLoader cannot resume mid-epoch; this module restores the position itself.
        warnings.filterwarnings("ignore", message="You're resuming from a checkpoint that ended before the epoch ended")

    def _resume(self, sampler: EpochSeededSampler, epoch: int, batches_done: int) -> None:
        batches = math.ceil(len(sampler) / self.batch_size)
        if batches_done >= batches:  # saved at the end of an epoch: the next one starts from its beginning
            epoch, batches_done = epoch + 1, 0
        if batches_done and self.trainer is not None and self.trainer.world_size > 1:
            log.warning("Resuming in the middle of epoch %d on %d devices: the epoch restarts from its first batch "
                        "(the exact position is restored on one device only).", epoch, self.trainer.world_size)
            batches_done = 0
        sampler.resume(epoch, batches_done * self.batch_size)

    def val_dataloader(self) -> DataLoader:
        return self._loader("validation", self.eval_batch_size, MODEL_INPUTS + ["labels"], self._eval_order("validation"))

    def test_dataloader(self) -> DataLoader:
        # GLUE's test labels are hidden: the labelled dev set scores the final (best) checkpoint.
        return self.val_dataloader()

    @property
    def has_test_split(self) -> bool:
        return self.splits is not None and "test" in self.splits
