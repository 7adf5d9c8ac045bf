"""Shared fixtures: a generated SST-2-format data set and the real Hydra config, composed and shrunk."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

# Tests never talk to W&B's servers; tests that check the offline logic set their own mode.
os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("WANDB_SILENT", "true")

from hydra import compose, initialize_config_dir  # noqa: E402
from hydra.core.global_hydra import GlobalHydra  # noqa: E402
from hydra.core.hydra_config import HydraConfig  # noqa: E402
from omegaconf import DictConfig, open_dict  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CONF_DIR = ROOT / "conf"
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
