"""A GLUE task as a LightningDataModule: load (Hub or GLUE's own files) → check → tokenize once (cached) → batch.

What a task's data looks like (text columns, labels or scores, dev and test splits, file formats) comes from the
task table (``glue_finetune.tasks``). GLUE's test labels are hidden, so ``test_dataloader`` serves the labelled dev
sets (to score the selected checkpoint); the test splits are predicted for the submission files.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import math
import random
import warnings
from pathlib import Path

import datasets
import lightning as L
from lightning.fabric.utilities.distributed import DistributedSamplerWrapper
from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSamplerWrapper
import torch
from torch.utils.data import DataLoader, Sampler
from transformers import AutoTokenizer, DataCollatorWithPadding, PreTrainedTokenizerBase
from transformers.trainer_pt_utils import get_length_grouped_indices

from glue_finetune.errors import DataFormatError, UserError
from glue_finetune.hub import fetching, is_local_path, offline_hint, refuse_an_empty_tokenizer
from glue_finetune.inference import encode
from glue_finetune.logs import no_datasets_progress_bars
from glue_finetune.tasks import (TASKS, TaskSpec, ax_file, batches_per_epoch, forget_read_ahead,
                                 read_glue_file_and_digest, task_folder)

log = logging.getLogger(__name__)

MODEL_INPUTS = ["input_ids", "attention_mask", "token_type_ids"]

# Part of the tokenization cache key. datasets hashes a function of an installed package by its name, not its
# code, so a change to what _tokenize returns must bump this, or older cached results would be reused.
TOKENIZED_FORMAT = 4


def features(spec: TaskSpec) -> datasets.Features:
    """The Hub's schema of a task: its text columns, the label (class names, or a float score), the row id."""
    label = datasets.Value("float32") if spec.is_regression else datasets.ClassLabel(names=list(spec.labels))
    return datasets.Features({**{name: datasets.Value("string") for name in spec.text}, "label": label,
                              "idx": datasets.Value("int64")})


def load_glue_file(path: Path, spec: TaskSpec, split: str) -> tuple[datasets.Dataset, str]:
    """One GLUE TSV, checked row by row (see ``tasks.read_glue_file``), with the Hub's columns, and the digest of
    its content. In memory: its tokenization is cached on disk by that digest (``GlueDataModule.tokenized``)."""
    schema = features(spec)
    if split.startswith("test"):  # no labels: -1, as the Hub's test splits
        schema["label"] = datasets.Value("float32") if spec.is_regression else datasets.Value("int64")
    columns, digest = read_glue_file_and_digest(path, spec, split)
    return datasets.Dataset.from_dict(columns, features=schema), digest


def spread_batches(order: list[int], batch_size: int) -> list[int]:
    """``order`` (longest first) cut into batches, the longest batch kept first (an out-of-memory error still shows
    on it) and the other full batches in a fixed shuffled order, the last, partial one last: the first N batches,
    all that a limited validation scores, spread over the lengths rather than being the N longest."""
    batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    partial = [batches.pop()] if batches and len(batches[-1]) < batch_size else []
    rest = batches[1:]
    random.Random(0).shuffle(rest)
    return [i for batch in [*batches[:1], *rest, *partial] for i in batch]


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
        if epoch != self.epoch:
            self.skip = 0  # a resumed position belongs to its own epoch only
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


def round_up(length: int, multiple: int | None) -> int:
    """A batch's padded length: its longest row rounded up to ``multiple`` (as DataCollatorWithPadding pads)."""
    return -(-length // multiple) * multiple if multiple else length


def narrowest_int(values: torch.Tensor, pad: int) -> torch.dtype:
    """The smallest signed integer type that holds ``values`` and ``pad``."""
    low, high = (pad, pad) if not values.numel() else (min(int(values.min()), pad), max(int(values.max()), pad))
    return next(t for t in (torch.int8, torch.int16, torch.int32, torch.int64)
                if torch.iinfo(t).min <= low and high <= torch.iinfo(t).max)


class ResidentRows:
    """A tokenized split padded once and kept on the training device, so a batch (training, or a dev set's) is
    gathered there from its row numbers: no per-batch tokenizer.pad (Python over every row of the batch: 0.42 ms a
    batch against 0.05 for the gather, on a CPU core), pinning and host-to-device copy of four tensors; one small
    copy of row numbers instead. Padded on the right with the tokenizer's pad values, so a batch's rows cut to its
    length are exactly what DataCollatorWithPadding builds for that batch, int64 included (tested). Stored in the
    narrowest integers that hold them (token ids in int16 while they fit: BERT's vocabularies have ~30k tokens;
    attention mask and segment ids in int8) and widened per batch: 4 bytes per token instead of 24 (SST-2's
    training set, 67,349 rows x 72: 19 MB instead of 116; MNLI's, 392,702 x 128: 0.2 GB instead of 1.2 per job)."""

    PAD_VALUES = {"attention_mask": 0}

    def __init__(self, split: datasets.Dataset, tokenizer: PreTrainedTokenizerBase, pad_to_multiple_of: int | None,
                 device: torch.device):
        if tokenizer.padding_side != "right":
            raise ValueError(f"resident batches need a tokenizer that pads on the right, not {tokenizer.padding_side}")
        lengths = torch.tensor(split["length"][:])
        width = round_up(int(lengths.max()), pad_to_multiple_of)
        # Row i's tokens fill the first lengths[i] places of its row: the places where the mask is true, in order.
        # (tokenizer.pad over the whole split builds the same table in 3.5 s of Python for SST-2; this in ~0.3 s.)
        filled = torch.arange(width) < lengths[:, None]
        pads = {"input_ids": tokenizer.pad_token_id, "token_type_ids": tokenizer.pad_token_type_id,
                **self.PAD_VALUES}
        self.device = device
        self.inputs = {}
        for column in (c for c in MODEL_INPUTS if c in split.column_names):
            values = torch.tensor(list(itertools.chain.from_iterable(split[column][:])), dtype=torch.long)
            table = torch.full((len(lengths), width), pads[column], dtype=narrowest_int(values, pads[column]))
            table[filled] = values.to(table.dtype)
            self.inputs[column] = table.to(device)
        self.labels = torch.tensor(split["labels"][:]).to(device)

    def batch(self, rows: torch.Tensor, length: int) -> dict[str, torch.Tensor]:
        # int64, as collated batches are: what the model's embeddings take, and one dtype for the step's graphs.
        out = {c: table[rows, :length].long() for c, table in self.inputs.items()}
        out["labels"] = self.labels[rows]
        return out


def _tokenize(batch: dict, tokenizer: PreTrainedTokenizerBase, text: list[str], max_length: int,
              format_version: int) -> dict:
    return encode(tokenizer, [batch[name] for name in text], max_length)


class GlueDataModule(L.LightningDataModule):
    """One GLUE task: train on ``train``, validate on its dev set(s) (MNLI: matched and mismatched), predict its
    test set(s) (and, for MNLI, GLUE's diagnostic set AX). Every argument comes from ``conf/data/*.yaml``."""

    def __init__(self, *, task: str, tokenizer: str, hub_dataset: str, local_dir: str | None, max_length: int,
                 batch_size: int, eval_batch_size: int, max_train_samples: int | None, group_by_length: bool,
                 sort_eval_by_length: bool, pad_to_multiple_of: int | None, num_workers: int,
                 pin_memory: bool | None, seed: int, glue_dir: str | None, resident_batches: bool = False):
        super().__init__()
        self.save_hyperparameters(logger=False)
        self.spec = TASKS[task]
        self.tokenizer_name = tokenizer
        self.hub_dataset = hub_dataset
        self.local_dir = task_folder(self.spec, local_dir, glue_dir)
        self.source_digests: dict[str, str] = {}  # split → its local file's content hash (the tokenization key)
        self.max_length = max_length
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        self.max_train_samples = max_train_samples
        # whether the run trains on part of the training set: max_train_samples below its size (known once loaded)
        self.trained_on_part = False
        self.group_by_length = group_by_length
        self.sort_eval_by_length = sort_eval_by_length
        self.pad_to_multiple_of = pad_to_multiple_of
        self.num_workers = num_workers
        self.pin_memory = pin_memory  # None: pinned_memory decides, once the trainer's device is known
        self.seed = seed
        self.tokenizer: PreTrainedTokenizerBase | None = None
        self.splits: datasets.DatasetDict | None = None
        self.resume_position: dict | None = None  # from a checkpoint: see state_dict
        # resident_batches: the training set and the dev sets live padded on the training device, and a batch
        # travels as its row numbers and length (see ResidentRows). train() sets it with the whole step
        # (model.whole_step), whose graphed steps and validations leave the host little else to do per batch.
        self.resident_batches = resident_batches
        self.resident: dict[str, ResidentRows] = {}  # split → its table, built on the device of its first batch

    # -- loading ---------------------------------------------------------------------------------------------
    def load_raw(self) -> datasets.DatasetDict:
        """Every split of the task with the Hub's columns, from ``local_dir`` if set, else from the Hub (or its
        local cache). MNLI also brings GLUE's diagnostic set as split ``ax``, when it can be found."""
        spec = self.spec
        if self.local_dir is not None:
            splits = {}
            for split in spec.file_names:
                path = spec.path(self.local_dir, split)
                if path.is_file():
                    splits[split], self.source_digests[split] = load_glue_file(path, spec, split)
                elif not split.startswith("test"):
                    raise DataFormatError(f"{path} does not exist: data.local_dir must hold {spec.glue_name}'s "
                                          f"{', '.join(n for s, n in spec.file_names.items() if 'test' not in s)}")
                else:
                    log.warning("%s does not exist: no %s predictions will be written.", path,
                                spec.submissions.get(split, split))
            if spec.name == "mnli" and (ax := ax_file(self.local_dir)) is not None:
                splits["ax"], self.source_digests["ax"] = load_glue_file(ax, TASKS["ax"], "test")
            forget_read_ahead()  # what the run's check read is taken: nothing else of it is needed
            raw = datasets.DatasetDict(splits)
        else:
            with fetching(f"dataset {self.hub_dataset!r} ({spec.name}) from the Hugging Face Hub",
                          hint=offline_hint(spec, model_is_local=is_local_path(self.tokenizer_name))):
                raw = datasets.load_dataset(self.hub_dataset, spec.name)
                if spec.name == "mnli":
                    raw["ax"] = datasets.load_dataset(self.hub_dataset, "ax", split="test")
        if self.max_train_samples is not None and "train" in raw:
            if self.max_train_samples >= len(raw["train"]):
                log.warning("data.max_train_samples=%d is not less than %s's %d training examples: all of them are "
                            "used, and the run is recorded as trained on the whole set.", self.max_train_samples,
                            spec.glue_name, len(raw["train"]))
            else:
                self.trained_on_part = True
                raw["train"] = raw["train"].select(range(self.max_train_samples))
        return raw

    def load_tokenizer(self) -> PreTrainedTokenizerBase:
        with fetching(f"the tokenizer of {self.tokenizer_name!r}", self.tokenizer_name):
            tokenizer = AutoTokenizer.from_pretrained(self.tokenizer_name)
        refuse_an_empty_tokenizer(tokenizer, self.tokenizer_name)
        if tokenizer.pad_token is None:  # else a traceback from the first batch, after the model has loaded
            raise UserError(f"The tokenizer of {self.tokenizer_name!r} has no padding token, which batches of "
                            "sentences of different lengths need: a decoder model (GPT-2 and its kind). This project "
                            "fine-tunes encoder models (BERT, RoBERTa, DeBERTa, ELECTRA, ...): give one as "
                            "model.name_or_path.")
        return tokenizer

    def tokenized(self) -> datasets.DatasetDict:
        """Token ids for every split, computed once per (data, tokenizer, max_length): ``datasets.map`` caches them
        on disk, by the Hub dataset's fingerprint or, for local files, by their content."""
        self.tokenizer = self.tokenizer or self.load_tokenizer()
        kwargs = {"tokenizer": self.tokenizer, "max_length": self.max_length, "format_version": TOKENIZED_FORMAT}
        with no_datasets_progress_bars():  # seconds the first time, nothing once cached
            raw = self.load_raw()
            tokenizer_hash = datasets.fingerprint.Hasher.hash(self.tokenizer)
            out = {}
            for split, dataset in raw.items():
                text = list(TASKS["ax"].text if split == "ax" else self.spec.text)
                cache = {}
                if digest := self.source_digests.get(split):  # a local file: key its tokens by its content
                    key = hashlib.sha256(f"{digest}|{len(dataset)}|{tokenizer_hash}|{self.max_length}|"
                                         f"{TOKENIZED_FORMAT}|{text}".encode()).hexdigest()[:24]
                    directory = Path(datasets.config.HF_DATASETS_CACHE) / "glue_finetune"
                    directory.mkdir(parents=True, exist_ok=True)
                    cache = {"cache_file_name": str(directory / f"tokenized-{key}.arrow"), "new_fingerprint": key}
                out[split] = dataset.map(_tokenize, batched=True, fn_kwargs={**kwargs, "text": text},
                                         remove_columns=text, **cache)
        return datasets.DatasetDict(out).rename_column("label", "labels")

    # -- Lightning hooks -------------------------------------------------------------------------------------
    def prepare_data(self) -> None:
        # Download, check and tokenize. train() calls it early, on every process (under DDP each rank runs
        # train()), so bad data fails before the model downloads; fit's own call is then a no-op. Ranks that map
        # at once are safe: datasets writes each cache file whole, under a temporary name, then renames it.
        self.setup()

    def setup(self, stage: str | None = None) -> None:
        if self.splits is None:
            self.splits = self.tokenized()

    def _loader(self, split: str, batch_size: int, sampler) -> DataLoader:
        assert self.splits is not None and self.tokenizer is not None, "call setup() first"
        ds = self.splits[split]
        ds = ds.select_columns([c for c in [*MODEL_INPUTS, "labels"] if c in ds.column_names])
        return DataLoader(
            ds,
            batch_size=batch_size,
            sampler=sampler,
            # Pads each batch to its own longest sentence (SST-2 averages ~13 tokens, not max_length), rounded up
            # to pad_to_multiple_of if set: few distinct shapes for torch.compile / CUDA graphs to reuse.
            collate_fn=DataCollatorWithPadding(self.tokenizer, pad_to_multiple_of=self.pad_to_multiple_of),
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            pin_memory=self.pinned_memory,
        )

    @property
    def pinned_memory(self) -> bool:
        """Whether batches wait in pinned host memory: to be copied to the GPU that trains (``pin_memory`` null).
        Pinning makes a CUDA context: a CPU run (or sweep job) on a GPU machine would hold one on GPU 0."""
        if self.pin_memory is not None:
            return self.pin_memory
        return self.trainer is not None and self.trainer.strategy.root_device.type == "cuda"

    def lengths(self, split: str) -> list[int]:
        """Every example's token count, as a list: datasets' column object reads Arrow once per element indexed
        (15 s per epoch for SST-2's 67,349 in the length-grouped sampler, against 2 ms for the list)."""
        return self.splits[split]["length"][:]

    def _eval_sampler(self, split: str):
        """Longest sentences first: batches of similar lengths carry little padding, and an out-of-memory error
        shows on the first batch. Metrics and predictions do not depend on the order. Where the trainer scores the
        first batches only (limit_val_batches), those batches are spread over the lengths (``spread_batches``).

        On several devices each rank scores every world-th example of that order, each example once: Lightning's
        own sampler would even the shares out by scoring up to N - 1 examples twice, and the metrics (gathered
        across ranks) would count them twice. Ranks may then run one batch apart, which validation allows: without
        gradients, DDP syncs buffers on a rank's first batch only."""
        n = len(self.splits[split])
        order = range(n)
        if self.sort_eval_by_length:
            lengths = self.lengths(split)
            order = sorted(order, key=lambda i: -lengths[i])
            if self.scores_some_batches_only():
                order = spread_batches(order, self.eval_batch_size)
        world = self.trainer.world_size if self.trainer is not None else 1
        if world > 1 and n >= world:
            return UnrepeatedDistributedSamplerWrapper(order, num_replicas=world, rank=self.trainer.global_rank,
                                                       shuffle=False)
        return order if self.sort_eval_by_length else None

    def scores_some_batches_only(self) -> bool:
        """Whether the trainer scores the first batches of a dev set only (+trainer.limit_val_batches, the debug
        configs' limits, fast_dev_run, which sets them)."""
        trainer = self.trainer
        return trainer is not None and any(
            limit not in (None, 1.0) for limit in (getattr(trainer, "limit_val_batches", 1.0),
                                                   getattr(trainer, "limit_test_batches", 1.0)))

    def _row_loader(self, split: str, batch_size: int, sampler) -> DataLoader:
        """A split's batches as row numbers: {"rows": LongTensor, "length": the batch's padded length, "split"}."""
        lengths = self.lengths(split)

        def collate(rows: list[int]) -> dict:
            return {"rows": torch.tensor(rows), "split": split,
                    "length": round_up(max(lengths[r] for r in rows), self.pad_to_multiple_of)}

        return DataLoader(range(len(lengths)), batch_size=batch_size, sampler=sampler, collate_fn=collate,
                          pin_memory=self.pinned_memory)

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        if isinstance(batch, dict) and "rows" in batch:  # a resident batch: gather it on the device
            split, device = batch["split"], batch["rows"].device
            table = self.resident.get(split)
            if table is None or table.device != device:
                table = self.resident[split] = ResidentRows(self.splits[split], self.tokenizer,
                                                            self.pad_to_multiple_of, device)
            return table.batch(batch["rows"], batch["length"])
        return batch

    def train_dataloader(self) -> DataLoader:
        # Length-grouped batches carry ~4 % padding on SST-2 instead of ~2.6x with plain shuffling.
        world = self.trainer.world_size if self.trainer is not None else 1
        lengths = self.lengths("train")
        sampler = EpochSeededSampler(lengths, self.batch_size * world, self.seed, self.group_by_length)
        if self.resume_position:
            self._resume(sampler, **self.resume_position)
            self.resume_position = None
        if world > 1:
            # Lightning would wrap this sampler in a DistributedSampler that shuffles its order again (with its own
            # seed), losing the length grouping and the (seed, epoch) order. Each rank takes every world-th index
            # of the order instead, so one step of N ranks trains the global batch (N x batch_size) that a single
            # process with that batch size trains. set_epoch reaches the sampler through the wrapper.
            sampler = DistributedSamplerWrapper(sampler, num_replicas=world, rank=self.trainer.global_rank,
                                                shuffle=False)
        if self.resident_batches:
            return self._row_loader("train", self.batch_size, sampler)
        return self._loader("train", self.batch_size, sampler)

    def val_dataloader(self) -> list[DataLoader]:
        """One loader per dev set, in the task table's order (MNLI: matched, then mismatched)."""
        loader = self._row_loader if self.resident_batches else self._loader
        return [loader(split, self.eval_batch_size, self._eval_sampler(split)) for split in self.spec.dev_splits]

    def test_dataloader(self) -> list[DataLoader]:
        # GLUE's test labels are hidden: the labelled dev sets score the selected checkpoint.
        return self.val_dataloader()

    def test_sets(self) -> list[tuple[TaskSpec, str, datasets.Dataset]]:
        """(task, submission file name, tokenized rows with ``idx``) for every test split there is: the task's, and
        for MNLI also GLUE's diagnostic set (AX), which GLUE scores with the MNLI model."""
        sets = [(self.spec, self.spec.submissions[s], self.splits[s]) for s in self.spec.test_splits if s in self.splits]
        if "ax" in self.splits:
            sets.append((TASKS["ax"], TASKS["ax"].submissions["test"], self.splits["ax"]))
        return sets

    # -- resuming in the middle of an epoch --------------------------------------------------------------------
    # Lightning saves this module's state_dict in checkpoints and restores it before it builds the training loader,
    # so a resumed run's first batch is the one the interrupted run would have trained on next. (Lightning's own
    # route, a stateful DataLoader, loads its state only after Lightning has already built the loader and fetched
    # a batch from it to count the steps for the learning-rate schedule.)
    def state_dict(self) -> dict:
        trainer = self.trainer
        if trainer is None or trainer.state.fn != "fit":
            return {}
        return {"epoch": trainer.current_epoch, "batches_done": trainer.fit_loop.epoch_loop.batch_progress.current.processed,
                "batch_size": self.batch_size,
                # what the run trains on: a run continued on other data (a data.local_dir that moved, pointed at
                # another copy) would mix two training sets in one schedule (training.refuse_other_training_data)
                "train_digest": self.source_digests.get("train")}

    def load_state_dict(self, state: dict) -> None:
        # The place in the epoch; the train file's digest is checked before fit (refuse_other_training_data).
        self.resume_position = {k: v for k, v in state.items() if k != "train_digest"} if state else None
        # Lightning warns that a plain DataLoader cannot resume mid-epoch; this module restores the position itself.
        warnings.filterwarnings("ignore", message="You're resuming from a checkpoint that ended before the epoch ended")

    def batches_per_epoch(self, samples: int, limit: int | float | None = None) -> int:
        """Training batches an epoch of ``samples`` on one device, as the Trainer counts them: ``limit`` (a number
        of batches, or a fraction of them: ``trainer.limit_train_batches``, ``overfit_batches``) applied, by default
        the trainer's ``limit_train_batches``."""
        if limit is None:
            limit = self.trainer.limit_train_batches if self.trainer is not None else 1.0
        return batches_per_epoch(samples, self.batch_size, limit)

    def _resume(self, sampler: EpochSeededSampler, epoch: int, batches_done: int, batch_size: int | None = None) -> None:
        world = self.trainer.world_size if self.trainer is not None else 1
        per_epoch = self.batches_per_epoch(math.ceil(len(sampler) / world))  # per device
        if batches_done and batch_size is not None and batch_size != self.batch_size:
            # A checkpoint trained in batches of another size (ckpt_path, another data.batch_size): its position
            # counts those batches, whose length-grouped order differs from this run's. Lightning counts them as
            # batches of this run's epoch all the same: as many fewer are left of it.
            change = (f"The checkpoint was trained in batches of {batch_size} (data.batch_size), this run in batches "
                      f"of {self.batch_size}: its place in epoch {epoch} does not carry over")
            if batches_done == per_epoch:
                log.warning("%s, and Lightning counts its %d batches done as the whole of that epoch's %d: training "
                            "goes on with epoch %d.", change, batches_done, per_epoch, epoch + 1)
            elif batches_done > per_epoch:
                # Lightning ends an epoch when its count reaches the epoch's batches exactly, else when they run out:
                # past them, it draws one batch more: the epoch's first (its set_epoch puts the sampler back there).
                log.warning("%s, and Lightning counts its %d batches done as more than that epoch's %d: it trains one "
                            "more batch of epoch %d (its first), then goes on with epoch %d.", change, batches_done,
                            per_epoch, epoch, epoch + 1)
            else:
                log.warning("%s, so the rest of that epoch (%d of its %d batches, as Lightning counts them) trains on "
                            "the epoch's first batches (as a resume on several devices does).", change,
                            per_epoch - batches_done, per_epoch)
                batches_done = 0
        if batches_done >= per_epoch:  # an epoch's end
            epoch, batches_done = epoch + 1, 0  # the next epoch starts whole
        if batches_done and world > 1:
            log.warning("Resuming in the middle of epoch %d on %d devices: the rest of the epoch trains on its first "
                        "batches (the exact position is restored on one device only).", epoch, world)
            batches_done = 0
        sampler.resume(epoch, batches_done * self.batch_size)
