"""Shared fixtures: a generated SST-2-format data set and the real Hydra config, composed and shrunk."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

# Tests never talk to W&B's servers; tests that check the offline logic set their own mode.
os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("WANDB_SILENT", "true")
# Where pytest-xdist runs tests on several processes (pyproject's addopts: one per core), each process, and each
# run a test starts, computes on one thread: torch's default of a thread per core, in every process at once, has
# its threads spin waiting for cores the others hold (a 3 s test took 50 s on 2 cores).
if int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")) > 1:
    os.environ.setdefault("OMP_NUM_THREADS", "1")

from hydra import compose, initialize_config_dir  # noqa: E402
from hydra.core.global_hydra import GlobalHydra  # noqa: E402
from hydra.core.hydra_config import HydraConfig  # noqa: E402
from omegaconf import DictConfig, open_dict  # noqa: E402


def pytest_collection_modifyitems(config, items):
    """Tests marked ``gpu`` skip, with the reason, where there is no CUDA GPU."""
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


# Tests that start Ray or SLURM share machine-wide state: Ray's last session (/tmp/ray/session_latest), Ray jobs'
# processes found by name, the one SLURM node, the check that no other Ray cluster runs. Under pytest-xdist one
# process runs them all, one after another, while the others share the rest of the suite.
ONE_AFTER_ANOTHER = ("tests/test_launchers.py", "tests/test_clusters.py")


@pytest.hookimpl(optionalhook=True)  # a hook of pytest-xdist's: unknown to pytest without it
def pytest_xdist_make_scheduler(config, log):
    """xdist's load scheduling, but with the tests of ONE_AFTER_ANOTHER as one unit of work (its scope). (Its
    xdist_group marks do this by renaming test ids, which pytest 9.2 no longer lets plugins do.)"""
    from xdist.scheduler import LoadScopeScheduling

    class OneWorkerForRayAndSlurm(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return "ray and slurm" if nodeid.startswith(ONE_AFTER_ANOTHER) else nodeid

    return OneWorkerForRayAndSlurm(config, log)


ROOT = Path(__file__).resolve().parents[1]
CONF_DIR = ROOT / "conf"
TINY_BERT = ROOT / "src" / "glue_finetune" / "assets" / "tiny-bert"  # model=tiny's config and tokenizer
README = ROOT / "README.md"
REAL_SST2_DIR = ROOT.parent / "shared" / "data" / "glue" / "SST-2"

POSITIVE = ["great", "wonderful", "moving", "funny", "beautiful", "brilliant", "charming", "best"]
NEGATIVE = ["awful", "boring", "dull", "bad", "worst", "stupid", "mess", "tedious"]
FILLER = ["the", "movie", "film", "is", "a", "story", "and", "with", "of", "plot", "acting", "it", "'s", "."]


def make_sentence(rng: random.Random, label: int) -> str:
    words = rng.choices(FILLER, k=rng.randint(3, 12)) + rng.choices(POSITIVE if label else NEGATIVE, k=rng.randint(1, 2))
    rng.shuffle(words)
    return " ".join(words)


def write_sst2(directory: Path, n_train: int = 320, n_dev: int = 64, n_test: int = 40, seed: int = 0) -> Path:
    """GLUE SST-2 files (train.tsv, dev.tsv with labels; test.tsv with an index and no labels)."""
    rng = random.Random(seed)
    directory.mkdir(parents=True, exist_ok=True)
    for name, n in (("train.tsv", n_train), ("dev.tsv", n_dev)):
        labels = [i % 2 for i in range(n)]
        rng.shuffle(labels)
        rows = [f"{make_sentence(rng, y)} \t{y}" for y in labels]  # GLUE's train rows end with a space
        (directory / name).write_text("sentence\tlabel\n" + "\n".join(rows) + "\n", encoding="utf-8")
    rows = [f"{i}\t{make_sentence(rng, i % 2)}" for i in range(n_test)]
    (directory / "test.tsv").write_text("index\tsentence\n" + "\n".join(rows) + "\n", encoding="utf-8")
    return directory


# The columns GLUE's MNLI files carry besides the ones read (the task table names only those).
MNLI_EXTRA = {"train": ["index", "promptID", "pairID", "genre", "sentence1_binary_parse", "sentence2_binary_parse",
                        "sentence1_parse", "sentence2_parse", "sentence1", "sentence2", "label1", "gold_label"],
              "dev": ["index", "promptID", "pairID", "genre", "sentence1_binary_parse", "sentence2_binary_parse",
                      "sentence1_parse", "sentence2_parse", "sentence1", "sentence2", "label1", "label2", "label3",
                      "label4", "label5", "gold_label"],
              "test": ["index", "promptID", "pairID", "genre", "sentence1_binary_parse", "sentence2_binary_parse",
                       "sentence1_parse", "sentence2_parse", "sentence1", "sentence2"]}


def write_glue_task(directory: Path, task: str, n_train: int = 160, n_dev: int = 48, n_test: int = 24,
                    seed: int = 0) -> Path:
    """A task's files in GLUE's own format (headers, column orders, label spellings, MRPC's byte-order mark),
    with learnable made-up rows: the label (or score) shows in the words of the (second) sentence."""
    from glue_finetune.tasks import TASKS

    spec, rng = TASKS[task], random.Random(seed)
    directory.mkdir(parents=True, exist_ok=True)
    classes = max(len(spec.labels), 2)

    def example(label) -> list[str]:
        if spec.is_regression:  # as many positive words (of 5) as the score says
            k = int(round(label))
            cue = rng.choices(POSITIVE, k=k) + rng.choices(NEGATIVE, k=5 - k)
        else:
            cue = rng.choices([NEGATIVE, POSITIVE, ["plot", "story", "acting"]][label] if classes > 2 else
                              (POSITIVE if label else NEGATIVE), k=2)
        first = " ".join(rng.choices(FILLER, k=rng.randint(3, 10)))
        second = " ".join(rng.choices(FILLER, k=rng.randint(2, 6)) + cue)
        return [first, second] if spec.is_pair else [second]

    def label_text(label) -> str:
        if spec.is_regression:
            return f"{label:.3f}"
        return spec.labels[label] if spec.label_strings else str(label)

    for split, fmt in spec.files.items():
        n = {"train": n_train}.get(split, n_test if split.startswith("test") else n_dev)
        labels = [rng.uniform(0, 5) if spec.is_regression else i % len(spec.labels) for i in range(n)]
        header = list(fmt.header) if fmt.header else None
        if task == "mnli":
            header = MNLI_EXTRA["test" if split.startswith("test") else "dev" if split.startswith("validation") else "train"]
        lines = ["\t".join(header)] if header else []
        for i, label in enumerate(labels):
            texts = example(label)
            if header is None:  # CoLA: source, label, original label, sentence
                row = ["gj04", label_text(label), "", texts[0]]
            else:
                row = [""] * len(header)
                for column, text in zip(fmt.text, texts):
                    row[header.index(column)] = text
                if fmt.label is not None:
                    row[header.index(fmt.label)] = label_text(label)
                for column in header:
                    if column in ("index", "id", "promptID", "pairID", "#1 ID", "#2 ID", "qid1", "qid2"):
                        row[header.index(column)] = str(i)
                    elif not row[header.index(column)]:
                        row[header.index(column)] = "x"
            lines.append("\t".join(row))
        text = "\n".join(lines) + "\n"
        if task == "mrpc" and split != "test":
            text = "\ufeff" + text  # MRPC's train and dev files start with a UTF-8 byte-order mark
        spec.path(directory, split).write_text(text, encoding="utf-8")
    return directory


@pytest.fixture(scope="session")
def glue_dir(tmp_path_factory) -> Path:
    """GLUE's layout (glue_data/<TASK>/ and glue_data/diagnostic/) with made-up files for every task."""
    from glue_finetune.tasks import TASKS

    root = tmp_path_factory.mktemp("glue_data")
    for name, spec in TASKS.items():
        if name == "ax":
            write_glue_task(root / "diagnostic", "ax")
        else:
            write_glue_task(root / spec.glue_name, name)
    return root


@pytest.fixture(scope="session")
def sst2_dir(tmp_path_factory) -> Path:
    return write_sst2(tmp_path_factory.mktemp("sst2"))


# Small enough for seconds on a laptop CPU: 20 steps an epoch, validation every 10 steps.
TINY_OVERRIDES = [
    "model=tiny",
    "trainer=cpu",
    "logger=csv",
    "optimizer.lr=3e-3",
    "trainer.max_epochs=3",
    "trainer.val_check_interval=10",
    "trainer.log_every_n_steps=10",
    "trainer.enable_progress_bar=false",
    "trainer.enable_model_summary=false",
]


def tiny_overrides(*settings: str) -> list[str]:
    """TINY_OVERRIDES with some of its keys set otherwise (and any other key added): tiny_overrides("trainer.max_epochs=1")."""
    keys = {setting.split("=", 1)[0] for setting in settings}
    return [o for o in TINY_OVERRIDES if o.split("=", 1)[0] not in keys] + list(settings)


def compose_config(overrides: list[str], output_dir: Path | None = None) -> DictConfig:
    """The real config from conf/, as `python src/train.py <overrides>` would build it, with its run dir at output_dir."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("train", overrides=overrides, return_hydra_config=True)
    if output_dir is not None:
        with open_dict(cfg):
            cfg.hydra.runtime.output_dir = str(output_dir)
    HydraConfig.instance().set_config(cfg)  # lets ${hydra:...} interpolations resolve as in a real run
    with open_dict(cfg):
        del cfg.hydra
    return cfg


@pytest.fixture
def tiny_cfg(sst2_dir, tmp_path):
    """A function building the real config shrunk to the tiny model on the fixture data, run dir in tmp_path."""

    def build(*extra: str, output_dir: Path | None = None) -> DictConfig:
        overrides = TINY_OVERRIDES + [f"data.local_dir={sst2_dir}", *extra]
        return compose_config(overrides, output_dir or tmp_path)

    return build


def wandb_records(run_file: Path):
    """The records of an offline W&B run file (``run-<id>.wandb``): W&B's log format is LevelDB's, 32 KiB blocks
    of chunks each with a 7-byte header (CRC32, length, type: 1 whole, 2 first, 3 middle, 4 last)."""
    import struct

    from wandb.proto import wandb_internal_pb2

    data = run_file.read_bytes()
    assert data[:4] == b":W&B", f"{run_file} is not a W&B run file"
    pos, block, chunks = 7, 32768, b""
    while pos + 7 <= len(data):
        left = block - pos % block
        _, length, kind = struct.unpack("<IHB", data[pos:pos + 7]) if left >= 7 else (0, 0, 0)
        if kind == 0:  # a block's zero-filled tail
            pos += left
            continue
        chunks += data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(chunks)
            chunks = b""
            yield record
